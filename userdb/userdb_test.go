package userdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/popbox/popbox/userdb/passhash"
)

// cheapParams keeps tests fast; the code paths are those of the defaults.
func cheapParams() passhash.Params { return passhash.Params{Memory: 64, Time: 1, Threads: 1} }

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func openTest(t *testing.T, path string, opts Options) *DB {
	t.Helper()
	if opts.Hash == (passhash.Params{}) {
		opts.Hash = cheapParams()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// storedHash reads the raw hash column.
func storedHash(t *testing.T, db *DB, name string) string {
	t.Helper()
	var h string
	if err := db.sql.QueryRowContext(t.Context(), `SELECT password_hash FROM users WHERE name = ?`, name).Scan(&h); err != nil {
		t.Fatalf("reading hash of %q: %v", name, err)
	}
	return h
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"Alice", true},
		{"ALICE@Example.COM", true},
		{"a", true},
		{"0", true},
		{"first.last+tag@example.org", true},
		{"under_score", true},
		{"a-b", true},
		{"a.", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{".hidden", false},
		{"-rf", false},
		{"a b", false},
		{"a/b", false},
		{"a\\b", false},
		{"a:b", false},
		{"a\x00b", false},
		{"tab\t", false},
		{"jürgen", false},
		{"\u212Aelvin", false}, // KELVIN SIGN, which strings.ToLower maps to 'k'
		{"a%b", false},
		{"a*b", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) error %v is not ErrInvalidName", tt.name, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE@EXAMPLE.COM", "alice@example.com"},
		{"MiXeD.123+X", "mixed.123+x"},
		{"\u212A", "\u212A"}, // no Unicode folding
		{"ÄB", "Äb"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAddGetListDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		before := time.Now().Add(-time.Second).Truncate(time.Second)

		if n, err := db.Count(ctx); n != 0 || err != nil {
			t.Fatalf("Count(empty) = %d, %v", n, err)
		}
		if users, err := db.List(ctx); len(users) != 0 || err != nil {
			t.Fatalf("List(empty) = %v, %v", users, err)
		}
		for _, name := range []string{"Carol", "alice", "BOB@example.com"} {
			if err := db.Add(ctx, name, "pw-"+name); err != nil {
				t.Fatalf("Add(%q): %v", name, err)
			}
		}

		addErrs := []struct {
			name, password string
			want           error
		}{
			{"ALICE", "other", ErrExists},
			{"alice", "other", ErrExists},
			{"bad name", "pw", ErrInvalidName},
			{"", "pw", ErrInvalidName},
			{"dave", "", ErrInvalidPassword},
			{"dave", "a\xffb", ErrInvalidPassword},
			{"dave", strings.Repeat("x", 1025), ErrInvalidPassword},
		}
		for _, tt := range addErrs {
			if err := db.Add(ctx, tt.name, tt.password); !errors.Is(err, tt.want) {
				t.Errorf("Add(%q, %q) = %v, want %v", tt.name, tt.password, err, tt.want)
			}
		}

		users, err := db.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u.Name)
			if u.PasswordScheme != passhash.SchemeArgon2id {
				t.Errorf("%s: scheme %q", u.Name, u.PasswordScheme)
			}
			if u.Created.Before(before) || u.Created.After(time.Now()) {
				t.Errorf("%s: created %v, not between %v and now", u.Name, u.Created, before)
			}
		}
		if diff := cmp.Diff([]string{"alice", "bob@example.com", "carol"}, names); diff != "" {
			t.Errorf("List names (-want +got):\n%s", diff)
		}
		if n, err := db.Count(ctx); n != 3 || err != nil {
			t.Errorf("Count = %d, %v; want 3", n, err)
		}

		u, err := db.Get(ctx, "Bob@Example.Com")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(users[1], u); diff != "" {
			t.Errorf("Get differs from List entry (-list +get):\n%s", diff)
		}
		if _, err := db.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
		}
		if _, err := db.Get(ctx, "no body"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(invalid) = %v, want ErrInvalidName", err)
		}

		if err := db.Delete(ctx, "CAROL"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := db.Delete(ctx, "carol"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Delete = %v, want ErrNotFound", err)
		}
		if err := db.Delete(ctx, "-x"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Delete(invalid) = %v, want ErrInvalidName", err)
		}
		if _, err := db.Get(ctx, "carol"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
		}
		if _, err := db.Authenticate(ctx, "carol", "pw-Carol"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(deleted) = %v, want ErrAuthFailed", err)
		}
		// The name is free again.
		if err := db.Add(ctx, "carol", "new"); err != nil {
			t.Errorf("re-Add after Delete: %v", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		if err := db.Add(ctx, "Alice", "correct horse"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, user, password string
			want                 string
			wantErr              error
		}{
			{"right", "alice", "correct horse", "alice", nil},
			{"name case-insensitive", "ALICE", "correct horse", "alice", nil},
			{"password case-sensitive", "alice", "Correct horse", "", ErrAuthFailed},
			{"wrong", "alice", "wrong", "", ErrAuthFailed},
			{"prefix of password", "alice", "correct", "", ErrAuthFailed},
			{"empty password", "alice", "", "", ErrAuthFailed},
			{"too long password", "alice", strings.Repeat("x", 2000), "", ErrAuthFailed},
			{"unknown user", "bob", "correct horse", "", ErrAuthFailed},
			{"invalid name", "al ice", "correct horse", "", ErrAuthFailed},
			{"empty name", "", "correct horse", "", ErrAuthFailed},
			{"unicode-folded name", "\u212Alice", "correct horse", "", ErrAuthFailed},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := db.Authenticate(ctx, tt.user, tt.password)
				if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Errorf("Authenticate(%q, %q) = %q, %v; want %q, %v", tt.user, tt.password, got, err, tt.want, tt.wantErr)
				}
			})
		}
	})
}

