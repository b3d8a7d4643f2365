//go:build linux

package interop

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The full-disk tests put popbox's whole data directory (users.db, the
// Maildirs, the LMTP socket) on a small tmpfs of its own and fill it, with
// LMTP and with `popbox deliver`, until nothing fits any more. The project's
// requirement: "delivery fails with a temporary error, leaves no partial
// message, and POP3 keeps serving what is there".
//
// Deleted mail and a full disk: with [mail] keep_deleted_days > 0 (7 by
// default) a POP3 DELE moves the message into Maildir/popbox-trash and
// frees nothing until the background purge removes it days later; no
// command purges sooner. TestFullDisk/no-retention therefore runs with
// keep_deleted_days = 0, where DELE + QUIT must free the space and let
// delivery resume, and TestFullDisk/retention runs with the default and
// checks what must hold there too: QUIT succeeds, the deleted mail is in
// the trash and out of every listing, the mailbox stays readable. Whether
// that freed anything is logged, not asserted.
//
// TestFullDisk/torn-index makes a delivery fail at its last step, the
// index append, with a ballast file that leaves exactly one free page.

// fullDiskSize is the tmpfs: 4 MiB, about twenty of the biggest fill
// messages.
const fullDiskSize = 4 << 20

// fillSizes are the message sizes tried in turn: each is delivered until
// both LMTP and `popbox deliver` refuse it, then the next, smaller one, so
// that in the end not even a 200-octet message fits (tmpfs allocates whole
// pages).
var fillSizes = []int{160 << 10, 20 << 10, 2 << 10, 200}

const (
	fillUser     = "full"
	fillPassword = "Full-disk-pw-507"
	fillRcpt     = fillUser + "@example.org"
	fillFrom     = "filler@example.net"
)

// requireRoot skips a test that needs root, or fails it under CI (which
// runs as root).
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root; CI runs as root", why)
	}
	t.Skipf("%s needs root", why)
}

// mountTmpfs mounts a tmpfs of size octets on a new directory and
// unmounts it when the test ends. Register it before starting anything
// that uses it: cleanups run last-in first-out, so the server is stopped
// first.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	requireRoot(t, "mounting a tmpfs")
	dir, err := os.MkdirTemp("", "popbox-fulldisk-")
	if err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700", size)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		os.Remove(dir)
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount -t tmpfs -o %s tmpfs %s: %v", opts, dir, err)
		}
		t.Skipf("cannot mount a tmpfs (a container without CAP_SYS_ADMIN?): %v", err)
	}
	t.Cleanup(func() { unmountTmpfs(t, dir) })
	return dir
}

// unmountTmpfs unmounts dir, retrying while it is busy (a process of the
// test may take a moment to go), then detaches it lazily so that nothing
// stays mounted after the test, and removes the directory.
func unmountTmpfs(t *testing.T, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Unmount(dir, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted
			break
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			t.Errorf("umount %s: %v; detaching it lazily", dir, err)
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("umount -l %s: %v", dir, err)
				return
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("removing the mount point: %v", err)
	}
}

