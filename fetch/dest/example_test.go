package dest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/popbox/popbox/fetch/dest"
)

// Open a Maildir destination, deliver a message as the POP3 client hands
// it over (CRLF line ends), and ask whether it is there, as the fetch engine
// does after a crash.
func Example() {
	dir, err := os.MkdirTemp("", "dest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	d, err := dest.Open("maildir:"+filepath.Join(dir, "Maildir"), dest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := "From: alice@example.org\r\nSubject: hello\r\n\r\nHi Bob!\r\n"
	m := dest.Message{Key: "bob.pop.example.org-UID42", Time: time.Now()}
	if err := d.Deliver(ctx, strings.NewReader(msg), m); err != nil {
		log.Fatal(err)
	}

	names, err := os.ReadDir(filepath.Join(dir, "Maildir", "new"))
	if err != nil {
		log.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(dir, "Maildir", "new", names[0].Name()))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", stored)

	for _, key := range []string{m.Key, "bob.pop.example.org-UID43"} {
		has, err := d.Has(ctx, key)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(key, has)
	}
	// Output:
	// "From: alice@example.org\nSubject: hello\n\nHi Bob!\n"
	// bob.pop.example.org-UID42 true
	// bob.pop.example.org-UID43 false
}

// An mbox destination: Deliver appends in mboxrd format, quoting a body
// line that starts with "From ".
func ExampleOpen_mbox() {
	dir, err := os.MkdirTemp("", "dest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mbox")

	d, err := dest.Open("mbox:"+path, dest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	m := dest.Message{
		Key:    "k1",
		Sender: "alice@example.org",
		Time:   time.Date(2025, time.March, 7, 9, 5, 3, 0, time.UTC),
	}
	msg := "Subject: quoting\r\n\r\nFrom the start of a line.\r\n"
	if err := d.Deliver(context.Background(), strings.NewReader(msg), m); err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// From alice@example.org Fri Mar  7 09:05:03 2025
	// X-Popbox-Key: k1
	// Subject: quoting
	//
	// >From the start of a line.
}

// An MDA gets the message on stdin with Unix line ends; exit 75
// (EX_TEMPFAIL) is reported as dest.ErrTemporary.
func ExampleOpen_mda() {
	d, err := dest.Open(`mda:cat >/dev/null; exit 75`, dest.Options{MDATimeout: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	err = d.Deliver(context.Background(), strings.NewReader("Subject: x\r\n\r\nbody\r\n"), dest.Message{Key: "k1"})
	fmt.Println(errors.Is(err, dest.ErrTemporary))
	_, err = d.Has(context.Background(), "k1")
	fmt.Println(errors.Is(err, dest.ErrUnknowable))
	// Output:
	// true
	// true
}
