package app

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/pop3client"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/userdb"
	"github.com/popbox/popbox/userdb/passhash"
)

// authServer runs a pop3server on loopback over a real user database and
// Maildir store holding the one user "alice" (password "alice-secret"),
// and returns its address and the database.
func authServer(t *testing.T) (string, *userdb.DB) {
	t.Helper()
	ctx := context.Background()
	data := DataDir(t.TempDir())
	// Cheap argon2id parameters: the hash cost is not under test.
	users, err := userdb.Open(data.UsersPath(), userdb.Options{Hash: passhash.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	if err := users.Add(ctx, "alice", "alice-secret"); err != nil {
		t.Fatal(err)
	}
	st, err := data.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &pop3server.Server{Backend: Backend{Users: users, Store: st}, AuthFailureDelay: -1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), users
}

// dialAuth connects to addr and runs AUTH with m.
func dialAuth(t *testing.T, addr string, m sasl.Client) (*pop3client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := pop3client.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, cl.Auth(ctx, m)
}

// TestAuthMechanisms drives each SASL mechanism through pop3client against
// the real server, backend and user database: the right password logs in,
// and a wrong password and an unknown user get the same [AUTH] reply.
func TestAuthMechanisms(t *testing.T) {
	addr, _ := authServer(t)
	mechs := []struct {
		name string
		new  func(user, pass string) sasl.Client
	}{
		{sasl.Plain, func(u, p string) sasl.Client { return sasl.NewPlainClient("", u, p) }},
		{sasl.Login, sasl.NewLoginClient},
		{sasl.SCRAMSHA256, func(u, p string) sasl.Client { return sasl.NewSCRAMSHA256Client(u, p, nil) }},
	}
	creds := []struct {
		name, user, pass string
		wantErr          bool
	}{
		{"success", "alice", "alice-secret", false},
		{"wrong password", "alice", "wrong", true},
		{"unknown user", "nobody", "alice-secret", true},
	}
	for _, m := range mechs {
		var replies []string
		for _, c := range creds {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cl, err := pop3client.Dial(ctx, addr, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				err = cl.Auth(ctx, m.new(c.user, c.pass))
				if !c.wantErr {
					if err != nil {
						t.Fatalf("Auth: %v", err)
					}
					if _, _, err := cl.Stat(ctx); err != nil {
						t.Fatalf("STAT after login: %v", err)
					}
					// QUIT, not just Close: its reply comes after the
					// maildrop is unlocked, so the next login cannot meet
					// [IN-USE] from this session.
					if err := cl.Quit(ctx); err != nil {
						t.Fatalf("QUIT: %v", err)
					}
					return
				}
				var pe *pop3client.Error
				if !errors.As(err, &pe) || pe.Code != "AUTH" {
					t.Fatalf("Auth = %v, want a -ERR [AUTH] reply", err)
				}
				replies = append(replies, pe.Error())
			})
		}
		// Unknown user and wrong password must not be told apart.
		if len(replies) == 2 {
			if diff := cmp.Diff(replies[0], replies[1]); diff != "" {
				t.Errorf("%s: unknown-user reply differs from wrong-password reply (-wrong +unknown):\n%s", m.name, diff)
			}
		}
	}
}

// TestSCRAMAfterPasswordLogin: a user without SCRAM credentials (here an
// imported hash; likewise a user from before the schema had them) fails
// SCRAM like a wrong password, gains the credentials at a USER/PASS login,
// and can then use SCRAM.
func TestSCRAMAfterPasswordLogin(t *testing.T) {
	addr, users := authServer(t)
	ctx := context.Background()
	h, err := passhash.Hash("carol-secret", passhash.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.AddHashed(ctx, "carol", h); err != nil {
		t.Fatal(err)
	}
	scramAs := func(user, pass string) error {
		_, err := dialAuth(t, addr, sasl.NewSCRAMSHA256Client(user, pass, nil))
		return err
	}

	errBefore := scramAs("carol", "carol-secret")
	errUnknown := scramAs("nobody", "carol-secret")
	var pe *pop3client.Error
	if !errors.As(errBefore, &pe) || pe.Code != "AUTH" {
		t.Fatalf("SCRAM without credentials = %v, want -ERR [AUTH]", errBefore)
	}
	if diff := cmp.Diff(errUnknown.Error(), errBefore.Error()); diff != "" {
		t.Errorf("user without credentials told apart from unknown user (-unknown +carol):\n%s", diff)
	}

	cl, err := pop3client.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.User(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Pass(ctx, "carol-secret"); err != nil {
		t.Fatal(err)
	}
	// Release the maildrop for the SCRAM login below.
	if err := cl.Quit(ctx); err != nil {
		t.Fatal(err)
	}

	if err := scramAs("carol", "carol-secret"); err != nil {
		t.Fatalf("SCRAM after a password login: %v", err)
	}
	if err := scramAs("carol", "wrong"); !errors.As(err, &pe) || pe.Code != "AUTH" {
		t.Fatalf("SCRAM with a wrong password = %v, want -ERR [AUTH]", err)
	}
}

// TestSCRAMSecretPersists: the secret behind unknown users' fake SCRAM
// salts is made once and read back unchanged, so it survives restarts.
func TestSCRAMSecretPersists(t *testing.T) {
	d := DataDir(t.TempDir())
	a, err := d.SCRAMSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.SCRAMSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || string(a) != string(b) {
		t.Fatalf("secret %x then %x: want the same 32 bytes", a, b)
	}
	if other, _ := DataDir(t.TempDir()).SCRAMSecret(); string(other) == string(a) {
		t.Error("two installations got the same secret")
	}
}
