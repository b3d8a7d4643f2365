package maildir_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

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
