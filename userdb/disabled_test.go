package userdb

import (
	"context"
	"errors"
	"testing"
)

// TestDisabled: a disabled account fails every way of logging in, as a
// wrong password does, and works again once enabled; its data stays.
func TestDisabled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := newTestDB(t, b)
		ctx := context.Background()
		if err := db.Add(ctx, "alice", "main-pw"); err != nil {
			t.Fatal(err)
		}
		app, err := db.AddAppPassword(ctx, "alice", "phone")
		if err != nil {
			t.Fatal(err)
		}
		logins := map[string]func() error{
			"password": func() error { _, err := db.Authenticate(ctx, "alice", "main-pw"); return err },
			"app":      func() error { _, err := db.Authenticate(ctx, "alice", app); return err },
			"scram":    func() error { _, _, err := db.SCRAMCredentials(ctx, "alice"); return err },
		}
		for name, login := range logins {
			if err := login(); err != nil {
				t.Fatalf("%s before disabling: %v", name, err)
			}
		}
		if err := db.SetDisabled(ctx, "Alice", true); err != nil {
			t.Fatal(err)
		}
		if u, err := db.Get(ctx, "alice"); err != nil || !u.Disabled {
			t.Errorf("Get after disabling: %+v, %v", u, err)
		}
		for name, login := range logins {
			if err := login(); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("%s while disabled: %v, want ErrAuthFailed", name, err)
			}
		}
		if err := db.SetDisabled(ctx, "alice", false); err != nil {
			t.Fatal(err)
		}
		for name, login := range logins {
			if err := login(); err != nil {
				t.Errorf("%s after enabling: %v", name, err)
			}
		}
		if err := db.SetDisabled(ctx, "ghost", true); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetDisabled(ghost) = %v, want ErrNotFound", err)
		}
	})
}
