package dovecot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/pop3"
)

// These tests fill a Maildir, let a real Dovecot (started privately on
// 127.0.0.1, see realdovecot_test.go) list it with UIDL and LIST, and check
// that ReadMaildir predicts exactly those UIDLs, in that order, and that
// popbox's wire size (pop3.WireSize) of each file is Dovecot's LIST size.
// The one known difference, asserted as such: Dovecot does not count the
// CRLF it adds after a message without a final line end, popbox does.

// entry is one line of the comparison: message number n has this UIDL and
// LIST size.
type entry struct {
	UIDL string
	Size int64
}

// popboxView is what popbox would list after importing msgs: their UIDLs,
// and the wire sizes of the files, read now (Dovecot renames files when it
// next logs in), lowered by 2 where the file lacks a final LF.
func popboxView(t *testing.T, msgs []Message) []entry {
	t.Helper()
	var out []entry
	for _, m := range msgs {
		f, err := m.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		size, err := pop3.WireSize(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			size -= 2 // the known difference, see above
		}
		out = append(out, entry{m.UIDL, size})
	}
	return out
}

func dovecotView(l listing) []entry {
	var out []entry
	for i := range l.uidls {
		out = append(out, entry{l.uidls[i], l.sizes[i]})
	}
	return out
}

func compareViews(t *testing.T, what string, got, want []entry) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: popbox view differs from Dovecot's UIDL/LIST (-dovecot +popbox):\n%s", what, diff)
	}
}

// readMaildir runs ReadMaildir and returns the messages and the POP3
// message numbers of those with unservable UIDLs, failing on any other
// error.
func readMaildir(t *testing.T, dir string, opts Options) ([]Message, []int) {
	t.Helper()
	msgs, err := ReadMaildir(dir, opts)
	var probs *UIDLProblems
	if errors.As(err, &probs) {
		var bad []int
		for i, m := range msgs {
			if probs.Skip(m.Path) {
				bad = append(bad, i+1)
			}
		}
		return msgs, bad
	}
	if err != nil {
		t.Fatalf("ReadMaildir: %v", err)
	}
	return msgs, nil
}

func uidls(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.UIDL)
	}
	return out
}

// plainMessages are ordinary messages of the shapes popbox must size
// right: LF and CRLF line ends, dot lines, no final line end, an empty
// body, a header without body, a long line, NUL and 8-bit bytes, and an
// X-UIDL header (ignored unless pop3_reuse_xuidl=yes).
var plainMessages = []string{
	"Subject: one\n\nfirst\n",
	"Subject: crlf\r\n\r\nline one\r\nline two\r\n",
	"Subject: dots\n\n.\n..two\n.three\n",
	"Subject: no final newline\n\nlast line",
	"X-UIDL: should-be-ignored\nSubject: xuidl\n\nbody\n",
	"Subject: empty body\n\n",
	"Subject: header only\n",
	"Subject: long\n\n" + strings.Repeat("x", 3000) + "\n",
	"Subject: bytes\n\n\x00\xff\xfe\x01\n",
	"Subject: mixed\r\n\nlf\r\ncrlf\n",
	"Subject: ten\n\n10\n",
	"Subject: eleven\n\n11\n",
	"Subject: twelve\n\n12\n",
	"Subject: thirteen\n\n13\n",
	"Subject: fourteen\n\n14\n",
}

