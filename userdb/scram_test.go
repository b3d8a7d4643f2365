package userdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/xdg-go/scram"

	"github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/userdb/passhash"
)

// scramProves reports whether a SCRAM-SHA-256 client knowing password
// authenticates against creds: what the POP3 server will check.
func scramProves(t *testing.T, creds sasl.SCRAMCredentials, password string) bool {
	t.Helper()
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		t.Fatal(err)
	}
	cl, err := scram.SHA256.NewClient("user", password, "")
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := cl.NewConversation(), srv.NewConversation()
	msg, err := cc.Step("")
	for err == nil && !sc.Done() {
		if msg, err = sc.Step(msg); err != nil {
			break
		}
		msg, err = cc.Step(msg)
	}
	return err == nil && sc.Valid()
}

func TestSCRAMCredentials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		db := openTest(t, b.path(t), Options{})
		if err := db.Add(ctx, "Alice", "first-pw"); err != nil {
			t.Fatal(err)
		}
		h, err := passhash.Hash("imported-pw", cheapParams())
		if err != nil {
			t.Fatal(err)
		}
		if err := db.AddHashed(ctx, "bob", h); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name, user string
			wantName   string
			wantErr    error
			password   string // proves against the credentials
		}{
			{"set by Add", "alice", "alice", nil, "first-pw"},
			{"name is canonicalised", "ALICE", "alice", nil, "first-pw"},
			{"imported hash has none", "bob", "", ErrAuthFailed, ""},
			{"unknown user", "nobody", "", ErrAuthFailed, ""},
			{"invalid name", "no/such", "", ErrAuthFailed, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				name, creds, err := db.SCRAMCredentials(ctx, tt.user)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("SCRAMCredentials(%q) error = %v, want %v", tt.user, err, tt.wantErr)
				}
				if diff := cmp.Diff(tt.wantName, name); diff != "" {
					t.Errorf("name (-want +got):\n%s", diff)
				}
				if err != nil {
					return
				}
				if creds.Iters < sasl.DefaultSCRAMIterations || len(creds.Salt) < 16 {
					t.Errorf("iterations %d, salt %d octets; want at least %d and 16", creds.Iters, len(creds.Salt), sasl.DefaultSCRAMIterations)
				}
				if !scramProves(t, creds, tt.password) {
					t.Error("the password does not prove against the credentials")
				}
				if scramProves(t, creds, tt.password+"x") {
					t.Error("a wrong password proves against the credentials")
				}
			})
		}

		t.Run("SetPassword replaces them", func(t *testing.T) {
			if err := db.SetPassword(ctx, "alice", "second-pw"); err != nil {
				t.Fatal(err)
			}
			_, creds, err := db.SCRAMCredentials(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if !scramProves(t, creds, "second-pw") || scramProves(t, creds, "first-pw") {
				t.Error("credentials do not follow the new password")
			}
		})

		t.Run("password login adds missing ones", func(t *testing.T) {
			if _, err := db.Authenticate(ctx, "bob", "wrong"); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("wrong password: %v", err)
			}
			if _, _, err := db.SCRAMCredentials(ctx, "bob"); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("after a failed login: %v, want still none", err)
			}
			pw, err := db.AddAppPassword(ctx, "bob", "phone")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Authenticate(ctx, "bob", pw); err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.SCRAMCredentials(ctx, "bob"); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("after an app password login: %v, want still none", err)
			}
			if _, err := db.Authenticate(ctx, "bob", "imported-pw"); err != nil {
				t.Fatal(err)
			}
			_, creds, err := db.SCRAMCredentials(ctx, "bob")
			if err != nil {
				t.Fatalf("after a password login: %v", err)
			}
			if !scramProves(t, creds, "imported-pw") {
				t.Error("the password does not prove against the added credentials")
			}
		})
	})
}

// TestMigrationToSCRAM opens a version 2 database: the users keep working,
// have no SCRAM credentials, and gain them at their next password login.
func TestMigrationToSCRAM(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := passhash.Hash("old-pw", cheapParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		migrations()[0],
		migrations()[1],
		fmt.Sprintf(`INSERT INTO users VALUES ('alice', '%s', 1700000000, 1700000000)`, h),
		`PRAGMA user_version = 2`,
	} {
		if _, err := raw.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	raw.Close()

	db := openTest(t, path, Options{})
	var v int
	if err := db.sql.QueryRowContext(t.Context(), `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations()) {
		t.Fatalf("user_version after migration = %d, %v; want %d", v, err, len(migrations()))
	}
	if _, _, err := db.SCRAMCredentials(ctx, "alice"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("SCRAMCredentials before login: %v, want ErrAuthFailed", err)
	}
	if _, err := db.Authenticate(ctx, "alice", "old-pw"); err != nil {
		t.Fatal(err)
	}
	_, creds, err := db.SCRAMCredentials(ctx, "alice")
	if err != nil || !scramProves(t, creds, "old-pw") {
		t.Fatalf("SCRAMCredentials after login: %v; or the password does not prove", err)
	}
}
