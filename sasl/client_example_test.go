package sasl_test

import (
	"context"
	"fmt"
	"log"

	"github.com/popbox/popbox/pop3client"
	"github.com/popbox/popbox/sasl"
)

// Strongest picks what to use from a server's SASL capability: here the
// caller has a password but no TLS channel binding and no token.
func ExampleStrongest() {
	offered := []string{"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "XOAUTH2"}
	fmt.Println(sasl.Strongest(offered, []string{sasl.SCRAMSHA256, sasl.Plain, sasl.Login}))
	fmt.Println(sasl.Strongest([]string{"LOGIN", "PLAIN"}, nil))
	fmt.Printf("%q\n", sasl.Strongest([]string{"CRAM-MD5"}, nil))
	// Output:
	// SCRAM-SHA-256
	// PLAIN
	// ""
}

// XOAUTH2's initial response carries the user and the bearer token.
func ExampleNewXOAUTH2Client() {
	c := sasl.NewXOAUTH2Client("alice@example.com", "ya29.token")
	mech, ir, _ := c.Start()
	fmt.Printf("%s %q\n", mech, ir)
	// Output:
	// XOAUTH2 "user=alice@example.com\x01auth=Bearer ya29.token\x01\x01"
}

// SCRAM-SHA-256-PLUS binds the login to the TLS connection, so that a man
// in the middle who terminates TLS cannot relay it.
func ExampleChannelBindingFromTLS() {
	ctx := context.Background()
	c, err := pop3client.DialTLS(ctx, "mail.example.com:995", nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		log.Fatal(err)
	}
	state, _ := c.TLSConnectionState()
	cb, err := sasl.ChannelBindingFromTLS(state, "")
	allowed := []string{sasl.SCRAMSHA256Plus, sasl.SCRAMSHA256}
	if err != nil {
		allowed = allowed[1:]
	}
	switch sasl.Strongest(caps.SASL(), allowed) {
	case sasl.SCRAMSHA256Plus:
		err = c.Auth(ctx, sasl.NewSCRAMSHA256Client("alice", "secret", cb))
	case sasl.SCRAMSHA256:
		err = c.Auth(ctx, sasl.NewSCRAMSHA256Client("alice", "secret", nil))
	default:
		log.Fatal("server offers no SCRAM")
	}
	if err != nil {
		log.Fatal(err)
	}
}
