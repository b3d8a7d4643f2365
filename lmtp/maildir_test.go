package lmtp

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
)

// mailboxContents opens user's maildrop and returns the stored messages and
// their info, releasing the lock.
func mailboxContents(t *testing.T, st store.Store, user string) ([]string, []store.MessageInfo) {
	t.Helper()
	m, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var msgs []string
	for i := range m.Messages() {
		rc, err := m.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs, m.Messages()
}

func TestMaildirStore(t *testing.T) {
	root := t.TempDir()
	st, err := maildir.New(root, maildir.Options{MaxMessageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, st, nil)
	rc := ts.hello(t)

	// Byte-exact: dot-stuffing undone, a lone dot line, bare LF, lone CR,
	// 8-bit and NUL kept, CRLF stored as LF.
	const data = "Subject: \xe2\x82\xac\r\n\r\n..\r\n..x\r\na\nb\rc\r\n\x00\xff\r\n.\r\n"
	want := hdr(sender, "alice@example.org") + "Subject: \xe2\x82\xac\n\n.\n.x\na\nb\rc\n\x00\xff\n"
	rc.send("MAIL FROM:<" + sender + ">\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	for range 3 {
		rc.reply()
	}
	rc.send(data)
	reply := rc.line()
	if !strings.HasPrefix(reply, "250 2.0.0 <alice@example.org> Saved, UIDL ") {
		t.Fatalf("DATA reply %q", reply)
	}
	uidl := strings.TrimPrefix(reply, "250 2.0.0 <alice@example.org> Saved, UIDL ")

	msgs, infos := mailboxContents(t, st, "alice")
	if diff := cmp.Diff([]string{want}, msgs); diff != "" {
		t.Fatalf("stored (-want +got):\n%s", diff)
	}
	size, _ := pop3.WireSize(strings.NewReader(want))
	if diff := cmp.Diff([]store.MessageInfo{{UIDL: uidl, Size: size}}, infos); diff != "" {
		t.Errorf("message info (-want +got):\n%s", diff)
	}

	// Over the store's own limit (but within LMTP's): Deliver fails, the
	// reply is temporary, and nothing is visible, not even in tmp/.
	_, got := rc.transaction(sender, []string{"alice@example.org"}, strings.Repeat("x", 2000)+"\r\n.\r\n")
	if diff := cmp.Diff([]string{"451 4.3.0 <alice@example.org>"}, got); diff != "" {
		t.Errorf("DATA replies (-want +got):\n%s", diff)
	}
	msgs, _ = mailboxContents(t, st, "alice")
	if len(msgs) != 1 {
		t.Errorf("%d messages after a failed delivery, want 1", len(msgs))
	}
	for _, d := range []string{"tmp", "new"} {
		ents, err := os.ReadDir(filepath.Join(root, "alice", "Maildir", d))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"tmp": 0, "new": 1}[d]; len(ents) != want {
			t.Errorf("%d files in %s/, want %d", len(ents), d, want)
		}
	}
	if !strings.Contains(ts.logs.String(), `level=WARN msg="delivery failed"`) {
		t.Errorf("failed delivery not logged as a warning:\n%s", ts.logs.String())
	}
}