func TestSetPassword(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		if err := db.Add(ctx, "alice", "old password"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetPassword(ctx, "ALICE", "new password"); err != nil {
			t.Fatalf("SetPassword: %v", err)
		}
		if _, err := db.Authenticate(ctx, "alice", "old password"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("old password: %v, want ErrAuthFailed", err)
		}
		if _, err := db.Authenticate(ctx, "alice", "new password"); err != nil {
			t.Errorf("new password: %v", err)
		}
		errs := []struct {
			name, password string
			want           error
		}{
			{"bob", "pw", ErrNotFound},
			{"b b", "pw", ErrInvalidName},
			{"alice", "", ErrInvalidPassword},
			{"alice", "nul\x00", ErrInvalidPassword},
		}
		for _, tt := range errs {
			if err := db.SetPassword(ctx, tt.name, tt.password); !errors.Is(err, tt.want) {
				t.Errorf("SetPassword(%q, %q) = %v, want %v", tt.name, tt.password, err, tt.want)
			}
		}
		// A failed SetPassword changed nothing.
		if _, err := db.Authenticate(ctx, "alice", "new password"); err != nil {
			t.Errorf("after failed SetPassword: %v", err)
		}
	})
}

func TestAddHashed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		// Dovecot 2.3 "doveadm pw -s SCHEME -p 'correct horse'".
		const pw = "correct horse"
		tests := []struct {
			user, hash string
			wantScheme string
			wantErr    error
		}{
			{"argon", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$KQIhQEXIuwX4BHm71138vQ$rshTR2N+uZKZdmZPbdG/EyrcrHhrDesxyM0DxOjsRlA", passhash.SchemeArgon2id, nil},
			{"blf", "{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", passhash.SchemeBcrypt, nil},
			{"crypt", "{CRYPT}$2y$05$i/b87raZPZfvekGxquj4PeT5qeRJzfla4.j5rk1BniP9qDTAcb1CK", passhash.SchemeBcrypt, nil},
			{"sha512", "{SHA512-CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0", passhash.SchemeSHA512Crypt, nil},
			{"sha256", "{SHA256-CRYPT}$5$vkasyQkCFFMOwh9e$5lFO3JItMyX3MwZC5PyhfJJRL.5IpSvZcd0nLAjssG/", passhash.SchemeSHA256Crypt, nil},
			{"plain", "{PLAIN}correct horse", "", passhash.ErrUnsupportedScheme},
			{"md5", "$1$saltsalt$abcdefghijklmnopqrstuv", "", passhash.ErrUnsupportedScheme},
			{"broken", "{BLF-CRYPT}$2y$05$short", "", passhash.ErrInvalidHash},
			{"huge", "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", "", passhash.ErrInvalidHash},
			{"bad name", "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", "", ErrInvalidName},
			{"BLF", "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", "", ErrExists},
		}
		for _, tt := range tests {
			t.Run(tt.user, func(t *testing.T) {
				err := db.AddHashed(ctx, tt.user, tt.hash)
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("AddHashed = %v, want %v", err, tt.wantErr)
				}
				if err != nil {
					if strings.Contains(err.Error(), "correct horse") {
						t.Errorf("error repeats the plaintext: %v", err)
					}
					return
				}
				u, err := db.Get(ctx, tt.user)
				if err != nil {
					t.Fatal(err)
				}
				if u.PasswordScheme != tt.wantScheme {
					t.Errorf("scheme %q, want %q", u.PasswordScheme, tt.wantScheme)
				}
				if h := storedHash(t, db, tt.user); strings.HasPrefix(h, "{") {
					t.Errorf("stored hash %q keeps the Dovecot prefix", h)
				}
				if _, err := db.Authenticate(ctx, tt.user, "wrong"); !errors.Is(err, ErrAuthFailed) {
					t.Errorf("Authenticate(wrong) = %v", err)
				}
				if got, err := db.Authenticate(ctx, tt.user, pw); got != tt.user || err != nil {
					t.Errorf("Authenticate = %q, %v", got, err)
				}
			})
		}
	})
}

