package sasl

import (
	"bytes"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

// FuzzPlainServer feeds arbitrary messages to the PLAIN server the POP3
// server uses (go-sasl's, RFC 4616): no panic, and whatever reaches the
// authenticator is exactly the message's three NUL-separated fields.
func FuzzPlainServer(f *testing.F) {
	for _, s := range []string{"\x00alice\x00secret", "alice\x00alice\x00secret", "bob\x00alice\x00pw", "", "\x00", "\x00\x00", "a\x00b", "a\x00b\x00c\x00d", "\x00alice\x00"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, msg []byte, twoStep bool) {
		var got [][]byte
		srv := gosasl.NewPlainServer(func(identity, username, password string) error {
			got = [][]byte{[]byte(identity), []byte(username), []byte(password)}
			return nil
		})
		if twoStep {
			ch, done, err := srv.Next(nil)
			if err != nil || done || len(ch) != 0 {
				t.Fatalf("without initial response: %q, %v, %v; want an empty challenge", ch, done, err)
			}
		}
		_, done, err := srv.Next(msg)
		if err != nil {
			if got != nil {
				t.Fatalf("%q: refused, but the authenticator was called", msg)
			}
			return
		}
		if !done || got == nil {
			t.Fatalf("%q: accepted without a decision (done %v)", msg, done)
		}
		if !bytes.Equal(bytes.Join(got, []byte{0}), msg) {
			t.Fatalf("%q: authenticator got %q", msg, got)
		}
	})
}
