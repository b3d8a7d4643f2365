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
		{"wrong version", append(lineWith("popbox-index 2 1 1"), appendRecord(nil, recs[0])...),
			indexData{recs: recs[:1], damaged: true}},
	}
	bad := []string{
		"m key 0000000100000001",                                // missing size
		"m key 0000000100000001 5 extra",                        // extra field
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
	good := formatCounter(counterState{epoch: 1700000000, next: 42})
	if len(good) != len(formatCounter(counterState{epoch: 1<<32 - 1, next: 1 << 32})) {
		t.Error("counter line length varies; it must be fixed for in-place overwrite")
	}
	tests := []struct {
		name string
		data []byte
		want counterState
		ok   bool
	}{
		{"good", good, counterState{epoch: 1700000000, next: 42}, true},
		{"max", formatCounter(counterState{epoch: 1<<32 - 1, next: 1 << 32}), counterState{epoch: 1<<32 - 1, next: 1 << 32}, true},
		{"torn", good[:len(good)-5], counterState{}, false},
		{"no newline", good[:len(good)-1], counterState{}, false},
		{"trailing junk", append(append([]byte{}, good...), "x\n"...), counterState{}, false},
		{"next zero", formatCounter(counterState{epoch: 1, next: 0}), counterState{}, false},
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
	}
	for _, tc := range tests {
		got := parseFileName(tc.name)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(fileName{})); diff != "" {
			t.Errorf("parseFileName(%q) (-want +got):\n%s", tc.name, diff)
		}
		if got.hasFields {
			if back := withFields(got.key, got.uid, got.epoch, got.size, got.info, got.hasInfo); back != tc.name {
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
		{"counter only", counterState{100, 5}, true, indexData{}, seen(3, 100), counterState{100, 5}, false},
		{"names ahead of counter", counterState{100, 5}, true, indexData{}, seen(9, 100), counterState{100, 10}, false},
		{"header ahead of counter", counterState{100, 5}, true, hdr(100, 8), seen(), counterState{100, 8}, false},
		{"no counter, header", counterState{}, false, hdr(100, 8), seen(3, 100), counterState{100, 8}, false},
		{"newer epoch in header", counterState{100, 50}, true, hdr(200, 2), seen(1, 200), counterState{200, 2}, false},
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
		{"newer epoch only in names", counterState{100, 50}, true, hdr(100, 50), seen(1, 300), 300},
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