func TestRehashUpgrade(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		logs := &logBuffer{}
		db := openTest(t, b.path(t), Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})

		bc, err := bcrypt.GenerateFromPassword([]byte("bcrypt pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			user, hash, password string
			wantFrom             string
		}{
			{"bc", "{BLF-CRYPT}" + string(bc), "bcrypt pw", passhash.SchemeBcrypt},
			// openssl passwd -6 -salt upgrade hunter22
			{"sha", "$6$upgrade$d5LBqug.55xccPDgbrj/BEO0eEnEk0C.e3VZiB3ONq6CkZocSBR2Mfu6.g/CL5bJyluMHJXw49hSLib7VdueE/", "hunter22", passhash.SchemeSHA512Crypt},
			// Dovecot argon2id with its own (higher) parameters.
			{"argon", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$KQIhQEXIuwX4BHm71138vQ$rshTR2N+uZKZdmZPbdG/EyrcrHhrDesxyM0DxOjsRlA", "correct horse", passhash.SchemeArgon2id},
		}
		for _, tt := range tests {
			t.Run(tt.user, func(t *testing.T) {
				if err := db.AddHashed(ctx, tt.user, tt.hash); err != nil {
					t.Fatal(err)
				}
				old := storedHash(t, db, tt.user)
				// A failed login changes nothing.
				if _, err := db.Authenticate(ctx, tt.user, "wrong"); !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("wrong password: %v", err)
				}
				if h := storedHash(t, db, tt.user); h != old {
					t.Errorf("failed login changed the hash to %q", h)
				}
				if _, err := db.Authenticate(ctx, tt.user, tt.password); err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				h := storedHash(t, db, tt.user)
				if passhash.NeedsRehash(h, cheapParams()) {
					t.Errorf("after login, hash %q is not current argon2id", h)
				}
				if ok, err := passhash.Verify(h, tt.password); !ok || err != nil {
					t.Errorf("upgraded hash does not verify: %v, %v", ok, err)
				}
				if _, err := db.Authenticate(ctx, tt.user, tt.password); err != nil {
					t.Errorf("Authenticate after upgrade: %v", err)
				}
				if want := fmt.Sprintf("user=%s from=%s", tt.user, tt.wantFrom); !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, logs)
				}
			})
		}
	})
}

