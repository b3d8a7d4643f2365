package userdb

import (
	"context"
	"testing"
	"time"
)

// TestLastLogin: the newest success counts, failures do not.
func TestLastLogin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := newTestDB(t, b)
		ctx := context.Background()
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.LastLogin(ctx, "alice"); err != nil || !got.IsZero() {
			t.Fatalf("LastLogin before any login = %v, %v; want zero", got, err)
		}
		base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		for _, ev := range []LoginEvent{
			{Time: base, Success: true, Mechanism: "USER"},
			{Time: base.Add(2 * time.Minute), Success: true, Mechanism: "PLAIN"},
			{Time: base.Add(time.Minute), Success: true, Mechanism: "USER"},
			{Time: base.Add(time.Hour), Success: false, Mechanism: "USER"},
		} {
			if err := db.RecordLogin(ctx, "alice", ev); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := db.LastLogin(ctx, "ALICE"); err != nil || !got.Equal(base.Add(2*time.Minute)) {
			t.Errorf("LastLogin = %v, %v; want %v", got, err, base.Add(2*time.Minute))
		}
		if _, err := db.LastLogin(ctx, "bad name"); err == nil {
			t.Error("LastLogin of an invalid name succeeded")
		}
	})
}
