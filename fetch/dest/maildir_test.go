package dest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func openTestMaildir(t *testing.T) (*maildirDest, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	d, err := Open("maildir:"+dir, Options{Hostname: "host:with/odd.chars"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*maildirDest), dir
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestMaildirDeliver(t *testing.T) {
	crlf, lf := bigMessage()
	cases := append(testMessages[:len(testMessages):len(testMessages)], struct{ name, in, lf string }{"5 MB", crlf, lf})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			d, dir := openTestMaildir(t)
			key := "acct.pop-" + strings.ReplaceAll(tt.name, " ", "_")
			if err := d.Deliver(context.Background(), strings.NewReader(tt.in), Message{Key: key}); err != nil {
				t.Fatal(err)
			}
			names := listDir(t, filepath.Join(dir, "new"))
			if len(names) != 1 {
				t.Fatalf("new/ = %q, want one file", names)
			}
			name := names[0]
			if strings.ContainsAny(name, "/:") {
				t.Errorf("file name %q contains '/' or ':'", name)
			}
			if got, ok := keyFromName(name); !ok || got != key {
				t.Errorf("keyFromName(%q) = %q, %v; want %q", name, got, ok, key)
			}
			body, err := os.ReadFile(filepath.Join(dir, "new", name))
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.lf {
				t.Errorf("stored message differs (len %d, want %d):\n%s", len(body), len(tt.lf), cmp.Diff(tt.lf, string(body)))
			}
			if got := listDir(t, filepath.Join(dir, "tmp")); len(got) != 0 {
				t.Errorf("tmp/ = %q after delivery, want empty", got)
			}
			fi, err := os.Stat(filepath.Join(dir, "new", name))
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("message mode %v, want 0600", perm)
			}
		})
	}
}

func TestMaildirCreatesDirs(t *testing.T) {
	_, dir := openTestMaildir(t)
	for _, sub := range []string{"new", "cur", "tmp"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want directory 0700", sub, fi.Mode())
		}
	}
}

// A reader failing mid-message or a cancelled context leaves nothing in
// new/ or tmp/, and Has does not report the key.
func TestMaildirFailureLeavesNothing(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		wantErr error
	}{
		{"reader fails", context.Background(), errDropped},
		{"context cancelled", cancelled, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, dir := openTestMaildir(t)
			err := d.Deliver(tt.ctx, newFailingReader(), Message{Key: "k1"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Deliver = %v, want %v", err, tt.wantErr)
			}
			for _, sub := range []string{"new", "cur", "tmp"} {
				if got := listDir(t, filepath.Join(dir, sub)); len(got) != 0 {
					t.Errorf("%s/ = %q, want empty", sub, got)
				}
			}
			if has, err := d.Has(context.Background(), "k1"); err != nil || has {
				t.Errorf("Has(k1) = %v, %v; want false", has, err)
			}
		})
	}
}

func TestMaildirHas(t *testing.T) {
	d, dir := openTestMaildir(t)
	ctx := context.Background()
	deliver := func(d Destination, key string) {
		t.Helper()
		if err := d.Deliver(ctx, strings.NewReader("Subject: "+key+"\r\n\r\nhi\r\n"), Message{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	// Before the first Has (no cache yet) and after it (cache kept current).
	deliver(d, "a.b.c")
	if has, err := d.Has(ctx, "a.b.c"); err != nil || !has {
		t.Fatalf("Has(a.b.c) = %v, %v", has, err)
	}
	deliver(d, "x-1")
	check := func(d Destination, want map[string]bool) {
		t.Helper()
		got := map[string]bool{}
		for k := range want {
			has, err := d.Has(ctx, k)
			if err != nil {
				t.Fatalf("Has(%s): %v", k, err)
			}
			got[k] = has
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Has (-want +got):\n%s", diff)
		}
	}
	check(d, map[string]bool{"a.b.c": true, "x-1": true, "x_1": false, "a": false, "b.c": false})

	// A mail reader moves a message to cur/ and flags it seen.
	names := listDir(t, filepath.Join(dir, "new"))
	for _, n := range names {
		if k, _ := keyFromName(n); k == "a.b.c" {
			if err := os.Rename(filepath.Join(dir, "new", n), filepath.Join(dir, "cur", n+":2,S")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A fresh Destination must find it by scanning; the old one from its cache.
	d2, err := Open("maildir:"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	want := map[string]bool{"a.b.c": true, "x-1": true, "x_1": false}
	check(d2, want)
	check(d, want)

	// Another Destination (another process in real life) delivers: the
	// first one's cache misses, sees new/ changed and rescans.
	deliver(d2, "x_1")
	check(d, map[string]bool{"a.b.c": true, "x-1": true, "x_1": true})

	// Foreign names (other MDAs, dot files) are never taken for keys.
	for _, n := range []string{"1700000000.M1P2_0.host", "1700000000.M1P2Q3R0a1b2c3d.host", ".hidden", "1700000000.M12P34.host:2,S"} {
		if err := os.WriteFile(filepath.Join(dir, "cur", n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check(d2, map[string]bool{"0": false, "x_1": true})
}

func TestKeyFromName(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"1700000000.M123P45Q6R0a1b2c3d_acct,pop_1.host", "acct.pop_1", true},
		{"1700000000.M123P45Q6R0a1b2c3d_k.host:2,FS", "k", true},
		{"1700000000.M123P45Q6R0a1b2c3d_k.host.example.org:2,", "k", true},
		{"1700000000.M123P45Q6R0a1b2c3d_.host", "", false},
		{"1700000000.M123P45_0.host", "", false},
		{"1700000000.M123P45Q6_k.host", "", false},
		{"1700000000.M123P45Q6R0a1b2c3dk.host", "", false},
		{"1700000000.M123P45Q6R0a1b2c3d_k", "", false},
		{"nodots", "", false},
	}
	for _, tt := range tests {
		key, ok := keyFromName(tt.name)
		if key != tt.key || ok != tt.ok {
			t.Errorf("keyFromName(%q) = %q, %v; want %q, %v", tt.name, key, ok, tt.key, tt.ok)
		}
	}
}

// Names stay unique when one Destination delivers the same key many times
// in a row, and when two Destinations deliver at once.
func TestMaildirUniqueNames(t *testing.T) {
	d, dir := openTestMaildir(t)
	d2, err := Open("maildir:"+dir, Options{Hostname: "host:with/odd.chars"})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	errs := make(chan error, 2)
	for _, dd := range []Destination{d, d2} {
		go func() {
			for i := range 50 {
				if err := dd.Deliver(context.Background(), strings.NewReader(fmt.Sprintf("n: %d\r\n", i)), Message{Key: "same"}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(listDir(t, filepath.Join(dir, "new"))); got != 100 {
		t.Errorf("%d files in new/, want 100", got)
	}
}