// TestDovecotDefaultFormat: pop3_uidl_format at its default. Before
// Dovecot ever served the mailbox there is nothing to keep; after a first
// login ReadMaildir matches; then messages are expunged behind Dovecot's
// back (the highest UID among them) and new ones delivered with names that
// exercise Dovecot's sort, and ReadMaildir's prediction for them matches
// Dovecot's next login.
func TestDovecotDefaultFormat(t *testing.T) {
	mb := newMailbox(t)
	for _, m := range plainMessages {
		mb.deliver("", m)
	}
	if _, err := ReadMaildir(mb.dir(), Options{}); !errors.Is(err, ErrNoUIDList) {
		t.Fatalf("ReadMaildir before Dovecot saw the mailbox: %v, want ErrNoUIDList", err)
	}
	d := startDovecot(t, mb, "")
	first := d.list(t)
	msgs, bad := readMaildir(t, mb.dir(), Options{})
	if bad != nil {
		t.Fatalf("unservable UIDLs in messages %v", bad)
	}
	compareViews(t, "after the first login", popboxView(t, msgs), dovecotView(first))
	if len(msgs) != len(plainMessages) {
		t.Fatalf("%d messages, want %d", len(msgs), len(plainMessages))
	}
	if got := msgs[0].UIDL; got != strings.ToLower(got) || len(got) != 16 {
		t.Errorf("default UIDL %q: want 16 lower-case hex digits", got)
	}

	// Expunge UID 5 and the last one behind Dovecot's back: the next UID
	// must come from the header, not from the highest UID left.
	for _, m := range []Message{msgs[4], msgs[len(msgs)-1]} {
		if err := os.Remove(m.Path); err != nil {
			t.Fatal(err)
		}
	}
	// Dovecot orders new files by seconds, then the microseconds after
	// 'M' (numerically), then the rest of the name as it will be in cur/
	// (with ":2,", which puts the bare name last); delivered here out of
	// that order.
	for _, name := range []string{
		"1700000100.M500P1.test",
		"1700000100.Zzz.test",
		"1700000100.M40P1.test",
		"1700000100",
		"1699999000.M1P1.test",
	} {
		mb.deliver(name, "Subject: "+name+"\n\nnew\n")
	}
	predicted, bad := readMaildir(t, mb.dir(), Options{})
	if bad != nil {
		t.Fatalf("unservable UIDLs in messages %v", bad)
	}
	var fresh []string
	for _, m := range predicted {
		if m.Unassigned {
			fresh = append(fresh, fmt.Sprintf("%d %s", m.UID, filepath.Base(m.Path)))
		}
	}
	wantFresh := []string{
		"16 1699999000.M1P1.test",
		"17 1700000100.M40P1.test",
		"18 1700000100.M500P1.test",
		"19 1700000100.Zzz.test",
		"20 1700000100",
	}
	if diff := cmp.Diff(wantFresh, fresh); diff != "" {
		t.Errorf("predicted UIDs of new files (-want +got):\n%s", diff)
	}
	view := popboxView(t, predicted)
	second := d.list(t)
	compareViews(t, "prediction before the second login", view, dovecotView(second))

	after, bad := readMaildir(t, mb.dir(), Options{})
	if bad != nil {
		t.Fatalf("unservable UIDLs in messages %v", bad)
	}
	if diff := cmp.Diff(uidls(predicted), uidls(after)); diff != "" {
		t.Errorf("UIDLs after Dovecot assigned them (-predicted +after):\n%s", diff)
	}
	for _, m := range after {
		if m.Unassigned {
			t.Errorf("%s still unassigned after Dovecot's login", m.Path)
		}
	}
}

// xuidlMessages exercise Dovecot's header parsing for pop3_reuse_xuidl.
// bad marks the UIDLs popbox cannot serve.
var xuidlMessages = []struct {
	msg string
	bad bool
}{
	{msg: "X-UIDL: plain-1\nSubject: a\n\nbody\n"},
	{msg: "Subject: none\n\nno X-UIDL at all\n"},
	{msg: "x-uidl:\tTabbed-Lower\n\nbody\n"},
	{msg: "X-UIDL : spaced-name\n\nbody\n"},
	{msg: "X-UIDL: crlf-value\r\nSubject: c\r\n\r\nbody\r\n"},
	{msg: "X-UIDL\nX-UIDL: after-a-line-without-colon\n\nbody\n"},
	{msg: "Subject: b\n\nX-UIDL: in-the-body\n"},
	{msg: "Subject: c\nX-UIDL: second-field\nX-UIDL: third-field\n\nbody\n"},
	{msg: "X-UIDL: GmailId17a2b3c4d5e6f7a8\n\nbody\n"},
	{msg: "X-UIDL: trailing-blanks  \n\nbody\n", bad: true},
	{msg: "X-UIDL:\nX-UIDL: ignored-after-an-empty-one\n\nbody\n", bad: true},
	{msg: "X-UIDL:   \n\nall blanks\n", bad: true},
	{msg: "X-UIDL: folded\n continued\n\nbody\n", bad: true},
	{msg: "X-UIDL: has space\n\nbody\n", bad: true},
	{msg: "X-UIDL: plain-1\n\nsame as the first\n", bad: true},
	{msg: "X-UIDL: " + strings.Repeat("L", 71) + "\n\ntoo long\n", bad: true},
	{msg: "X-UIDL: only-header-no-newline"},
}

