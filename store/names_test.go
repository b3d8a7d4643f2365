package store

import (
	"errors"
	"testing"
)

func TestFormatParseUIDL(t *testing.T) {
	tests := []struct {
		uid, epoch uint32
		want       string
	}{
		{1, 0, "0000000100000000"},
		{0xABCDEF01, 0x6543210F, "ABCDEF016543210F"},
		{1<<32 - 1, 1<<32 - 1, "FFFFFFFFFFFFFFFF"},
	}
	for _, tt := range tests {
		got := FormatUIDL(tt.uid, tt.epoch)
		if got != tt.want {
			t.Errorf("FormatUIDL(%d, %d) = %q, want %q", tt.uid, tt.epoch, got, tt.want)
		}
		if u, e, ok := ParseUIDL(got); !ok || u != tt.uid || e != tt.epoch {
			t.Errorf("ParseUIDL(%q) = %d, %d, %v", got, u, e, ok)
		}
	}
	for _, bad := range []string{"", "0000000000000001", "abcdef0165432100", "ABCDEF016543210", "ABCDEF016543210FF", "+BCDEF016543210F"} {
		if _, _, ok := ParseUIDL(bad); ok {
			t.Errorf("ParseUIDL(%q) accepted", bad)
		}
	}
	if err := CheckUIDL("a b"); !errors.Is(err, ErrInvalidUIDL) {
		t.Errorf("CheckUIDL(a space) = %v", err)
	}
	if err := CheckUIDL("x"); err != nil {
		t.Errorf("CheckUIDL(x) = %v", err)
	}
}

// FuzzParseUIDL: ParseUIDL accepts exactly what FormatUIDL produces (uid
// not 0), and everything it accepts is a valid UIDL.
func FuzzParseUIDL(f *testing.F) {
	for _, s := range []string{"0000000100000000", "FFFFFFFFFFFFFFFF", "0000000000000000", "abc", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, e, ok := ParseUIDL(s)
		if !ok {
			return
		}
		if FormatUIDL(u, e) != s {
			t.Fatalf("ParseUIDL(%q) = %d, %d, which formats as %q", s, u, e, FormatUIDL(u, e))
		}
		if u == 0 || !ValidUIDL(s) {
			t.Fatalf("ParseUIDL accepted %q", s)
		}
	})
}
