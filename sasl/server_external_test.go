package sasl

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestExternalServer(t *testing.T) {
	errNotHers := errors.New("not hers")
	tests := []struct {
		name      string
		responses [][]byte // nil first: no initial response
		wantAuthz []string
		wantErr   bool
	}{
		{name: "initial empty", responses: [][]byte{{}}, wantAuthz: []string{""}},
		{name: "initial authzid", responses: [][]byte{[]byte("alice")}, wantAuthz: []string{"alice"}},
		{name: "two steps", responses: [][]byte{nil, []byte("alice")}, wantAuthz: []string{"alice"}},
		{name: "two steps empty", responses: [][]byte{nil, {}}, wantAuthz: []string{""}},
		{name: "refused", responses: [][]byte{[]byte("bob")}, wantAuthz: []string{"bob"}, wantErr: true},
		{name: "NUL", responses: [][]byte{[]byte("al\x00ice")}, wantErr: true},
		{name: "control character", responses: [][]byte{[]byte("I0\x13")}, wantErr: true},
		{name: "not UTF-8", responses: [][]byte{{0xff}}, wantErr: true},
		{name: "too long", responses: [][]byte{make([]byte, 300)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			srv := NewExternalServer(func(authzid string) error {
				got = append(got, authzid)
				if authzid == "bob" {
					return errNotHers
				}
				return nil
			})
			var err error
			done := false
			for i, r := range tt.responses {
				var ch []byte
				ch, done, err = srv.Next(r)
				if err != nil {
					break
				}
				if i < len(tt.responses)-1 && (done || len(ch) != 0) {
					t.Fatalf("step %d: challenge %q, done %v; want an empty challenge", i, ch, done)
				}
			}
			if (err != nil) != tt.wantErr || (err == nil && !done) {
				t.Fatalf("err %v, done %v; want error %v", err, done, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantAuthz, got); diff != "" {
				t.Errorf("authzids (-want +got):\n%s", diff)
			}
			if _, _, err := srv.Next([]byte("more")); err == nil {
				t.Error("a response after the end accepted")
			}
		})
	}
}

// FuzzExternalServer: any response, as initial response or after the
// empty challenge, ends the exchange without a panic, and only valid UTF-8
// without NUL reaches the authenticator.
func FuzzExternalServer(f *testing.F) {
	for _, s := range []string{"", "alice", "al\x00ice", "\xff"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, resp []byte, twoStep bool) {
		srv := NewExternalServer(func(authzid string) error {
			if !utf8.ValidString(authzid) || strings.ContainsRune(authzid, 0) {
				t.Errorf("authenticator got %q", authzid)
			}
			return nil
		})
		if twoStep {
			if _, _, err := srv.Next(nil); err != nil {
				t.Fatal(err)
			}
		}
		if resp == nil {
			resp = []byte{}
		}
		if _, done, err := srv.Next(resp); err == nil && !done {
			t.Fatalf("%q: neither done nor failed", resp)
		}
	})
}
