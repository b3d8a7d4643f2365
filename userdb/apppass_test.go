package userdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/popbox/popbox/userdb/passhash"
)

var appPasswordRE = regexp.MustCompile(`^[a-km-np-z2-9]{4}(-[a-km-np-z2-9]{4}){3}$`)

func TestAppPasswordFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw, id := newAppPassword()
		if !appPasswordRE.MatchString(pw) {
			t.Fatalf("newAppPassword() = %q, not in the app password format", pw)
		}
		if id != pw[:4] {
			t.Errorf("ID %q is not the first group of %q", id, pw)
		}
		if seen[pw] {
			t.Errorf("%q generated twice", pw)
		}
		seen[pw] = true
		if c, gotID, ok := parseAppPassword(pw); !ok || c != pw || gotID != id {
			t.Errorf("parseAppPassword(%q) = %q, %q, %v", pw, c, gotID, ok)
		}
	}
}

func TestParseAppPassword(t *testing.T) {
	tests := []struct {
		in, want string // want "" for: not an app password
	}{
		{"abcd-efgh-ijkm-npqr", "abcd-efgh-ijkm-npqr"},
		{"ABCD-EFGH-IJKM-NPQR", "abcd-efgh-ijkm-npqr"},
		{"abcd efgh ijkm npqr", "abcd-efgh-ijkm-npqr"},
		{"abcdefghijkmnpqr", "abcd-efgh-ijkm-npqr"},
		{"abcd-efgh-ijkm-npq", ""},    // short
		{"abcd-efgh-ijkm-npqrs", ""},  // long
		{"abcd-efgh-ijkl-npqr", ""},   // l is not in the alphabet
		{"abcd-efgh-ijk0-npqr", ""},   // nor 0
		{"abcd_efgh_ijkm_npqr", ""},   // separator
		{"correct horse battery", ""}, // a main password
		{"", ""},
	}
	for _, tt := range tests {
		got, id, ok := parseAppPassword(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("parseAppPassword(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
		if ok && id != tt.want[:4] {
			t.Errorf("parseAppPassword(%q) ID %q, want %q", tt.in, id, tt.want[:4])
		}
	}
}

func TestValidLabel(t *testing.T) {
	tests := []struct {
		label string
		ok    bool
	}{
		{"phone", true},
		{"Alice's laptop (Thunderbird)", true},
		{"téléphone", true},
		{strings.Repeat("x", MaxLabelLen), true},
		{"", false},
		{strings.Repeat("x", MaxLabelLen+1), false},
		{" phone", false},
		{"phone ", false},
		{"ph\none", false},
		{"ph\x00one", false},
		{"a\xffb", false},
	}
	for _, tt := range tests {
		err := ValidLabel(tt.label)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidLabel)) {
			t.Errorf("ValidLabel(%q) = %v, want ok=%v", tt.label, err, tt.ok)
		}
	}
}

