package lmtp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestRecipientNames(t *testing.T) {
	tests := []struct {
		addr, delims string
		want         []string
		wantErr      error
	}{
		{"alice@example.org", "", []string{"alice@example.org", "alice"}, nil},
		{"Alice@Example.ORG", "", []string{"alice@example.org", "alice"}, nil},
		{"alice+news@example.org", "", []string{"alice+news@example.org", "alice+news"}, nil},
		{"alice+news@example.org", "+", []string{"alice+news@example.org", "alice+news", "alice@example.org", "alice"}, nil},
		{"bob-lists+x@example.org", "+-", []string{"bob-lists+x@example.org", "bob-lists+x", "bob@example.org", "bob"}, nil},
		{"+news@example.org", "+", []string{"+news@example.org", "+news"}, nil},
		{"postmaster", "", []string{"postmaster"}, nil},
		{"a@b@example.org", "", []string{"a@b@example.org", "a@b"}, nil},
		{"alice@[192.0.2.1]", "", []string{"alice@[192.0.2.1]", "alice"}, nil},
		{"\u212Aelvin@example.org", "", []string{"\u212Aelvin@example.org", "\u212Aelvin"}, nil},
		{"@example.org", "", nil, ErrBadAddress},
		{"alice@", "", nil, ErrBadAddress},
		{"", "", nil, ErrBadAddress},
		{"a\rb@example.org", "", nil, ErrBadAddress},
		{"a\x00b@example.org", "", nil, ErrBadAddress},
		{"a\x7fb@example.org", "", nil, ErrBadAddress},
		{strings.Repeat("a", 243) + "@example.org", "", nil, ErrBadAddress},
	}
	for _, tt := range tests {
		got, err := recipientNames(tt.addr, tt.delims)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("recipientNames(%q, %q) error = %v, want %v", tt.addr, tt.delims, err, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("recipientNames(%q, %q) (-want +got):\n%s", tt.addr, tt.delims, diff)
		}
	}
}

func FuzzRecipientNames(f *testing.F) {
	for _, s := range []string{"alice@example.org", "Bob+x@Example.org", "a@b@c", "+@x", "postmaster", "\"a b\"@x", "\xff@x"} {
		f.Add(s, "+")
	}
	f.Fuzz(func(t *testing.T, addr, delims string) {
		names, err := recipientNames(addr, delims)
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("%q: error %v does not wrap ErrBadAddress", addr, err)
			}
			return
		}
		if len(names) == 0 {
			t.Fatalf("%q: no names and no error", addr)
		}
		if names[0] != lowerASCII(addr) {
			t.Errorf("%q: first name %q, want the whole address lower-cased", addr, names[0])
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || len(n) > len(addr) {
				t.Errorf("%q: name %q", addr, n)
			}
			if seen[n] {
				t.Errorf("%q: %q twice in %q", addr, n, names)
			}
			seen[n] = true
			if checkAddress(n) != nil || strings.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("%q: name %q not clean", addr, n)
			}
			if utf8.ValidString(addr) && !utf8.ValidString(n) {
				t.Errorf("%q: name %q is not valid UTF-8", addr, n)
			}
		}
	})
}

func TestAddressResolver(t *testing.T) {
	var asked []string
	r := AddressResolver{
		Delimiters: "+",
		Lookup: func(_ context.Context, name string) (string, error) {
			asked = append(asked, name)
			switch name {
			case "alice", "shared@example.org":
				return name, nil
			case "broken":
				return "", errors.New("database down")
			}
			return "", fmt.Errorf("%w: %s", ErrUnknownRecipient, name)
		},
	}
	tests := []struct {
		addr      string
		want      string
		wantErr   error // nil, ErrUnknownRecipient, ErrBadAddress, or errTemp
		wantAsked []string
	}{
		{"alice@example.org", "alice", nil, []string{"alice@example.org", "alice"}},
		{"Alice+news@example.org", "alice", nil, []string{"alice+news@example.org", "alice+news", "alice@example.org", "alice"}},
		{"Shared@Example.org", "shared@example.org", nil, []string{"shared@example.org"}},
		{"nobody@example.org", "", ErrUnknownRecipient, []string{"nobody@example.org", "nobody"}},
		{"broken@example.org", "", errTemp, []string{"broken@example.org", "broken"}},
		{"@example.org", "", ErrBadAddress, nil},
	}
	for _, tt := range tests {
		asked = nil
		got, err := r.ResolveRecipient(context.Background(), tt.addr)
		switch {
		case tt.wantErr == errTemp:
			if err == nil || errors.Is(err, ErrUnknownRecipient) || errors.Is(err, ErrBadAddress) {
				t.Errorf("%s: error %v, want a temporary one", tt.addr, err)
			}
		case !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil):
			t.Errorf("%s: error %v, want %v", tt.addr, err, tt.wantErr)
		}
		if got != tt.want {
			t.Errorf("%s: user %q, want %q", tt.addr, got, tt.want)
		}
		if diff := cmp.Diff(tt.wantAsked, asked); diff != "" {
			t.Errorf("%s: names looked up (-want +got):\n%s", tt.addr, diff)
		}
	}
}

var errTemp = errors.New("any error that is neither unknown nor bad")