// TestRehashParams: hashes made with old parameters move to the configured
// ones at the next login, in either direction.
func TestRehashParams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		path := b.path(t)
		old := passhash.Params{Memory: 128, Time: 2, Threads: 2}
		db1, err := Open(path, Options{Hash: old})
		if err != nil {
			t.Fatal(err)
		}
		if err := db1.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		db1.Close()

		db := openTest(t, path, Options{Hash: cheapParams()})
		if h := storedHash(t, db, "alice"); !passhash.NeedsRehash(h, cheapParams()) {
			t.Fatalf("setup: %q already current", h)
		}
		if _, err := db.Authenticate(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		if h := storedHash(t, db, "alice"); passhash.NeedsRehash(h, cheapParams()) {
			t.Errorf("hash %q not upgraded to %v", h, cheapParams())
		}
	})
}

// TestNoUpgradeForUnsettablePassword: an imported password that could not
// be set today (not UTF-8) still logs in; its hash stays as it is.
func TestNoUpgradeForUnsettablePassword(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		logs := &logBuffer{}
		db := openTest(t, b.path(t), Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		// openssl passwd -6 -salt latin1salt $'p\xe4ss' (Latin-1 "päss").
		const h = "$6$latin1salt$aQoDuzhDhO4lEWdKRrpPxa0mM86FZk6.STXZWe5WaewRKo/fDfrCLCAgz1eDPK7kkoAFJh3brlwbcJHMe3MfE."
		if err := db.AddHashed(ctx, "legacy", h); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(ctx, "legacy", "p\xe4ss"); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if got := storedHash(t, db, "legacy"); got != h {
			t.Errorf("hash changed to %q", got)
		}
		if !strings.Contains(logs.String(), "cannot upgrade") {
			t.Errorf("no warning logged:\n%s", logs)
		}
	})
}

// TestAuthenticateTiming: unknown users and invalid names cost the same as
// a wrong password for an existing user, so timing does not tell which
// users exist. It compares the process CPU time of interleaved runs rather
// than wall time, which on a shared machine mostly measures the other
// processes; medians within a factor of 2. Skipping the dummy verification
// would make the unknown-user cases ~100 times cheaper. A user with app
// passwords costs the same too, with or without an app password's shape:
// verifying against every app password would make those cases 8 times
// dearer here.
func TestAuthenticateTiming(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := openTest(t, b.path(t), Options{
			Hash: passhash.Params{Memory: 8192, Time: 1, Threads: 1},
		})
		if err := db.Add(ctx, "alice", "right password"); err != nil {
			t.Fatal(err)
		}
		// carol has app passwords: a login still verifies one hash, whichever
		// password is tried (see apppass.go).
		if err := db.Add(ctx, "carol", "right password"); err != nil {
			t.Fatal(err)
		}
		var carolApp string
		for i := range 8 {
			pw, err := db.AddAppPassword(ctx, "carol", fmt.Sprint("device ", i))
			if err != nil {
				t.Fatal(err)
			}
			carolApp = pw
		}
		// Right ID, wrong secret: selects one of carol's app passwords.
		wrongApp := carolApp[:5] + "2222-2222-2222"
		cases := []struct{ name, user, password string }{
			{"existing user, wrong password", "alice", "wrong password"},
			{"unknown user", "mallory", "wrong password"},
			{"invalid name", "mal lory", "wrong password"},
			{"user with app passwords, wrong password", "carol", "wrong password"},
			{"user with app passwords, wrong app password", "carol", wrongApp},
			{"unknown user, app password shape", "mallory", wrongApp},
		}
		measure := func(user, password string) (cpu, wall time.Duration) {
			// Start each run with a clean heap, so that garbage collection
			// work left by earlier runs is not charged to this one.
			runtime.GC()
			c0, w0 := cpuTime(t), time.Now()
			if _, err := db.Authenticate(ctx, user, password); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("Authenticate(%q, %q) = %v", user, password, err)
			}
			return cpuTime(t) - c0, time.Since(w0)
		}
		// Warm up: the dummy hash is made on first use.
		for _, c := range cases {
			measure(c.user, c.password)
		}
		const runs = 11
		cpu := make([][]time.Duration, len(cases))
		wall := make([][]time.Duration, len(cases))
		for r := range runs {
			// Rotate the order so no case always follows the same one.
			for k := range cases {
				i := (r + k) % len(cases)
				c, w := measure(cases[i].user, cases[i].password)
				cpu[i] = append(cpu[i], c)
				wall[i] = append(wall[i], w)
			}
		}
		median := func(d []time.Duration) time.Duration {
			slices.Sort(d)
			return d[len(d)/2]
		}
		base := median(cpu[0])
		for i, c := range cases {
			m := median(cpu[i])
			ratio := float64(m) / float64(base)
			t.Logf("%s: median CPU %v (wall %v), ratio %.2f", c.name, m, median(wall[i]), ratio)
			if ratio < 0.5 || ratio > 2 {
				t.Errorf("%s: median CPU time %v vs %v for an existing user: ratio %.2f outside 0.5..2", c.name, m, base, ratio)
			}
		}
	})
}

