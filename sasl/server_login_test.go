package sasl

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// loginStep is one client response and what the server must answer.
type loginStep struct {
	resp      []byte // nil: no initial response
	challenge string
	done      bool
	err       bool
}

func TestLoginServer(t *testing.T) {
	errBad := errors.New("bad credentials")
	tests := []struct {
		name     string
		steps    []loginStep
		wantUser string // "" when the authenticator must not have run
		wantPass string
	}{
		{"challenges", []loginStep{
			{resp: nil, challenge: LoginUsernameChallenge},
			{resp: []byte("alice"), challenge: LoginPasswordChallenge},
			{resp: []byte("pass word"), done: true},
		}, "alice", "pass word"},
		{"initial response is the user name", []loginStep{
			{resp: []byte("alice"), challenge: LoginPasswordChallenge},
			{resp: []byte("secret"), done: true},
		}, "alice", "secret"},
		{"empty initial response is an empty user name", []loginStep{
			{resp: []byte{}, challenge: LoginPasswordChallenge},
			{resp: []byte("secret"), done: true},
		}, "", "secret"},
		{"authenticator refuses", []loginStep{
			{resp: []byte("alice"), challenge: LoginPasswordChallenge},
			{resp: []byte("wrong"), err: true},
		}, "alice", "wrong"},
		{"NUL in user name still asks for the password", []loginStep{
			{resp: []byte("al\x00ice"), challenge: LoginPasswordChallenge},
			{resp: []byte("secret"), done: true},
		}, "", "secret"},
		{"NUL in password", []loginStep{
			{resp: []byte("alice"), challenge: LoginPasswordChallenge},
			{resp: []byte("sec\x00ret"), err: true},
		}, "", ""},
		{"response after the end", []loginStep{
			{resp: []byte("alice"), challenge: LoginPasswordChallenge},
			{resp: []byte("wrong"), err: true},
			{resp: []byte("more"), err: true},
		}, "alice", "wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotUser, gotPass string
			srv := NewLoginServer(func(u, p string) error {
				gotUser, gotPass = u, p
				if p == "wrong" {
					return errBad
				}
				return nil
			})
			for i, st := range tt.steps {
				ch, done, err := srv.Next(st.resp)
				if (err != nil) != st.err || done != st.done || string(ch) != st.challenge {
					t.Fatalf("step %d: Next(%q) = %q, %v, %v; want %q, %v, error %v",
						i, st.resp, ch, done, err, st.challenge, st.done, st.err)
				}
			}
			if diff := cmp.Diff([2]string{tt.wantUser, tt.wantPass}, [2]string{gotUser, gotPass}); diff != "" {
				t.Errorf("authenticator saw (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzLoginServer feeds arbitrary responses to the LOGIN server: it must
// never panic, finish in at most three steps, and only report success after
// handing the authenticator exactly the responses it was given.
func FuzzLoginServer(f *testing.F) {
	f.Add([]byte("alice"), []byte("secret"), []byte(nil), true)
	f.Add([]byte(""), []byte("\x00"), []byte("x"), false)
	f.Fuzz(func(t *testing.T, a, b, c []byte, initial bool) {
		var user, pass string
		srv := NewLoginServer(func(u, p string) error { user, pass = u, p; return nil })
		resps := [][]byte{a, b, c}
		if !initial {
			resps = append([][]byte{nil}, resps...)
		}
		for i, r := range resps {
			_, done, err := srv.Next(r)
			if err != nil {
				return
			}
			if done {
				if pass != string(resps[i]) {
					t.Fatalf("password %q, want %q", pass, resps[i])
				}
				if user != "" && user != string(resps[i-1]) {
					t.Fatalf("user %q, want %q", user, resps[i-1])
				}
				return
			}
		}
		t.Fatalf("no end after %d responses", len(resps))
	})
}