// TestAppPasswords: add, list, authenticate, revoke; the main password
// keeps working and revoking one device leaves the others alone.
func TestAppPasswords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		for _, name := range []string{"alice", "bob"} {
			if err := db.Add(ctx, name, "main-"+name); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now().Add(-time.Second).Truncate(time.Second)
		phone, err := db.AddAppPassword(ctx, "Alice", "phone")
		if err != nil {
			t.Fatal(err)
		}
		laptop, err := db.AddAppPassword(ctx, "alice", "laptop")
		if err != nil {
			t.Fatal(err)
		}
		bobPhone, err := db.AddAppPassword(ctx, "bob", "phone") // labels are per user
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{phone, laptop, bobPhone} {
			if !appPasswordRE.MatchString(pw) {
				t.Errorf("app password %q not in the documented format", pw)
			}
		}

		// Never stored in clear.
		var n int
		if err := db.sql.QueryRowContext(t.Context(), `SELECT count(*) FROM app_passwords WHERE hash LIKE '$argon2id$%' AND hash NOT LIKE '%' || ? || '%'`,
			phone[5:]).Scan(&n); err != nil || n != 3 {
			t.Errorf("argon2id app password hashes without the secret: %d, %v; want 3", n, err)
		}

		addErrs := []struct {
			name, label string
			want        error
		}{
			{"alice", "phone", ErrExists},
			{"ghost", "phone", ErrNotFound},
			{"bad name", "phone", ErrInvalidName},
			{"alice", "", ErrInvalidLabel},
			{"alice", "a\nb", ErrInvalidLabel},
		}
		for _, tt := range addErrs {
			if pw, err := db.AddAppPassword(ctx, tt.name, tt.label); !errors.Is(err, tt.want) || pw != "" {
				t.Errorf("AddAppPassword(%q, %q) = %q, %v; want %v", tt.name, tt.label, pw, err, tt.want)
			}
		}

		auth := func(step, user, password string, wantOK bool) {
			t.Helper()
			got, err := db.Authenticate(ctx, user, password)
			if wantOK && (err != nil || got != Canonical(user)) {
				t.Errorf("%s: Authenticate(%q, %q) = %q, %v; want success", step, user, password, got, err)
			}
			if !wantOK && !errors.Is(err, ErrAuthFailed) {
				t.Errorf("%s: Authenticate(%q, %q) = %q, %v; want ErrAuthFailed", step, user, password, got, err)
			}
		}
		auth("main password", "alice", "main-alice", true)
		auth("phone", "alice", phone, true)
		auth("phone, upper case", "ALICE", strings.ToUpper(phone), true)
		auth("phone, spaces", "alice", strings.ReplaceAll(phone, "-", " "), true)
		auth("laptop", "alice", laptop, true)
		auth("bob's app password for alice", "alice", bobPhone, false)
		auth("alice's app password for bob", "bob", phone, false)
		auth("right ID, wrong secret", "alice", phone[:5]+laptop[5:], false)
		auth("app password of unknown user", "ghost", phone, false)

		list, err := db.AppPasswords(ctx, "ALICE")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			if a.Created.Before(start) || a.LastUsed.Before(a.Created) || a.LastUsed.After(time.Now()) {
				t.Errorf("%s: created %v, last used %v; want both since %v", a.Label, a.Created, a.LastUsed, start)
			}
		}
		want := []AppPassword{{Label: "laptop"}, {Label: "phone"}}
		if diff := cmp.Diff(want, list, cmpopts.IgnoreFields(AppPassword{}, "Created", "LastUsed")); diff != "" {
			t.Errorf("AppPasswords (-want +got):\n%s", diff)
		}
		bobList, err := db.AppPasswords(ctx, "bob")
		if err != nil || len(bobList) != 1 || !bobList[0].LastUsed.IsZero() {
			t.Errorf("bob's app passwords = %+v, %v; want one, never used", bobList, err)
		}

		if err := db.RevokeAppPassword(ctx, "alice", "phone"); err != nil {
			t.Fatal(err)
		}
		revokeErrs := []struct {
			name, label string
			want        error
		}{
			{"alice", "phone", ErrNoAppPassword},
			{"alice", "tablet", ErrNoAppPassword},
			{"ghost", "phone", ErrNotFound},
			{"bad name", "phone", ErrInvalidName},
		}
		for _, tt := range revokeErrs {
			if err := db.RevokeAppPassword(ctx, tt.name, tt.label); !errors.Is(err, tt.want) {
				t.Errorf("RevokeAppPassword(%q, %q) = %v, want %v", tt.name, tt.label, err, tt.want)
			}
		}
		auth("revoked phone", "alice", phone, false)
		auth("laptop after revoking phone", "alice", laptop, true)
		auth("bob's phone after revoking alice's", "bob", bobPhone, true)
		auth("main password after revoking", "alice", "main-alice", true)

		// Changing the main password leaves app passwords alone; deleting the
		// user takes them along, so a new account of that name inherits none.
		if err := db.SetPassword(ctx, "alice", "new-main"); err != nil {
			t.Fatal(err)
		}
		auth("laptop after passwd", "alice", laptop, true)
		if err := db.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := db.Add(ctx, "alice", "again"); err != nil {
			t.Fatal(err)
		}
		auth("laptop of deleted account", "alice", laptop, false)
		if list, err := db.AppPasswords(ctx, "alice"); err != nil || len(list) != 0 {
			t.Errorf("re-created alice's app passwords = %+v, %v; want none", list, err)
		}
		if _, err := db.AppPasswords(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
			t.Errorf("AppPasswords(ghost) = %v, want ErrNotFound", err)
		}
	})
}

func TestAppPasswordLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		for i := range MaxAppPasswords {
			if _, err := db.AddAppPassword(ctx, "alice", fmt.Sprint("device ", i)); err != nil {
				t.Fatalf("app password %d: %v", i, err)
			}
		}
		if _, err := db.AddAppPassword(ctx, "alice", "one too many"); !errors.Is(err, ErrTooManyPasswords) {
			t.Errorf("app password %d: %v, want ErrTooManyPasswords", MaxAppPasswords+1, err)
		}
	})
}

// TestAppPasswordOneVerification: however many app passwords a user has, a
// login verifies one hash. Counted by making every hash but the one that
// should be used unusable, which Authenticate logs.
func TestAppPasswordOneVerification(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		var logs logBuffer
		db := openTest(t, b.path(t), Options{
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err := db.Add(ctx, "alice", "main"); err != nil {
			t.Fatal(err)
		}
		var pws []string
		for i := range 5 {
			pw, err := db.AddAppPassword(ctx, "alice", fmt.Sprint("d", i))
			if err != nil {
				t.Fatal(err)
			}
			pws = append(pws, pw)
		}
		// Break all app password hashes except d2's.
		if _, err := db.sql.ExecContext(t.Context(), `UPDATE app_passwords SET hash = 'broken' WHERE label != 'd2'`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(ctx, "alice", pws[2]); err != nil {
			t.Errorf("d2: %v", err)
		}
		if _, err := db.Authenticate(ctx, "alice", "main"); err != nil {
			t.Errorf("main password: %v", err)
		}
		if strings.Contains(logs.String(), "unusable") {
			t.Errorf("a login touched a hash other than its own:\n%s", logs.String())
		}
		// And the selected one is indeed the one verified.
		if _, err := db.Authenticate(ctx, "alice", pws[3]); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("d3 with broken hash: %v, want ErrAuthFailed", err)
		}
		if !strings.Contains(logs.String(), "unusable") {
			t.Errorf("d3's broken hash was not the one verified; log:\n%s", logs.String())
		}
	})
}

// TestAppPasswordRehash: an app password hashed with old parameters is
// upgraded at its next use, like a main password.
func TestAppPasswordRehash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		path := b.path(t)
		old := openTest(t, path, Options{})
		if err := old.Add(ctx, "alice", "main"); err != nil {
			t.Fatal(err)
		}
		pw, err := old.AddAppPassword(ctx, "alice", "phone")
		if err != nil {
			t.Fatal(err)
		}
		newParams := passhash.Params{Memory: 128, Time: 1, Threads: 1}
		db := openTest(t, path, Options{Hash: newParams})
		if _, err := db.Authenticate(ctx, "alice", pw); err != nil {
			t.Fatal(err)
		}
		var h string
		if err := db.sql.QueryRowContext(t.Context(), `SELECT hash FROM app_passwords`).Scan(&h); err != nil {
			t.Fatal(err)
		}
		if passhash.NeedsRehash(h, newParams) {
			t.Errorf("app password hash %q not upgraded to %v", h, newParams)
		}
		if _, err := db.Authenticate(ctx, "alice", pw); err != nil {
			t.Errorf("after upgrade: %v", err)
		}
	})
}

