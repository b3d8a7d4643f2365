package maildir

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleIndex() []byte {
	b := appendHeader(nil, 1700000000, 7)
	b = appendRecord(b, record{key: "1700000000.M1P2Q3R4.host", uid: 1, epoch: 1700000000, size: 12})
	b = appendRecord(b, record{key: "odd name%with bytes\n\xff", uid: 6, epoch: 1700000000, size: 0})
	return b
}

func TestParseIndex(t *testing.T) {
	good := sampleIndex()
	recs := []record{
		{key: "1700000000.M1P2Q3R4.host", uid: 1, epoch: 1700000000, size: 12},
		{key: "odd name%with bytes\n\xff", uid: 6, epoch: 1700000000, size: 0},
	}
	firstLine := bytes.IndexByte(good, '\n') + 1
	// lineWith builds a correctly checksummed line around any payload, so
	// the syntax checks are tested apart from the checksum.
	lineWith := func(payload string) []byte { return appendLine(nil, []byte(payload)) }
	header := good[:firstLine]
	tests := []struct {
		name string
		data []byte
		want indexData
	}{
		{"good", good, indexData{header: true, epoch: 1700000000, next: 7, recs: recs}},
		{"header only", header, indexData{header: true, epoch: 1700000000, next: 7, recs: []record{}}},
		{"empty", nil, indexData{damaged: true}},
		{"torn last line", good[:len(good)-1], indexData{header: true, epoch: 1700000000, next: 7, recs: recs[:1], damaged: true}},
		{"no header", good[firstLine:], indexData{recs: recs, damaged: true}},
		{"bad checksum", bytes.Replace(good, []byte(" 12 "), []byte(" 13 "), 1),
			indexData{header: true, epoch: 1700000000, next: 7, recs: recs[1:], damaged: true}},
		{"CRLF", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")), indexData{recs: []record{}, damaged: true}},
		{"header not first", append(append(appendRecord(nil, recs[0]), header...), '\n'),
			indexData{recs: recs[:1], damaged: true}},
		{"escaped key", append(append([]byte{}, header...), lineWith("m a%20b%25 0000000100000001 5")...),
			indexData{header: true, epoch: 1700000000, next: 7, recs: []record{{key: "a b%", uid: 1, epoch: 1, size: 5}}}},
		{"literal UIDL", append(append([]byte{}, header...), lineWith("m k 0000000100000001 5 <a%25b>/x:y,z")...),
			indexData{header: true, epoch: 1700000000, next: 7, recs: []record{{key: "k", uid: 1, epoch: 1, size: 5, lit: "<a%b>/x:y,z"}}}},
		// An imported UIDL that looks like popbox's own is a literal too.
		{"literal in popbox's format", append(append([]byte{}, header...), lineWith("m key 0000000100000001 5 0000000200000001")...),
			indexData{header: true, epoch: 1700000000, next: 7, recs: []record{{key: "key", uid: 1, epoch: 1, size: 5, lit: "0000000200000001"}}}},
		{"wrong version", append(lineWith("popbox-index 2 1 1"), appendRecord(nil, recs[0])...),
			indexData{recs: recs[:1], damaged: true}},
	}
	bad := []string{
		"m key 0000000100000001",                                // missing size
		"m key 0000000100000001 5 lit extra",                    // extra field
		"m key 0000000100000001 5 a%41",                         // literal escaped needlessly
		"m key 0000000100000001 5 " + strings.Repeat("x", 71),   // literal too long
		"m key 0000000000000001 5",                              // uid 0
		"m key 0000000a00000001 5",                              // lower-case hex
		"m key 000000010000001 5",                               // short UIDL
		"m key 0000000100000001 05",                             // leading zero
		"m key 0000000100000001 -5",                             // sign
		"m key 0000000100000001 99999999999999999999",           // overflow
		"m ke y 0000000100000001 5",                             // space in key
		"m a%41 0000000100000001 5",                             // escaped byte that needs no escape
		"m a%2f 0000000100000001 5",                             // lower-case escape
		"m a%2 0000000100000001 5",                              // short escape
		"m a%zz 0000000100000001 5",                             // bad escape
		"m %3A 0000000100000001 5",                              // ':' cannot be in a key
		"m  0000000100000001 5",                                 // empty key
		"x key 0000000100000001 5",                              // unknown type
		"m " + strings.Repeat("k", 256) + " 0000000100000001 5", // key too long
	}
	for _, p := range bad {
		want := indexData{header: true, epoch: 1700000000, next: 7, recs: []record{}, damaged: true}
		tests = append(tests, struct {
			name string
			data []byte
			want indexData
		}{"record " + p, append(append([]byte{}, header...), lineWith(p)...), want})
	}
	for _, p := range []string{"popbox-index 1 1 0", "popbox-index 1 4294967296 1", "popbox-index 1 1 4294967297", "popbox-index 1 01 1"} {
		tests = append(tests, struct {
			name string
			data []byte
			want indexData
		}{"header " + p, lineWith(p), indexData{recs: []record{}, damaged: true}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseIndex(tc.data)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(indexData{}, record{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCounter(t *testing.T) {
	goodState := counterState{epoch: 1700000000, next: 42, floor: 1600000000, msgs: 7, bytes: 12345, acct: true}
	good := formatCounter(goodState)
	maxState := counterState{epoch: 1<<32 - 1, next: 1 << 32, floor: 1<<32 - 1, msgs: 1e10 - 1, bytes: 1 << 62, acct: true}
	if len(good) != len(formatCounter(maxState)) || len(good) != len(formatCounter(counterState{acct: true})) {
		t.Error("counter line length varies; it must be fixed for in-place overwrite")
	}
	// Version 1, as popbox wrote it before quotas.
	v1 := appendLine(nil, []byte("popbox-uidnext 1 1700000000 0000000042"))
	lineWith := func(payload string) []byte { return appendLine(nil, []byte(payload)) }
	tests := []struct {
		name string
		data []byte
		want counterState
		ok   bool
	}{
		{"good", good, goodState, true},
		{"max", formatCounter(maxState), maxState, true},
		{"version 1", v1, counterState{epoch: 1700000000, next: 42}, true},
		{"version 1 with totals", lineWith("popbox-uidnext 1 1700000000 0000000042 1600000000 0000000007 00000000000000012345"), counterState{}, false},
		{"version 2 without totals", lineWith("popbox-uidnext 2 1700000000 0000000042"), counterState{}, false},
		{"version 3", lineWith("popbox-uidnext 3 1700000000 0000000042 1600000000 0000000007 00000000000000012345"), counterState{}, false},
		{"floor above epoch", formatCounter(counterState{epoch: 5, next: 1, floor: 6, acct: true}), counterState{}, false},
		{"short totals", lineWith("popbox-uidnext 2 1700000000 0000000042 1600000000 0000000007 12345"), counterState{}, false},
		{"torn", good[:len(good)-5], counterState{}, false},
		{"no newline", good[:len(good)-1], counterState{}, false},
		{"trailing junk", append(append([]byte{}, good...), "x\n"...), counterState{}, false},
		{"next zero", formatCounter(counterState{epoch: 1, next: 0, acct: true}), counterState{}, false},
		{"empty", nil, counterState{}, false},
		{"flipped", bytes.Replace(good, []byte("42"), []byte("43"), 1), counterState{}, false},
	}
	for _, tc := range tests {
		got, ok := parseCounter(tc.data)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: parseCounter = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseFileName(t *testing.T) {
	tests := []struct {
		name string
		want fileName
	}{
		{"1700000000.M1P2.host", fileName{key: "1700000000.M1P2.host"}},
		{"1700000000.M1P2.host:2,S", fileName{key: "1700000000.M1P2.host", info: "2,S", hasInfo: true}},
		{"k,P=0000000565A1B2C3,R=123", fileName{key: "k", hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 123}},
		{"k,P=0000000565A1B2C3,R=0:2,RS", fileName{key: "k", info: "2,RS", hasInfo: true, hasFields: true, uid: 5, epoch: 0x65A1B2C3}},
		// Dovecot's fields stay part of the key.
		{"k,S=10,W=12,P=0000000565A1B2C3,R=12:2,", fileName{key: "k,S=10,W=12", info: "2,", hasInfo: true, hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 12}},
		// Malformed fields make a foreign name, whole base as key.
		{"k,P=0000000565a1b2c3,R=1", fileName{key: "k,P=0000000565a1b2c3,R=1"}},
		{"k,P=0000000065A1B2C3,R=1", fileName{key: "k,P=0000000065A1B2C3,R=1"}},
		{"k,P=0000000565A1B2C3,R=01", fileName{key: "k,P=0000000565A1B2C3,R=01"}},
		{"k,R=1", fileName{key: "k,R=1"}},
		{",P=0000000565A1B2C3,R=1", fileName{key: ",P=0000000565A1B2C3,R=1"}},
		{"k,U=12:2,S", fileName{key: "k,U=12", info: "2,S", hasInfo: true}}, // mbsync's field
		// Imported literal UIDLs, percent-encoded.
		{"k,P=0000000565A1B2C3,L=abc,R=12", fileName{key: "k", hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 12, lit: "abc"}},
		{"k,P=0000000565A1B2C3,L=a%2Fb%3Ac%2Cd%25e=f.g,R=12:2,S", fileName{key: "k", info: "2,S", hasInfo: true, hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 12, lit: "a/b:c,d%e=f.g"}},
		// A ,L= that is not a valid literal: no fields at all.
		{"k,P=0000000565A1B2C3,L=a%2fb,R=12", fileName{key: "k,P=0000000565A1B2C3,L=a%2fb,R=12"}},
		{"k,P=0000000565A1B2C3,L=a%41,R=12", fileName{key: "k,P=0000000565A1B2C3,L=a%41,R=12"}},
		{"k,P=0000000565A1B2C3,L=,R=12", fileName{key: "k,P=0000000565A1B2C3,L=,R=12"}},
		// A literal in popbox's own format (an import from below the floor).
		{"k,P=0000000565A1B2C3,L=0000000100000001,R=12", fileName{key: "k", hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 12, lit: "0000000100000001"}},
		// ,L= in a foreign key before popbox's fields stays in the key.
		{"k,L=x,P=0000000565A1B2C3,R=12", fileName{key: "k,L=x", hasFields: true, uid: 5, epoch: 0x65A1B2C3, size: 12}},
		{"k,L=x,R=12", fileName{key: "k,L=x,R=12"}},
	}
	for _, tc := range tests {
		got := parseFileName(tc.name)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(fileName{})); diff != "" {
			t.Errorf("parseFileName(%q) (-want +got):\n%s", tc.name, diff)
		}
		if got.hasFields {
			if back := withFields(got.key, got.uid, got.epoch, got.size, got.lit, got.info, got.hasInfo); back != tc.name {
				t.Errorf("withFields round trip: %q, want %q", back, tc.name)
			}
		}
	}
}

func TestSanitizeHost(t *testing.T) {
	tests := map[string]string{
		"mail.example.com": "mail.example.com",
		"a/b:c,d":          `a\057b\072c\054d`,
		"":                 "localhost",
	}
	for in, want := range tests {
		if got := sanitizeHost(in); got != want {
			t.Errorf("sanitizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRecoverCounter(t *testing.T) {
	seen := func(pairs ...uint32) uidSeen {
		var s uidSeen
		for i := 0; i < len(pairs); i += 2 {
			s.add(pairs[i], pairs[i+1])
		}
		return s
	}
	hdr := func(epoch uint32, next uint64) indexData { return indexData{header: true, epoch: epoch, next: next} }
	tests := []struct {
		name      string
		ctr       counterState
		ctrOK     bool
		idx       indexData
		seen      uidSeen
		want      counterState
		wantFresh bool
	}{
		{"counter only", counterState{epoch: 100, next: 5}, true, indexData{}, seen(3, 100), counterState{epoch: 100, next: 5}, false},
		{"names ahead of counter", counterState{epoch: 100, next: 5}, true, indexData{}, seen(9, 100), counterState{epoch: 100, next: 10}, false},
		{"header ahead of counter", counterState{epoch: 100, next: 5}, true, hdr(100, 8), seen(), counterState{epoch: 100, next: 8}, false},
		{"no counter, header", counterState{}, false, hdr(100, 8), seen(3, 100), counterState{epoch: 100, next: 8}, false},
		{"newer epoch in header", counterState{epoch: 100, next: 50}, true, hdr(200, 2), seen(1, 200), counterState{epoch: 200, next: 2}, false},
	}
	for _, tc := range tests {
		got, fresh := recoverCounter(tc.ctr, tc.ctrOK, tc.idx, tc.seen)
		if got != tc.want || fresh != tc.wantFresh {
			t.Errorf("%s: got %+v fresh=%v, want %+v fresh=%v", tc.name, got, fresh, tc.want, tc.wantFresh)
		}
	}
	// Nothing vouches for the newest epoch: a new one, later than all seen
	// (and not before now, as a UIDVALIDITY-like time).
	for _, tc := range []struct {
		name  string
		ctr   counterState
		ctrOK bool
		idx   indexData
		seen  uidSeen
		above uint32
	}{
		{"all lost", counterState{}, false, indexData{}, seen(4, 1<<31), 1 << 31},
		{"all lost, epoch in the future", counterState{}, false, indexData{}, seen(4, 1<<32-2), 1<<32 - 2},
		{"newer epoch only in names", counterState{epoch: 100, next: 50}, true, hdr(100, 50), seen(1, 300), 300},
		{"nothing at all", counterState{}, false, indexData{}, seen(), 1_700_000_000},
	} {
		got, fresh := recoverCounter(tc.ctr, tc.ctrOK, tc.idx, tc.seen)
		if !fresh || got.next != 1 || got.epoch <= tc.above {
			t.Errorf("%s: got %+v fresh=%v, want a new epoch above %d", tc.name, got, fresh, tc.above)
		}
	}
}

// FuzzParseIndex: the parser must never panic, and whatever it accepts
// must survive a write/parse round trip unchanged.
func FuzzParseIndex(f *testing.F) {
	f.Add(sampleIndex())
	f.Add([]byte{})
	f.Add([]byte("\n"))
	f.Add(sampleIndex()[:20])
	f.Add(appendLine(nil, []byte("popbox-index 1 0 4294967296")))
	f.Add(appendLine(nil, []byte("m %25%00%FF 00000001FFFFFFFF 1125899906842624")))
	f.Add([]byte(strings.Repeat("m x 0000000100000001 1 00000000\n", 3)))
	f.Add(appendRecord(appendHeader(nil, 1, 2), record{key: "k", uid: 1, epoch: 1, size: 3, lit: "x%y"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := parseIndex(data)
		if !d.header && !d.damaged {
			t.Fatal("no header but not damaged")
		}
		if !d.header {
			return
		}
		b := appendHeader(nil, d.epoch, d.next)
		for _, r := range d.recs {
			b = appendRecord(b, r)
		}
		again := parseIndex(b)
		d.damaged = false
		if diff := cmp.Diff(d, again, cmp.AllowUnexported(indexData{}, record{})); diff != "" {
			t.Fatalf("round trip (-parsed +reparsed):\n%s", diff)
		}
	})
}

// FuzzParseFileName: parsing never panics, a name with fields rebuilds
// exactly from its parts, and a literal survives the name encoding.
func FuzzParseFileName(f *testing.F) {
	f.Add("1700000000.M1P2.host:2,S")
	f.Add("k,P=0000000565A1B2C3,L=a%2Fb%3Ac%2Cd%25e,R=12:2,S")
	f.Add("k,L=x,P=0000000565A1B2C3,R=12")
	f.Add("k,P=0000000565A1B2C3,L=,R=0")
	f.Fuzz(func(t *testing.T, name string) {
		fn := parseFileName(name)
		if fn.hasFields {
			if back := withFields(fn.key, fn.uid, fn.epoch, fn.size, fn.lit, fn.info, fn.hasInfo); back != name {
				t.Fatalf("round trip %q -> %+v -> %q", name, fn, back)
			}
		}
		if validUIDL(name) {
			enc := encodeNameLiteral(name)
			if strings.ContainsAny(enc, "/:,") {
				t.Fatalf("encoded literal %q has a separator", enc)
			}
			if dec, ok := decodeNameLiteral(enc); !ok || dec != name {
				t.Fatalf("literal %q -> %q -> %q, %v", name, enc, dec, ok)
			}
		}
	})
}
