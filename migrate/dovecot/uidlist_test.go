package dovecot

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUIDList(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *UIDList
	}{
		{
			name: "version 3 as Dovecot 2.3 writes it",
			in: "3 V1795783322 N12 G2194fc1c9a7a096b1733000083ecc375\n" +
				"1 W20 :1700000001.M1P1.exp\n" +
				"2 W42 P000000026b097a9a :1700000002.M2P1.exp\n" +
				"11 W17 P :1700000011.M11P1.exp\n",
			want: &UIDList{Version: 3, UIDValidity: 1795783322, NextUID: 12, GUID: "2194fc1c9a7a096b1733000083ecc375", Records: []Record{
				{UID: 1, Name: "1700000001.M1P1.exp", Ext: []string{"W20"}},
				{UID: 2, Name: "1700000002.M2P1.exp", Ext: []string{"W42", "P000000026b097a9a"}},
				{UID: 11, Name: "1700000011.M11P1.exp", Ext: []string{"W17", "P"}},
			}},
		},
		{
			name: "version 3 oddities",
			in: "3  V7 Pformat  N3 Xother G01234567-89AB-CDEF-0123-456789ABCDEF\r\n" +
				"5  x1 O2  :a b\r\n" + // invalid key dropped, spaces kept in the name
				"6 :c:2,S\n" + // flags are cut
				"7 :a b\n" + // same base name: the later record stands
				"8 :d\x00ignored\n" +
				"9 :partial",
			want: &UIDList{Version: 3, UIDValidity: 7, NextUID: 9, GUID: "0123456789abcdef0123456789abcdef",
				HeaderExt: []string{"Pformat", "Xother"},
				Records: []Record{
					{UID: 6, Name: "c"},
					{UID: 7, Name: "a b"},
					{UID: 8, Name: "d"},
				}},
		},
		{
			name: "version 1, Courier style",
			in:   "1 1234 50 trailing\n1 name1:2,S\n3   name3\n",
			want: &UIDList{Version: 1, UIDValidity: 1234, NextUID: 50, Records: []Record{
				{UID: 1, Name: "name1"},
				{UID: 3, Name: "name3"},
			}},
		},
		{
			name: "header only",
			in:   "3 V1 N1 G00000000000000000000000000000000\n",
			want: &UIDList{Version: 3, UIDValidity: 1, NextUID: 1, GUID: "00000000000000000000000000000000"},
		},
		{
			name: "next UID below the records is raised",
			in:   "3 V1 N2\n4 :a\n",
			want: &UIDList{Version: 3, UIDValidity: 1, NextUID: 5, Records: []Record{{UID: 4, Name: "a"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUIDList(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUIDListCorrupt(t *testing.T) {
	tests := []struct{ name, in, wantIn string }{
		{"empty", "", "empty"},
		{"only a partial header", "3 V1 N2", "empty"},
		{"no version", "V1 N2\n", "line 1"},
		{"two-digit version", "31 V1 N2\n", "line 1"},
		{"version 2", "2 1 2\n", "unsupported version 2"},
		{"version 4", "4 V1 N2\n", "unsupported version 4"},
		{"no UIDVALIDITY", "3 N2\n", "UIDVALIDITY 0"},
		{"no next UID", "3 V5\n", "next UID 0"},
		{"UIDVALIDITY junk", "3 V5x N2\n", "header field V"},
		{"UIDVALIDITY too big", "3 V4294967296 N2\n", "header field V"},
		{"bad GUID", "3 V1 N2 Gxyz\n", "header field G"},
		{"version 1 short", "1 5\n", "line 1"},
		{"version 1 negative", "1 -5 6\n", "line 1"},
		{"UID 0", "3 V1 N2\n0 :a\n", "line 2"},
		{"no UID", "3 V1 N2\n:a\n", "line 2"},
		{"empty line", "3 V1 N2\n\n", "line 2"},
		{"UID without space", "3 V1 N2\n1:a\n", "line 2"},
		{"UID too big", "3 V1 N2\n4294967295 :a\n", "line 2"},
		{"UID overflow", "3 V1 N2\n99999999999 :a\n", "line 2"},
		{"not ascending", "3 V1 N9\n2 :a\n2 :b\n", "not ascending"},
		{"descending", "3 V1 N9\n3 :a\n2 :b\n", "not ascending"},
		{"version 3 without ':'", "3 V1 N9\n1 name\n", "without a file name"},
		{"version 3 nothing after ':'", "3 V1 N9\n1 W5 :\n", "without a file name"},
		{"slash", "3 V1 N9\n1 :../etc/passwd\n", "'/'"},
		{"empty base name", "3 V1 N9\n1 ::2,S\n", "empty base file name"},
		{"version 1 UID not below next", "1 5 3\n3 a\n", "not below"},
		{"line too long", "3 V1 N9\n1 :" + strings.Repeat("x", MaxUIDListLine) + "\n", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUIDList(strings.NewReader(tt.in))
			if !errors.Is(err, ErrCorruptUIDList) {
				t.Fatalf("ParseUIDList = %+v, %v; want ErrCorruptUIDList", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not mention %q", err, tt.wantIn)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error too long (quotes too much): %d bytes", len(err.Error()))
			}
		})
	}
}

func TestParseUIDListTooLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("3 V1 N2\n")
	for uid := 1; b.Len() < 10000; uid++ {
		fmt.Fprintf(&b, "%d :name%d\n", uid, uid)
	}
	in := b.String()
	if _, err := parseUIDList(strings.NewReader(in), int64(len(in))); err != nil {
		t.Errorf("at the bound: %v", err)
	}
	_, err := parseUIDList(strings.NewReader(in), int64(len(in)-1))
	if !errors.Is(err, ErrCorruptUIDList) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("one byte over the bound: %v", err)
	}
}

func TestRecordLookup(t *testing.T) {
	r := Record{Ext: []string{"W5", "P", "Pno", "Oabc"}}
	for _, tt := range []struct {
		key  byte
		want string
		ok   bool
	}{
		{'W', "5", true},
		{'P', "", true},
		{'O', "abc", true},
		{'G', "", false},
	} {
		if got, ok := r.Lookup(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%c) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

// formatUIDList writes l as version 3, the inverse of ParseUIDList for the
// names it can represent.
func formatUIDList(l *UIDList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "3 V%d N%d", l.UIDValidity, l.NextUID)
	if l.GUID != "" {
		fmt.Fprintf(&b, " G%s", l.GUID)
	}
	for _, e := range l.HeaderExt {
		b.WriteString(" " + e)
	}
	b.WriteByte('\n')
	for _, r := range l.Records {
		fmt.Fprintf(&b, "%d", r.UID)
		for _, e := range r.Ext {
			b.WriteString(" " + e)
		}
		fmt.Fprintf(&b, " :%s\n", r.Name)
	}
	return b.String()
}

// FuzzParseUIDList: no input makes the parser panic or return a list that
// breaks its promises, and what it returns reads back the same after being
// written out again.
func FuzzParseUIDList(f *testing.F) {
	for _, s := range []string{
		"3 V1795783322 N12 G2194fc1c9a7a096b1733000083ecc375\n1 W20 :1700000001.M1P1.exp\n2 W42 P000000026b097a9a O3 :b\n",
		"1 1234 50\n1 name1:2,S\n3 name3\n",
		"3 V1 N2\n4 :a\n5 :a\n6 x :b\r\n7 :c",
		"3 V1 N2 G01234567-89AB-CDEF-0123-456789ABCDEF Pfmt\n1 :\x00\n",
		"2 1 2\n", "", "\n", "3 \n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseUIDList(strings.NewReader(in))
		if err != nil {
			if l != nil {
				t.Fatal("list returned with an error")
			}
			if !errors.Is(err, ErrCorruptUIDList) {
				t.Fatalf("error %v does not wrap ErrCorruptUIDList", err)
			}
			return
		}
		if l.Version != 1 && l.Version != 3 || l.UIDValidity == 0 || l.NextUID == 0 {
			t.Fatalf("header %+v", l)
		}
		names := map[string]bool{}
		var prev uint32
		for _, r := range l.Records {
			if r.UID <= prev || r.UID >= l.NextUID {
				t.Fatalf("UID %d after %d, next %d", r.UID, prev, l.NextUID)
			}
			prev = r.UID
			if r.Name == "" || strings.ContainsAny(r.Name, ":/\x00\n") || names[r.Name] {
				t.Fatalf("record name %q", r.Name)
			}
			names[r.Name] = true
			for _, e := range r.Ext {
				if e == "" || e[0] < 'A' || e[0] > 'Z' || strings.ContainsAny(e, " \x00\n") {
					t.Fatalf("extension %q", e)
				}
			}
		}
		// A CR ending a line would be eaten on the way back.
		for _, r := range l.Records {
			if strings.HasSuffix(r.Name, "\r") {
				return
			}
		}
		if n := len(l.HeaderExt); n > 0 && strings.HasSuffix(l.HeaderExt[n-1], "\r") {
			return
		}
		back, err := ParseUIDList(strings.NewReader(formatUIDList(l)))
		if err != nil {
			t.Fatalf("written back: %v\n%q", err, formatUIDList(l))
		}
		l.Version = 3
		if diff := cmp.Diff(l, back); diff != "" {
			t.Fatalf("written back (-first +second):\n%s", diff)
		}
	})
}
