package maildir_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
)

// A delivery followed by a POP3 session that reads the message and deletes
// it on QUIT.
func Example() {
	root, err := os.MkdirTemp("", "maildir-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)

	s, err := maildir.New(root, maildir.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Intake: LMTP or `popbox deliver` hands over the message.
	info, err := s.Deliver(ctx, "alice", strings.NewReader("Subject: hi\n\nHello\n"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered, wire size", info.Size)

	// Retrieval: a POP3 session locks the maildrop and works on a snapshot.
	m, err := s.Open(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Open(ctx, "alice"); errors.Is(err, store.ErrInUse) {
		fmt.Println("second session: in use")
	}
	for i, msg := range m.Messages() {
		rc, err := m.Open(i)
		if err != nil {
			log.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("message %d: %d octets on the wire, UIDL is the delivered one: %v\n%s",
			i+1, msg.Size, msg.UIDL == info.UIDL, body)
	}
	// QUIT: delete message 1 and release the lock.
	if err := m.Commit([]int{0}); err != nil {
		log.Fatal(err)
	}

	m, err = s.Open(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println("left:", len(m.Messages()))
	// Output:
	// delivered, wire size 22
	// second session: in use
	// message 1: 22 octets on the wire, UIDL is the delivered one: true
	// Subject: hi
	//
	// Hello
	// left: 0
}

// Deleted mail is kept for Options.Retention and can be restored, with a
// new UIDL so that the client downloads it again; quotas count only what
// POP3 lists.
func ExampleStore_Restore() {
	root, err := os.MkdirTemp("", "maildir-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)

	s, err := maildir.New(root, maildir.Options{
		Retention: 7 * 24 * time.Hour,
		Quota: func(context.Context, string) (store.Quota, error) {
			return store.Quota{MaxMessages: 1}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	old, err := s.Deliver(ctx, "alice", strings.NewReader("Subject: hi\n\nHello\n"))
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.Deliver(ctx, "alice", strings.NewReader("Subject: more\n\n"))
	fmt.Println("second delivery over quota:", errors.Is(err, store.ErrQuota))

	m, err := s.Open(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Commit([]int{0}); err != nil { // DELE 1, QUIT
		log.Fatal(err)
	}
	u, err := s.Usage(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("messages after delete:", u.Messages)

	back, err := s.Restore(ctx, "alice", store.RestoreOptions{Since: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored:", len(back), "same size:", back[0].Size == old.Size, "new UIDL:", back[0].UIDL != old.UIDL)

	n, err := s.Purge(ctx, "alice", time.Now().Add(8*24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("purged:", n)
	// Output:
	// second delivery over quota: true
	// messages after delete: 0
	// restored: 1 same size: true new UIDL: true
	// purged: 0
}