// TestDovecotReuseXUIDL: pop3_reuse_xuidl=yes. Every UIDL Dovecot serves,
// servable or not, is predicted, and exactly the unservable ones are
// reported as problems.
func TestDovecotReuseXUIDL(t *testing.T) {
	mb := newMailbox(t)
	var wantBad []int
	for i, m := range xuidlMessages {
		mb.deliver("", m.msg)
		if m.bad {
			wantBad = append(wantBad, i+1)
		}
	}
	d := startDovecot(t, mb, "pop3_reuse_xuidl = yes")
	first := d.list(t)
	opts := Options{ReuseXUIDL: true}
	msgs, gotBad := readMaildir(t, mb.dir(), opts)
	compareViews(t, "after the first login", popboxView(t, msgs), dovecotView(first))
	if diff := cmp.Diff(wantBad, gotBad); diff != "" {
		t.Errorf("messages reported unservable (-want +got):\n%s", diff)
	}

	// New mail since: one with an X-UIDL, one without (its UID decides).
	mb.deliver("", "X-UIDL: late-arrival\n\nbody\n")
	mb.deliver("", "Subject: late, no X-UIDL\n\nbody\n")
	predicted, _ := readMaildir(t, mb.dir(), opts)
	view := popboxView(t, predicted)
	compareViews(t, "prediction before the second login", view, dovecotView(d.list(t)))
}

// TestDovecotRenameDuplicates: pop3_uidl_duplicates=rename, including a
// message whose own UIDL is what a renamed one would get.
func TestDovecotRenameDuplicates(t *testing.T) {
	mb := newMailbox(t)
	for _, u := range []string{"dup", "dup-2", "dup", "dup", "other", "dup-2"} {
		mb.deliver("", "X-UIDL: "+u+"\n\nbody\n")
	}
	d := startDovecot(t, mb, "pop3_reuse_xuidl = yes\npop3_uidl_duplicates = rename")
	l := d.list(t)
	msgs, bad := readMaildir(t, mb.dir(), Options{ReuseXUIDL: true, UIDLDuplicates: "rename"})
	if bad != nil {
		t.Errorf("unservable UIDLs in messages %v", bad)
	}
	compareViews(t, "rename", popboxView(t, msgs), dovecotView(l))
}

// handMaildir builds a Maildir with a dovecot-uidlist written by hand, as
// another tool (or an older Dovecot) might leave it: 'P' UIDLs (one empty:
// the file name), 'O' POP3 order (one not a number), a 'G' GUID, an
// extension Dovecot drops, a record whose file is gone, a base name listed
// twice, a CRLF line, files with flags, a file in new/ not listed, and a
// final line without LF (ignored, so its file is new too).
func handMaildir(t *testing.T, version int) *mailbox {
	mb := newMailbox(t)
	files := map[string]string{
		"cur/1700000001.M1P1.h:2,S":  "Subject: 1\n\none\n",
		"cur/1700000002.M2P1.h:2,RS": "Subject: 2\n\ntwo\n",
		"cur/1700000003.M3P1.h:2,":   "Subject: 3\r\n\r\nthree\r\n",
		"cur/1700000004.M4P1.h:2,T":  "Subject: 4\n\nfour\n",
		"cur/1700000005.M5P1.h:2,S":  "X-UIDL: ignored-without-reuse\n\nfive\n",
		"cur/1700000006.M6P1.h:2,S":  "Subject: 6\n\nsix\n",
		"cur/1700000007.M7P1.h:2,S":  "Subject: 7\n\nseven\n",
		"new/1700000008.M8P1.h":      "Subject: 8\n\neight\n",
		"new/1700000009.M9P1.h":      "Subject: 9\n\nnine\n",
		"new/1700000010.M10P1.h":     "Subject: 10\n\nten\n",
	}
	for rel, content := range files {
		mb.writeFile(rel, content)
	}
	var list string
	switch version {
	case 3:
		list = "3 V1234567 N50 G0123456789abcdef0123456789abcdef\n" +
			"1 Pcustom-uidl-1 :1700000001.M1P1.h\n" +
			"2 P :1700000002.M2P1.h\n" +
			"3 O2 :1700000003.M3P1.h\n" +
			"5 O1 Gfeedfacefeedfacefeedfacefeedface :1700000004.M4P1.h\n" +
			"7 x123 W39 :1700000005.M5P1.h\n" +
			"8 :1700000099.M99P1.h\n" +
			"9 :1700000006.M6P1.h\n" +
			"10 :1700000006.M6P1.h\n" +
			"11 Ojunk :1700000007.M7P1.h\n" +
			"12 :1700000008.M8P1.h\r\n" +
			"13 :1700000009.M9P1.h"
	case 1:
		list = "1 7654321 30\n" +
			"1 1700000001.M1P1.h:2,S\n" +
			"3 1700000002.M2P1.h\n" +
			"4 1700000003.M3P1.h:2,\n" +
			"6 1700000004.M4P1.h\n" +
			"7 1700000098.M98P1.h\n" +
			"8 1700000005.M5P1.h\n" +
			"9 1700000006.M6P1.h\n" +
			"20 1700000007.M7P1.h\n" +
			"21 1700000008.M8P1.h\n"
	}
	mb.writeFile(UIDListName, list)
	return mb
}