// cpuTime is the CPU time (user+system) this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestTwoHandles simulates the server and a CLI command on one file: two
// DBs writing and reading concurrently, each seeing the other's changes.
func TestTwoHandles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		path := b.path(t)
		server := openTest(t, path, Options{})
		cli := openTest(t, path, Options{})

		const n = 15
		var wg sync.WaitGroup
		errs := make(chan error, 4*n)
		for i, db := range []*DB{server, cli} {
			wg.Go(func() {
				for j := range n {
					name := fmt.Sprintf("u%d-%02d", i, j)
					if err := db.Add(ctx, name, "pw"+name); err != nil {
						errs <- err
						continue
					}
					if err := db.SetPassword(ctx, name, "new"+name); err != nil {
						errs <- err
					}
				}
			})
			// Meanwhile, logins through the other handle.
			other := []*DB{cli, server}[i]
			wg.Go(func() {
				for j := range n {
					name := fmt.Sprintf("u%d-%02d", i, j)
					if _, err := other.Authenticate(ctx, name, "x"); !errors.Is(err, ErrAuthFailed) {
						errs <- fmt.Errorf("Authenticate(%s): %w", name, err)
					}
				}
			})
		}
		// Both race to create the same user: exactly one wins.
		var wins, losses int
		var mu sync.Mutex
		for _, db := range []*DB{server, cli} {
			wg.Go(func() {
				err := db.Add(ctx, "contested", "pw")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrExists):
					losses++
				default:
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if wins != 1 || losses != 1 {
			t.Errorf("contested Add: %d wins, %d losses; want 1, 1", wins, losses)
		}

		for _, db := range []*DB{server, cli} {
			if c, err := db.Count(ctx); c != 2*n+1 || err != nil {
				t.Errorf("Count = %d, %v; want %d", c, err, 2*n+1)
			}
		}
		// Each handle sees the other's password changes.
		for i, db := range []*DB{cli, server} {
			name := fmt.Sprintf("u%d-%02d", i, n-1)
			if got, err := db.Authenticate(ctx, name, "new"+name); got != name || err != nil {
				t.Errorf("Authenticate(%s) via other handle = %q, %v", name, got, err)
			}
		}
		if err := cli.Delete(ctx, "u0-00"); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Get(ctx, "u0-00"); !errors.Is(err, ErrNotFound) {
			t.Errorf("server sees user deleted by CLI: %v", err)
		}
	})
}