// freeBytes is what statfs says is still available on the file system of
// path.
func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillMessage is message seq of about size octets, LF line ends: dot
// lines (stuffed by LMTP, by POP3), 8-bit text, a final newline.
func fillMessage(seq, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\nTo: %s\nSubject: fill %d\nMessage-ID: <fill-%d@popbox.test>\n"+
		"X-Fill-Seq: %d\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"+
		"Content-Transfer-Encoding: 8bit\n\n", fillFrom, fillRcpt, seq, seq, seq)
	r := rand.New(rand.NewPCG(uint64(seq), 1939))
	const letters = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"
	for line := 0; b.Len() < size; line++ {
		switch {
		case line%9 == 3:
			b.WriteString(".")
		case line%13 == 5:
			b.WriteString("Grüße, ça va? ")
		}
		for range 20 + r.IntN(50) {
			b.WriteByte(letters[r.IntN(len(letters))])
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// fillSeqOf returns the X-Fill-Seq of a message (stored or fetched), or -1.
func fillSeqOf(data []byte) int {
	m := regexp.MustCompile(`(?m)^X-Fill-Seq: (\d+)\r?$`).FindSubmatch(data)
	if m == nil {
		return -1
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return -1
	}
	return n
}

// lmtpConn is a raw LMTP client on popbox serve's socket.
type lmtpConn struct {
	c net.Conn
	r *textproto.Conn
}

func dialLMTP(t *testing.T, srv *server) *lmtpConn {
	t.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(srv.data, "lmtp.sock"), ioTimeout)
	if err != nil {
		t.Fatalf("LMTP socket: %v; popbox log:\n%s", err, srv.log)
	}
	t.Cleanup(func() { c.Close() })
	l := &lmtpConn{c: c, r: textproto.NewConn(c)}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if code, msg, err := l.r.ReadResponse(220); err != nil {
		t.Fatalf("LMTP greeting: %d %s: %v", code, msg, err)
	}
	if code, msg, err := l.cmd("LHLO fulldisk.test"); err != nil || code != 250 {
		t.Fatalf("LHLO: %d %s: %v", code, msg, err)
	}
	return l
}

// cmd sends one command and returns the reply, whatever its code.
func (l *lmtpConn) cmd(line string) (int, string, error) {
	l.c.SetDeadline(time.Now().Add(ioTimeout))
	if err := l.r.PrintfLine("%s", line); err != nil {
		return 0, "", err
	}
	return l.r.ReadResponse(0)
}

// send runs one transaction for one recipient and returns the reply to
// DATA (or to the command that failed before it).
func (l *lmtpConn) send(t *testing.T, msg []byte) (int, string) {
	t.Helper()
	for _, c := range []struct {
		line string
		want int
	}{{"MAIL FROM:<" + fillFrom + ">", 250}, {"RCPT TO:<" + fillRcpt + ">", 250}, {"DATA", 354}} {
		code, text, err := l.cmd(c.line)
		if err != nil {
			t.Fatalf("LMTP %s: %v", c.line, err)
		}
		if code != c.want {
			if _, _, err := l.cmd("RSET"); err != nil {
				t.Fatalf("LMTP RSET: %v", err)
			}
			return code, text
		}
	}
	l.c.SetDeadline(time.Now().Add(ioTimeout))
	w := l.r.DotWriter() // LF to CRLF, dot-stuffing, the final "."
	if _, err := w.Write(msg); err != nil {
		t.Fatalf("LMTP DATA: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("LMTP DATA: %v", err)
	}
	code, text, err := l.r.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatalf("LMTP reply to DATA: %v", err)
	}
	return code, text
}

// fillAttempt is one delivery of the fill.
type fillAttempt struct {
	seq, size int
	via       string // "lmtp" or "deliver"
	ok        bool
	result    string // the LMTP reply or the deliver exit status and output
	uidl      string // from LMTP's 250 reply
	stored    []byte // the file content delivery must produce
}

// filler delivers fill messages and remembers what came of each.
type filler struct {
	t        *testing.T
	srv      *server
	lmtp     *lmtpConn
	attempts []*fillAttempt
	seq      int
}

func (f *filler) deliver(via string, size int) *fillAttempt {
	t := f.t
	t.Helper()
	f.seq++
	msg := fillMessage(f.seq, size)
	a := &fillAttempt{seq: f.seq, size: len(msg), via: via}
	switch via {
	case "lmtp":
		// Return-Path and Delivered-To go on top; LMTP stores LF line
		// ends (lmtp package doc).
		a.stored = slices.Concat([]byte("Return-Path: <"+fillFrom+">\nDelivered-To: "+fillRcpt+"\n"), msg)
		code, text := f.lmtp.send(t, msg)
		a.result = fmt.Sprintf("%d %s", code, text)
		a.ok = code == 250
		if a.ok {
			_, uidl, found := strings.Cut(text, "UIDL ")
			if !found {
				t.Errorf("LMTP 250 reply %q names no UIDL", text)
			}
			a.uidl = strings.TrimSpace(uidl)
		}
	case "deliver":
		a.stored = msg // stored as given
		out, code := f.srv.run(t, msg, "deliver", "--data", f.srv.data, fillUser)
		a.result = fmt.Sprintf("exit %d: %s", code, strings.TrimSpace(out))
		a.ok = code == 0
	}
	f.attempts = append(f.attempts, a)
	return a
}

// fill delivers messages of each of fillSizes, alternating LMTP and
// `popbox deliver`, until both have refused one in a row, and checks that
// every refusal is temporary: a 4xx reply, exit status 75 (EX_TEMPFAIL).
func (f *filler) fill(vias ...string) {
	t := f.t
	t.Helper()
	for _, size := range fillSizes {
		failed := map[string]bool{}
		for i := 0; len(failed) < len(vias); i++ {
			if i == 2000 {
				t.Fatalf("%d messages of %d octets delivered and the disk is not full", i, size)
			}
			a := f.deliver(vias[i%len(vias)], size)
			if a.ok {
				clear(failed)
				continue
			}
			failed[a.via] = true
			switch a.via {
			case "lmtp":
				if !strings.HasPrefix(a.result, "4") {
					t.Errorf("LMTP delivery to a full disk: %q, want a temporary failure (4xx; 452 4.3.1 ideally)", a.result)
				}
			case "deliver":
				if !strings.HasPrefix(a.result, "exit 75:") {
					t.Errorf("popbox deliver to a full disk: %s; want exit 75 (EX_TEMPFAIL)", a.result)
				}
			}
		}
	}
}

// acked returns the attempts that were acknowledged, in delivery order.
func (f *filler) acked() []*fillAttempt {
	var out []*fillAttempt
	for _, a := range f.attempts {
		if a.ok {
			out = append(out, a)
		}
	}
	return out
}

// summary is a line for the log: what fitted, and which replies came.
func (f *filler) summary() string {
	ok := map[string]int{}
	failures := map[string]int{}
	var octets int
	for _, a := range f.attempts {
		if a.ok {
			ok[a.via]++
			octets += len(a.stored)
			continue
		}
		r := a.result
		if a.via == "deliver" {
			r, _, _ = strings.Cut(r, ":")
			r = "deliver " + r
		} else {
			r = "LMTP " + strings.Join(strings.Fields(r)[:min(2, len(strings.Fields(r)))], " ")
		}
		failures[r]++
	}
	return fmt.Sprintf("%d messages (%d octets stored) fitted, %d by LMTP and %d by popbox deliver; refusals: %v",
		ok["lmtp"]+ok["deliver"], octets, ok["lmtp"], ok["deliver"], failures)
}

// maildir is the fill user's Maildir below the data directory.
func fillMaildir(srv *server) string {
	return filepath.Join(srv.data, "mail", fillUser, "Maildir")
}

var sizeField = regexp.MustCompile(`,R=(\d+)`)

// checkMaildirFiles checks that tmp/ is empty and that new/ and cur/ hold
// exactly the acknowledged messages (minus gone, by seq), each complete:
// no partial or refused message anywhere, and no acknowledged one lost.
func checkMaildirFiles(t *testing.T, srv *server, f *filler, gone map[int]bool) {
	t.Helper()
	md := fillMaildir(srv)
	tmp, err := os.ReadDir(filepath.Join(md, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tmp {
		info, _ := e.Info()
		t.Errorf("tmp/%s left behind (%d octets): a refused delivery must leave nothing", e.Name(), info.Size())
	}
	bySeq := map[int]*fillAttempt{}
	for _, a := range f.attempts {
		bySeq[a.seq] = a
	}
	found := map[int]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(md, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			name := sub + "/" + e.Name()
			data, err := os.ReadFile(filepath.Join(md, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			seq := fillSeqOf(data)
			a := bySeq[seq]
			switch {
			case a == nil:
				t.Errorf("%s (%d octets) is none of the messages delivered", name, len(data))
				continue
			case !a.ok:
				t.Errorf("%s is message %d, whose delivery was refused (%s): it must not be there", name, seq, a.result)
			case gone[seq]:
				t.Errorf("%s is message %d, deleted by POP3", name, seq)
			case found[seq] != "":
				t.Errorf("%s and %s are both message %d", found[seq], name, seq)
			case !bytes.Equal(data, a.stored):
				t.Errorf("%s (message %d, %s) is not what was delivered: %s", name, seq, a.via, firstDifference(data, a.stored))
			}
			found[seq] = name
			if m := sizeField.FindStringSubmatch(e.Name()); m == nil || m[1] != strconv.Itoa(len(wireForm(data))) {
				t.Errorf("%s: the R= size field does not say %d, the wire size", name, len(wireForm(data)))
			}
		}
	}
	for _, a := range f.acked() {
		if !gone[a.seq] && found[a.seq] == "" {
			t.Errorf("message %d (%s, %d octets) was acknowledged (%s) but is in neither new/ nor cur/", a.seq, a.via, a.size, a.result)
		}
	}
}

// checkPOP3 logs in and checks that the mailbox holds exactly want, in
// delivery order, byte for byte; it returns the session, logged in, and
// the UIDLs.
func checkPOP3(t *testing.T, srv *server, want []*fillAttempt) (*popConn, map[int]string) {
	t.Helper()
	p := loginRetrying(t, srv.plain, fillUser, fillPassword)
	count, octets := stat(t, p)
	list := sizes(t, p.lines(t, "LIST"))
	uidl := p.lines(t, "UIDL")
	total := 0
	for _, a := range want {
		total += len(wireForm(a.stored))
	}
	if count != len(want) || octets != total {
		t.Errorf("STAT %d %d; want %d messages of %d octets", count, octets, len(want), total)
	}
	if len(list) != count || len(uidl) != count {
		t.Errorf("STAT counts %d messages, LIST %d, UIDL %d", count, len(list), len(uidl))
	}
	for n := 1; n <= count && n <= len(want); n++ {
		a := want[n-1]
		data := p.multi(t, fmt.Sprintf("RETR %d", n))
		wire := wireForm(a.stored)
		switch {
		case fillSeqOf(data) != a.seq:
			t.Errorf("RETR %d is message %d, want %d (delivery order)", n, fillSeqOf(data), a.seq)
		case !bytes.Equal(data, wire):
			t.Errorf("RETR %d (message %d, %s) is not what was acknowledged: %s", n, a.seq, a.via, firstDifference(data, wire))
		}
		if list[n] != len(data) {
			t.Errorf("LIST %d says %d octets, RETR sent %d", n, list[n], len(data))
		}
		if a.uidl != "" && uidl[n] != a.uidl {
			t.Errorf("UIDL %d is %q; LMTP's 250 said %q", n, uidl[n], a.uidl)
		}
	}
	return p, uidl
}

func TestFullDisk(t *testing.T) {
	skipOnSuiteStore(t, "it fills the file system holding the Maildir")
	t.Run("no-retention", testFullDiskNoRetention)
	t.Run("retention", testFullDiskRetention)
	t.Run("torn-index", testFullDiskTornIndex)
}

// testFullDiskNoRetention: keep_deleted_days = 0, so DELE frees space.
func testFullDiskNoRetention(t *testing.T) {
	mnt := mountTmpfs(t, fullDiskSize)
	start := time.Now()
	srv := startServerConfig(t, filepath.Join(mnt, "data"), "[mail]\nkeep_deleted_days = 0\n")
	srv.addUser(t, fillUser, fillPassword)
	t.Logf("tmpfs of %d KiB, %d KiB free after start-up and user add", fullDiskSize>>10, freeBytes(t, mnt)>>10)

	f := &filler{t: t, srv: srv, lmtp: dialLMTP(t, srv)}
	f.fill("lmtp", "deliver")
	t.Log(f.summary())
	for _, a := range f.attempts {
		if !a.ok {
			t.Logf("refused: message %d (%d octets) by %s: %s", a.seq, a.size, a.via, a.result)
		}
	}
	t.Logf("%d octets free at the end of the fill", freeBytes(t, mnt))
	if t.Failed() {
		t.FailNow()
	}

	// Nothing partial or refused on disk, nothing acknowledged missing.
	checkMaildirFiles(t, srv, f, nil)

	// The log says why.
	log := srv.log.String()
	if !strings.Contains(log, "delivery failed") || !strings.Contains(log, "no space left on device") {
		t.Errorf("popbox serve logged no `delivery failed ... no space left on device`")
	}

	// The user database is on the full disk too: reading works (login,
	// user list), a write fails cleanly or fits.
	out, code := srv.run(t, nil, "user", "list", "--data", srv.data)
	if code != 0 || !strings.Contains(out, fillUser) {
		t.Errorf("popbox user list on a full disk: exit %d\n%s", code, out)
	}
	const second, secondPassword = "second", "Second-pw-2449"
	out, code = srv.run(t, []byte(secondPassword+"\n"), "user", "add", second, "--data", srv.data, "--password-stdin")
	secondAdded := code == 0
	t.Logf("popbox user add on the full disk: exit %d: %s", code, strings.TrimSpace(out))

	// POP3 serves everything acknowledged, on the full disk.
	acked := f.acked()
	p, uidls := checkPOP3(t, srv, acked)
	p.ok(t, "QUIT")
	if strings.Contains(srv.log.String(), "cannot record login") {
		t.Log("popbox logged `cannot record login` (the login history is on the full disk); the login still worked")
	}

	// DELE + QUIT frees the space of the biggest messages.
	const deleted = 3
	p = loginRetrying(t, srv.plain, fillUser, fillPassword)
	before := freeBytes(t, mnt)
	var freed int
	gone := map[int]bool{}
	for n := 1; n <= deleted; n++ {
		p.ok(t, fmt.Sprintf("DELE %d", n))
		freed += len(acked[n-1].stored)
		gone[acked[n-1].seq] = true
	}
	if line := p.ok(t, "QUIT"); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("QUIT after DELE on a full disk: %q", line)
	}
	after := freeBytes(t, mnt)
	t.Logf("DELE of %d messages (%d octets) + QUIT: free space %d -> %d octets", deleted, freed, before, after)
	if after-before < int64(freed)-64<<10 {
		t.Errorf("DELE + QUIT of %d octets freed only %d octets (keep_deleted_days = 0)", freed, after-before)
	}
	if ents, err := os.ReadDir(filepath.Join(fillMaildir(srv), "popbox-trash")); err == nil && len(ents) > 0 {
		t.Errorf("keep_deleted_days = 0, but popbox-trash holds %d files", len(ents))
	}

	// Delivery works again, both ways.
	if a := f.deliver("lmtp", 20<<10); !a.ok {
		t.Errorf("LMTP delivery after space was freed: %s", a.result)
	}
	if a := f.deliver("deliver", 20<<10); !a.ok {
		t.Errorf("popbox deliver after space was freed: %s", a.result)
	}
	if !secondAdded {
		out, code := srv.run(t, []byte(secondPassword+"\n"), "user", "add", second, "--data", srv.data, "--password-stdin")
		if code != 0 {
			t.Errorf("popbox user add after space was freed: exit %d\n%s", code, out)
		}
	}
	q := dialPOP(t, srv.plain)
	q.login(t, second, secondPassword)
	if n, _ := stat(t, q); n != 0 {
		t.Errorf("user %s has %d messages, want 0", second, n)
	}
	q.ok(t, "QUIT")

	var remaining []*fillAttempt
	for _, a := range f.acked() {
		if !gone[a.seq] {
			remaining = append(remaining, a)
		}
	}
	checkMaildirFiles(t, srv, f, gone)
	p, after2 := checkPOP3(t, srv, remaining)
	// The messages kept keep their UIDLs.
	for n := deleted + 1; n <= len(acked); n++ {
		if after2[n-deleted] != uidls[n] {
			t.Errorf("message %d: UIDL %q before the deletions, %q after", acked[n-1].seq, uidls[n], after2[n-deleted])
		}
	}
	p.ok(t, "QUIT")
	t.Logf("full-disk run took %v", time.Since(start).Round(time.Millisecond))
}

// testFullDiskRetention: the default keep_deleted_days (7). DELE moves the
// mail into popbox-trash, which frees nothing; still, QUIT must succeed
// (the deletions are durable once the files are in the trash) and the
// mailbox must stay readable on the full disk. Then an administrator frees
// space by removing a trashed message by hand, and delivery resumes.
func testFullDiskRetention(t *testing.T) {
	mnt := mountTmpfs(t, fullDiskSize)
	srv := startServerIn(t, filepath.Join(mnt, "data"))
	srv.addUser(t, fillUser, fillPassword)
	f := &filler{t: t, srv: srv, lmtp: dialLMTP(t, srv)}
	f.fill("lmtp")
	t.Log(f.summary())
	checkMaildirFiles(t, srv, f, nil)
	acked := f.acked()
	p, _ := checkPOP3(t, srv, acked)
	p.ok(t, "QUIT")

	// Delete all but the last.
	p = loginRetrying(t, srv.plain, fillUser, fillPassword)
	before := freeBytes(t, mnt)
	gone := map[int]bool{}
	for n := 1; n < len(acked); n++ {
		p.ok(t, fmt.Sprintf("DELE %d", n))
		gone[acked[n-1].seq] = true
	}
	line, err := p.cmd("QUIT")
	t.Logf("DELE of %d messages + QUIT with keep_deleted_days = 7: %q; free space %d -> %d octets",
		len(gone), line, before, freeBytes(t, mnt))
	if err != nil {
		t.Errorf("QUIT after DELE on a full disk with keep_deleted_days = 7: %q, want +OK: the messages are in "+
			"popbox-trash and gone from the mailbox, only the index rewrite failed", line)
	}
	trash := filepath.Join(fillMaildir(srv), "popbox-trash")
	ents, err := os.ReadDir(trash)
	if err != nil || len(ents) != len(gone) {
		t.Errorf("popbox-trash holds %d files (%v) after %d deletions", len(ents), err, len(gone))
	}
	checkMaildirFiles(t, srv, f, gone)

	// The mailbox must still open: the last message is there to serve.
	loginErr := func() error {
		p := dialPOP(t, srv.plain)
		defer p.conn.Close()
		p.ok(t, "USER "+fillUser)
		_, err := p.cmd("PASS " + fillPassword)
		return err
	}
	if err := loginErr(); err != nil {
		t.Errorf("login on the full disk after deleting with keep_deleted_days = 7: %v; "+
			"POP3 must keep serving what is there (see the server's `opening maildrop` line)", err)
	}
	a := f.deliver("lmtp", 2<<10)
	t.Logf("LMTP delivery after deleting with keep_deleted_days = 7 (nothing freed): %s", a.result)
	if !a.ok && !strings.HasPrefix(a.result, "4") {
		t.Errorf("LMTP delivery: %q, want 250 or a temporary failure", a.result)
	}

	// An administrator frees space by hand: the biggest trashed message.
	var biggest string
	var size int64
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Size() > size {
			biggest, size = e.Name(), info.Size()
		}
	}
	if biggest == "" {
		t.FailNow()
	}
	if err := os.Remove(filepath.Join(trash, biggest)); err != nil {
		t.Fatal(err)
	}
	want := acked[len(acked)-1:]
	if a.ok {
		want = append(want, a)
	}
	b := f.deliver("lmtp", 2<<10)
	if !b.ok {
		t.Errorf("LMTP delivery after %d octets were freed: %s", size, b.result)
	} else {
		want = append(want, b)
	}
	p, _ = checkPOP3(t, srv, want)
	p.ok(t, "QUIT")
}

// testFullDiskTornIndex: a delivery that fails at its last step, the index
// append, when the disk fills up under it. The tmpfs is brought to exactly
// one free page with a ballast file of the test's own, at a moment when
// the index's last page has less room than a record: the message file
// takes the free page, the append writes what fits in the index's last
// page and fails. The delivery must be refused and leave nothing, and the
// mailbox must still be served once something else has taken the page
// the refused message gave back.
func testFullDiskTornIndex(t *testing.T) {
	mnt := mountTmpfs(t, fullDiskSize)
	srv := startServerConfig(t, filepath.Join(mnt, "data"), "[mail]\nkeep_deleted_days = 0\n")
	srv.addUser(t, fillUser, fillPassword)
	f := &filler{t: t, srv: srv, lmtp: dialLMTP(t, srv)}
	index := filepath.Join(fillMaildir(srv), "popbox-index")
	page := int64(os.Getpagesize()) // tmpfs allocates whole pages
	if page != 4096 {
		t.Skipf("page size %d: the arithmetic below assumes 4096", page)
	}
	indexSize := func() int64 {
		t.Helper()
		st, err := os.Stat(index)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	// An index record is some 80 octets: stop when less room than 60 is
	// left in the index's last page.
	for {
		if a := f.deliver("lmtp", 200); !a.ok {
			t.Fatalf("message %d: %s", a.seq, a.result)
		}
		if room := page - indexSize()%page; room < 60 {
			t.Logf("%d messages delivered; the index has %d octets, %d left in its last page", len(f.attempts), indexSize(), room)
			break
		}
		if len(f.attempts) == 500 {
			t.Fatalf("500 messages delivered, index of %d octets never within 60 octets of a page end", indexSize())
		}
	}

	ballast := filepath.Join(mnt, "ballast")
	setFree := func(want int64) {
		t.Helper()
		have := freeBytes(t, mnt)
		st, err := os.Stat(ballast)
		var cur int64
		if err == nil {
			cur = st.Size()
		}
		fh, err := os.OpenFile(ballast, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.WriteAt(make([]byte, have-want), cur); err != nil {
			t.Fatalf("ballast: %v", err)
		}
		if got := freeBytes(t, mnt); got != want {
			t.Fatalf("%d octets free after the ballast, want %d", got, want)
		}
	}
	setFree(page)
	before := indexSize()
	a := f.deliver("lmtp", 200)
	t.Logf("delivery with one page free and a nearly full index page: %s; the index grew from %d to %d octets",
		a.result, before, indexSize())
	if a.ok {
		t.Fatalf("delivery with one page free succeeded; the test did not make the index append fail")
	}
	if !strings.HasPrefix(a.result, "4") {
		t.Errorf("LMTP delivery failing at the index append: %q, want 4xx", a.result)
	}
	checkMaildirFiles(t, srv, f, nil)

	// Something else takes the page the refused message gave back.
	setFree(0)
	p := dialPOP(t, srv.plain)
	p.ok(t, "USER "+fillUser)
	if _, err := p.cmd("PASS " + fillPassword); err != nil {
		t.Errorf("login on a full disk after a delivery failed at the index append: %v; "+
			"POP3 must keep serving what is there (see the server's `opening maildrop` line)", err)
	} else {
		p.ok(t, "QUIT")
	}

	// Space comes back: everything acknowledged is served, delivery works.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	p, _ = checkPOP3(t, srv, f.acked())
	p.ok(t, "QUIT")
	if a := f.deliver("lmtp", 200); !a.ok {
		t.Errorf("delivery once space is back: %s", a.result)
	}
	checkMaildirFiles(t, srv, f, nil)
	p, _ = checkPOP3(t, srv, f.acked())
	p.ok(t, "QUIT")
}