// TestDovecotHandWrittenUIDList: a hand-written dovecot-uidlist, versions 3
// and 1, with several pop3_uidl_format values; ReadMaildir reads the file
// before Dovecot ever touched it and must agree with Dovecot's first
// login.
func TestDovecotHandWrittenUIDList(t *testing.T) {
	for _, tt := range []struct {
		version int
		format  string
	}{
		{3, DefaultUIDLFormat},
		{3, "%f"},
		{3, "%g"},
		{3, "%v-%u"},
		{3, "%v.%u%%"},
		{3, "%-3.2f%.4Xv%5u"},
		{3, "%Uf"},
		{1, DefaultUIDLFormat},
		{1, "%g.%08Xu"},
	} {
		t.Run(fmt.Sprintf("v%d/%s", tt.version, tt.format), func(t *testing.T) {
			t.Parallel()
			mb := handMaildir(t, tt.version)
			opts := Options{UIDLFormat: tt.format}
			msgs, bad := readMaildir(t, mb.dir(), opts)
			if bad != nil {
				t.Errorf("unservable UIDLs in messages %v", bad)
			}
			view := popboxView(t, msgs)
			d := startDovecot(t, mb, `pop3_uidl_format = "`+tt.format+`"`)
			compareViews(t, "hand-written uidlist", view, dovecotView(d.list(t)))
			// And once more, now that Dovecot has rewritten the file.
			again, _ := readMaildir(t, mb.dir(), opts)
			if diff := cmp.Diff(uidls(msgs), uidls(again)); diff != "" {
				t.Errorf("UIDLs after Dovecot rewrote dovecot-uidlist (-before +after):\n%s", diff)
			}
		})
	}
}

// TestDovecotSaveUIDL: with pop3_save_uidl=yes Dovecot stores each UIDL it
// serves in dovecot-uidlist ('P'), and keeps serving it when
// pop3_uidl_format changes later; ReadMaildir must do the same, and give
// mail delivered after the change the new format.
func TestDovecotSaveUIDL(t *testing.T) {
	mb := newMailbox(t)
	for _, m := range plainMessages[:5] {
		mb.deliver("", m)
	}
	d := startDovecot(t, mb, "pop3_save_uidl = yes")
	first := d.list(t)
	d.stop()

	mb.deliver("", "Subject: after the format change\n\nbody\n")
	const newFormat = "%v-%u"
	msgs, bad := readMaildir(t, mb.dir(), Options{UIDLFormat: newFormat})
	if bad != nil {
		t.Errorf("unservable UIDLs in messages %v", bad)
	}
	for i, m := range msgs[:5] {
		if m.Source != FromUIDList || m.UIDL != first.uidls[i] {
			t.Errorf("message %d: UIDL %q from %v, want %q from dovecot-uidlist", i+1, m.UIDL, m.Source, first.uidls[i])
		}
	}
	view := popboxView(t, msgs)
	d2 := startDovecot(t, mb, `pop3_uidl_format = "`+newFormat+`"`)
	compareViews(t, "saved UIDLs after a format change", view, dovecotView(d2.list(t)))
}
