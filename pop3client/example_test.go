package pop3client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/popbox/popbox/pop3client"
	"github.com/popbox/popbox/sasl"
)

// A session with a mail server: connect, upgrade to TLS, log in with the
// strongest mechanism offered, list the messages by unique-id, fetch one,
// and quit.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pop3client.Dial(ctx, "mail.example.com:110", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // after Quit, a no-op; on an early return, no deletions
	if err := c.StartTLS(ctx, nil); err != nil {
		log.Fatal(err)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		log.Fatal(err)
	}
	switch sasl.Strongest(caps.SASL(), []string{sasl.SCRAMSHA256, sasl.Plain}) {
	case sasl.SCRAMSHA256:
		err = c.Auth(ctx, sasl.NewSCRAMSHA256Client("alice", "secret", nil))
	case sasl.Plain:
		err = c.Auth(ctx, sasl.NewPlainClient("", "alice", "secret"))
	default:
		if err = c.User(ctx, "alice"); err == nil {
			err = c.Pass(ctx, "secret")
		}
	}
	var perr *pop3client.Error
	if errors.As(err, &perr) && perr.Temporary() {
		log.Fatalf("mailbox busy, try later: %v", err)
	} else if err != nil {
		log.Fatal(err)
	}
	uidls, err := c.UIDL(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range uidls {
		fmt.Println(m.Num, m.UIDL)
	}
	if len(uidls) > 0 {
		body, err := c.Retr(ctx, uidls[0].Num)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(os.Stdout, body)
		if err := body.Close(); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Quit(ctx); err != nil {
		log.Fatal(err)
	}
}

// Fetch every message over implicit TLS, pipelined when the server allows,
// and delete what was saved.
func ExampleClient_RetrMany() {
	ctx := context.Background()
	c, err := pop3client.DialTLS(ctx, "mail.example.com:995", &tls.Config{}, &pop3client.Options{Timeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(ctx, sasl.NewPlainClient("", "alice", "secret")); err != nil {
		log.Fatal(err)
	}
	list, err := c.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	window := 1
	if caps, err := c.Capabilities(ctx); err == nil && caps.Has("PIPELINING") {
		window = 16
	}
	var nums, saved []int
	for _, m := range list {
		nums = append(nums, m.Num)
	}
	err = c.RetrMany(ctx, nums, window, func(n int, body io.Reader, err error) error {
		if err != nil {
			log.Printf("message %d: %v", n, err) // skip it, go on
			return nil
		}
		f, err := os.Create(fmt.Sprintf("msg-%d.eml", n))
		if err != nil {
			return err // stops the loop
		}
		defer f.Close()
		if _, err := io.Copy(f, body); err != nil {
			return err
		}
		saved = append(saved, n)
		return f.Sync()
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.DeleMany(ctx, saved, window); err != nil {
		log.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		log.Fatal(err) // the deletions failed; the mail is still there
	}
}

// An -ERR reply carries the RFC 2449 response code, which tells a busy
// mailbox from bad credentials.
func ExampleError_Temporary() {
	for _, e := range []*pop3client.Error{
		{Command: "PASS", Code: "IN-USE", Text: "maildrop locked"},
		{Command: "PASS", Code: "AUTH", Text: "invalid credentials"},
		{Command: "RETR 3", Code: "SYS/TEMP", Text: "try again"},
	} {
		fmt.Println(e, "| temporary:", e.Temporary())
	}
	// Output:
	// pop3client: PASS: -ERR [IN-USE] maildrop locked | temporary: true
	// pop3client: PASS: -ERR [AUTH] invalid credentials | temporary: false
	// pop3client: RETR 3: -ERR [SYS/TEMP] try again | temporary: true
}

func ExampleCapabilities() {
	caps := pop3client.Capabilities{"SASL": {"PLAIN", "SCRAM-SHA-256"}, "PIPELINING": {}}
	fmt.Println(caps.Has("pipelining"), caps.Has("STLS"), caps.SASL())
	// Output:
	// true false [PLAIN SCRAM-SHA-256]
}