// TestMigrateFromVersion1 creates a database exactly as the previous
// release did (schema version 1), then opens it with this code.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
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
		fmt.Sprintf(`INSERT INTO users VALUES ('alice', '%s', 1700000000, 1700000000)`, h),
		`PRAGMA user_version = 1`,
	} {
		if _, err := raw.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	raw.Close()

	db := openTest(t, path, Options{})
	var v int
	if err := db.sql.QueryRowContext(t.Context(), `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations()) || v < 2 {
		t.Errorf("user_version after migration = %d, %v; want %d", v, err, len(migrations()))
	}
	if _, err := db.Authenticate(ctx, "alice", "old-pw"); err != nil {
		t.Errorf("old user after migration: %v", err)
	}
	u, err := db.Get(ctx, "alice")
	if err != nil || !u.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("Get(alice) = %+v, %v; want created kept", u, err)
	}
	pw, err := db.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice", pw); err != nil {
		t.Errorf("app password after migration: %v", err)
	}
	if err := db.RecordLogin(ctx, "alice", LoginEvent{RemoteAddr: "192.0.2.1:1", Mechanism: "password", Success: true}); err != nil {
		t.Errorf("RecordLogin after migration: %v", err)
	}
	// Migrating twice is a no-op.
	db.Close()
	db = openTest(t, path, Options{})
	if _, err := db.Authenticate(ctx, "alice", pw); err != nil {
		t.Errorf("app password after reopening: %v", err)
	}
}

func TestLoginHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		for _, name := range []string{"alice", "bob"} {
			if err := db.Add(ctx, name, "pw"); err != nil {
				t.Fatal(err)
			}
		}
		base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		ev := func(i int, ok bool) LoginEvent {
			return LoginEvent{Time: base.Add(time.Duration(i) * time.Minute), RemoteAddr: fmt.Sprintf("192.0.2.%d:110", i), Mechanism: "password", Success: ok}
		}
		// 30 successes and 25 failures, interleaved, plus one for bob.
		for i := range 30 {
			if err := db.RecordLogin(ctx, "ALICE", ev(i, true)); err != nil {
				t.Fatal(err)
			}
			if i < 25 {
				if err := db.RecordLogin(ctx, "alice", ev(i, false)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := db.RecordLogin(ctx, "bob", ev(99, false)); err != nil {
			t.Fatal(err)
		}
		var want LoginHistory
		for i := 29; i >= 30-MaxLoginHistory; i-- {
			want.Successes = append(want.Successes, ev(i, true))
		}
		for i := 24; i >= 25-MaxLoginHistory; i-- {
			want.Failures = append(want.Failures, ev(i, false))
		}
		got, err := db.LoginHistory(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("LoginHistory(alice) (-want +got):\n%s", diff)
		}
		var rows int
		if err := db.sql.QueryRowContext(t.Context(), `SELECT count(*) FROM login_events`).Scan(&rows); err != nil || rows != 2*MaxLoginHistory+1 {
			t.Errorf("login_events holds %d rows, %v; want %d", rows, err, 2*MaxLoginHistory+1)
		}
		bob, err := db.LoginHistory(ctx, "bob")
		if diff := cmp.Diff(LoginHistory{Failures: []LoginEvent{ev(99, false)}}, bob); diff != "" || err != nil {
			t.Errorf("LoginHistory(bob) (-want +got), err %v:\n%s", err, diff)
		}

		// Long fields are truncated; a zero time means now.
		if err := db.RecordLogin(ctx, "bob", LoginEvent{RemoteAddr: strings.Repeat("x", 1000), Mechanism: "m", Success: true}); err != nil {
			t.Fatal(err)
		}
		bob, err = db.LoginHistory(ctx, "bob")
		if err != nil || len(bob.Successes) != 1 || len(bob.Successes[0].RemoteAddr) != maxEventField ||
			time.Since(bob.Successes[0].Time) > time.Minute {
			t.Errorf("LoginHistory(bob) = %+v, %v; want one success now, address truncated to %d", bob, err, maxEventField)
		}

		errs := []struct {
			name string
			want error
		}{
			{"ghost", ErrNotFound},
			{"bad name", ErrInvalidName},
		}
		for _, tt := range errs {
			if err := db.RecordLogin(ctx, tt.name, ev(1, true)); !errors.Is(err, tt.want) {
				t.Errorf("RecordLogin(%q) = %v, want %v", tt.name, err, tt.want)
			}
			if _, err := db.LoginHistory(ctx, tt.name); !errors.Is(err, tt.want) {
				t.Errorf("LoginHistory(%q) = %v, want %v", tt.name, err, tt.want)
			}
		}

		// History goes with the account.
		if err := db.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		if h, err := db.LoginHistory(ctx, "alice"); err != nil || len(h.Successes)+len(h.Failures) != 0 {
			t.Errorf("re-created alice's history = %+v, %v; want empty", h, err)
		}
	})
}

// TestLoginHistoryConcurrent: concurrent recorders never leave more than
// MaxLoginHistory events of a kind.
func TestLoginHistoryConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 4)
		for g := range 4 {
			go func() {
				for i := range 15 {
					if err := db.RecordLogin(context.WithoutCancel(ctx), "alice", LoginEvent{RemoteAddr: fmt.Sprint(g, i), Mechanism: "password"}); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
		}
		for range 4 {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		h, err := db.LoginHistory(ctx, "alice")
		if err != nil || len(h.Failures) != MaxLoginHistory || len(h.Successes) != 0 {
			t.Errorf("after 60 concurrent failures: %d failures, %d successes, %v; want %d, 0", len(h.Failures), len(h.Successes), err, MaxLoginHistory)
		}
	})
}
