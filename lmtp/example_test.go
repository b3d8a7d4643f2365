package lmtp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/emersion/go-smtp"

	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/store/maildir"
)

// An LMTP server on a Unix socket delivering into a Maildir store, and an
// MTA's side of one transaction.
func Example() {
	dir, err := os.MkdirTemp("", "lmtp-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := maildir.New(dir, maildir.Options{})
	if err != nil {
		log.Fatal(err)
	}
	accounts := map[string]bool{"alice": true}
	srv := &lmtp.Server{
		Store: st,
		Users: lmtp.AddressResolver{Lookup: func(_ context.Context, name string) (string, error) {
			if accounts[name] {
				return name, nil
			}
			return "", fmt.Errorf("%w: %s", lmtp.ErrUnknownRecipient, name)
		}},
		Hostname: "mail.example.org",
		Logger:   slog.New(slog.DiscardHandler),
	}
	sock := filepath.Join(dir, "lmtp.sock")
	l, err := lmtp.ListenUnix(sock, lmtp.SocketOptions{Mode: 0o600})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	// The MTA's side.
	nc, err := net.Dial("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	c := smtp.NewClientLMTP(nc)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		log.Fatal(err)
	}
	if err := c.Mail("bob@example.com", nil); err != nil {
		log.Fatal(err)
	}
	if err := c.Rcpt("Alice@example.org", nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("RCPT nobody:", c.Rcpt("nobody@example.org", nil))
	w, err := c.Data()
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(w, "Subject: hello\r\n\r\nHi Alice!\r\n")
	// One reply per accepted recipient (RFC 2033 §4.2).
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		log.Fatal(err)
	}
	c.Quit()

	// A 250 means the message is in the store.
	m, err := st.Open(context.Background(), "alice")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	r, err := m.Open(0)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	io.Copy(os.Stdout, r)
	// Output:
	// RCPT nobody: SMTP error 550: No such user here
	// Return-Path: <bob@example.com>
	// Delivered-To: Alice@example.org
	// Subject: hello
	//
	// Hi Alice!
}
