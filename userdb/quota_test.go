package userdb

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetQuota(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		db := newTestDB(t, be)
		ctx := context.Background()
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		get := func() (b, m *int64) {
			u, err := db.Get(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			return u.QuotaBytes, u.QuotaMessages
		}
		if b, m := get(); b != nil || m != nil {
			t.Fatalf("a new user has quota overrides %v, %v", b, m)
		}
		gig, none := int64(1<<30), int64(0)
		if err := db.SetQuota(ctx, "ALICE", &gig, &none); err != nil {
			t.Fatal(err)
		}
		b, m := get()
		if diff := cmp.Diff([]*int64{&gig, &none}, []*int64{b, m}); diff != "" {
			t.Errorf("quota after SetQuota (-want +got):\n%s", diff)
		}
		if err := db.SetQuota(ctx, "alice", nil, &gig); err != nil {
			t.Fatal(err)
		}
		if b, m := get(); b != nil || m == nil || *m != gig {
			t.Errorf("after resetting bytes: %v, %v", b, m)
		}
		neg := int64(-1)
		if err := db.SetQuota(ctx, "alice", &neg, nil); err == nil {
			t.Error("negative quota accepted")
		}
		if err := db.SetQuota(ctx, "ghost", nil, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetQuota(ghost) = %v, want ErrNotFound", err)
		}
	})
}

// TestKeepHashes: with KeepHashes an imported hash stays as it is after a
// login; without, it becomes argon2id.
func TestKeepHashes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, keep := range []bool{false, true} {
			db := openTest(t, b.path(t), Options{KeepHashes: keep})
			ctx := context.Background()
			// openssl passwd -6 -salt upgrade hunter22
			const h = "$6$upgrade$d5LBqug.55xccPDgbrj/BEO0eEnEk0C.e3VZiB3ONq6CkZocSBR2Mfu6.g/CL5bJyluMHJXw49hSLib7VdueE/"
			if err := db.AddHashed(ctx, "alice", h); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Authenticate(ctx, "alice", "hunter22"); err != nil {
				t.Fatalf("keep %v: login with the imported hash: %v", keep, err)
			}
			if got := storedHash(t, db, "alice") == h; got != keep {
				t.Errorf("KeepHashes %v: hash unchanged after login = %v", keep, got)
			}
		}
	})
}
