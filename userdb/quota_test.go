package userdb

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetQuota(t *testing.T) {
	db := newTestDB(t)
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
}