// TestBusyTimeout: a write waits for another connection's write lock
// (as when the CLI adds a user while the server upgrades a hash) instead of
// failing, up to Options.BusyTimeout.
func TestBusyTimeout(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "users.db")
	holder := openTest(t, path, Options{})
	waiter := openTest(t, path, Options{BusyTimeout: 10 * time.Second})
	impatient := openTest(t, path, Options{BusyTimeout: 20 * time.Millisecond})

	lock := func() (release func()) {
		tx, err := holder.sql.BeginTx(ctx, nil) // IMMEDIATE: takes the write lock
		if err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := tx.Commit(); err != nil {
				t.Error(err)
			}
		}
	}

	release := lock()
	if err := impatient.Add(ctx, "early", "pw"); err == nil || errors.Is(err, ErrExists) {
		t.Errorf("Add while locked with 20ms busy timeout = %v, want a busy error", err)
	}
	const hold = 300 * time.Millisecond
	time.AfterFunc(hold, release)
	start := time.Now()
	if err := waiter.Add(ctx, "late", "pw"); err != nil {
		t.Fatalf("Add while locked: %v", err)
	}
	if d := time.Since(start); d < hold/2 {
		t.Errorf("Add returned after %v, before the lock was released", d)
	}
	if _, err := holder.Get(ctx, "late"); err != nil {
		t.Errorf("Get: %v", err)
	}
}

// TestConcurrentOpenFresh: two processes starting on a missing database at
// once both succeed; the schema is created once.
func TestConcurrentOpenFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	var wg sync.WaitGroup
	dbs := make([]*DB, 4)
	errs := make([]error, len(dbs))
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = Open(path, Options{Hash: cheapParams()}) })
	}
	wg.Wait()
	for i, db := range dbs {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		if err := db.Add(t.Context(), fmt.Sprintf("user%d", i), "pw"); err != nil {
			t.Errorf("Add via handle %d: %v", i, err)
		}
	}
	for _, db := range dbs {
		if db != nil {
			db.Close()
		}
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	db := openTest(t, path, Options{})
	if err := db.Add(t.Context(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	// The -wal and -shm files exist while the database is open.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat: %v", err)
			continue
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s: mode %v, want %v", filepath.Base(p), mode, fs.FileMode(0o600))
		}
	}
	var mode string
	if err := db.sql.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestPathWithSpecialCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "we?ird #dir%20")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "users.db")
	db := openTest(t, path, Options{})
	if err := db.Add(t.Context(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "users.db")
	db, err := Open(path, Options{Hash: cheapParams()})
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.sql.QueryRowContext(t.Context(), `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations()) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations()))
	}
	if err := db.Add(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopening keeps the data and does not migrate again.
	db = openTest(t, path, Options{})
	if _, err := db.Authenticate(ctx, "alice", "pw"); err != nil {
		t.Errorf("after reopen: %v", err)
	}
	// A database from a newer popbox is refused.
	if _, err := db.sql.ExecContext(t.Context(), fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations())+1)); err != nil {
		t.Fatal(err)
	}
	if db2, err := Open(path, Options{Hash: cheapParams()}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open(newer schema) = %v, want ErrSchemaTooNew", err)
		if db2 != nil {
			db2.Close()
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts Options
	}{
		{"empty path", "", Options{}},
		{"missing directory", filepath.Join(dir, "nope", "users.db"), Options{}},
		{"directory", dir, Options{}},
		{"bad params", filepath.Join(dir, "users.db"), Options{Hash: passhash.Params{Memory: 1, Time: 1, Threads: 1}}},
	}
	for _, tt := range tests {
		if db, err := Open(tt.path, tt.opts); err == nil {
			db.Close()
			t.Errorf("%s: Open succeeded", tt.name)
		}
	}
}

// TestHashConcurrencyBound: with every hashing slot taken, Authenticate and
// Add wait, and give up with the context's error, not ErrAuthFailed.
func TestHashConcurrencyBound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := openTest(t, b.path(t), Options{MaxConcurrentHashes: 1})
		if err := db.Add(t.Context(), "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		if err := db.acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		for _, user := range []string{"alice", "nobody"} {
			if _, err := db.Authenticate(ctx, user, "pw"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrAuthFailed) {
				t.Errorf("Authenticate(%s) with no free slot = %v, want DeadlineExceeded", user, err)
			}
		}
		if err := db.Add(ctx, "bob", "pw"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Add with no free slot = %v, want DeadlineExceeded", err)
		}
		db.release()
		if _, err := db.Authenticate(t.Context(), "alice", "pw"); err != nil {
			t.Errorf("after release: %v", err)
		}
	})
}
