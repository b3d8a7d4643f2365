package pop3client

import (
	"context"
	"errors"
	"strings"
)

// The methods here save round trips at the start and end of a session,
// which over a slow link cost more than the commands themselves. They
// pipeline only when the server advertised PIPELINING in a CAPA reply this
// Client has seen (RFC 2449 §6.6), before or after login; otherwise they
// send one command at a time, like the methods they combine.

func (c *Client) canPipeline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pipelining
}

// Login sends USER and PASS (RFC 1939 §7), in one write when the server
// pipelines. The error is the first -ERR (an *Error) or failure.
func (c *Client) Login(ctx context.Context, name, password string) error {
	if !c.canPipeline() {
		if err := c.User(ctx, name); err != nil {
			return err
		}
		return c.Pass(ctx, password)
	}
	if err := checkUserPass(name, password); err != nil {
		return err
	}
	o, err := c.begin(ctx, "USER+PASS")
	if err != nil {
		return err
	}
	defer o.end()
	o.write("USER "+name, "")
	o.write("PASS "+password, "PASS")
	if err := o.flush(); err != nil {
		return err
	}
	// Both replies are read so the session stays in step whatever they say.
	var first error
	for _, cmd := range []string{"USER", "PASS"} {
		ok, text, err := o.status()
		if err != nil {
			return err
		}
		if !ok && first == nil {
			first = parseError(cmd, text)
		}
	}
	if first == nil {
		c.mu.Lock()
		c.caps = nil // RFC 2449 §5: capabilities may change after login
		c.mu.Unlock()
	}
	return first
}

// Listings returns the UIDL and LIST listings of the maildrop (RFC 1939
// §5, §7), asked for in one write when the server pipelines.
func (c *Client) Listings(ctx context.Context) (uidls, sizes []MessageInfo, err error) {
	if !c.canPipeline() {
		if uidls, err = c.UIDL(ctx); err != nil {
			return nil, nil, err
		}
		sizes, err = c.List(ctx)
		return uidls, sizes, err
	}
	o, err := c.begin(ctx, "UIDL+LIST")
	if err != nil {
		return nil, nil, err
	}
	defer o.end()
	o.write("UIDL", "")
	o.write("LIST", "")
	if err := o.flush(); err != nil {
		return nil, nil, err
	}
	uidls, sizes, refused, err := c.readListings(o)
	if err != nil {
		return nil, nil, err
	}
	if refused != nil {
		return nil, nil, refused
	}
	return uidls, sizes, nil
}

// readListings reads the replies to a pipelined "UIDL" and "LIST". refused
// is the first -ERR among them (an *Error); err is a failure that leaves
// the connection unusable.
func (c *Client) readListings(o *op) (uidls, sizes []MessageInfo, refused, err error) {
	for _, cmd := range []string{"UIDL", "LIST"} {
		ok, text, err := o.status()
		if err != nil {
			return nil, nil, nil, err
		}
		if !ok {
			if refused == nil {
				refused = parseError(cmd, text)
			}
			continue
		}
		err = o.listing(c.opts.MaxListing, func(line string) error {
			if cmd == "UIDL" {
				mi, _, err := parseUIDL(line)
				uidls = append(uidls, mi)
				return err
			}
			mi, err := parseScan(line)
			sizes = append(sizes, mi)
			return err
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return uidls, sizes, refused, nil
}

// checkUserPass validates USER and PASS arguments before anything is sent.
func checkUserPass(name, password string) error {
	if err := checkArg("USER", "user name", name); err != nil {
		return err
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return errors.New("pop3client: USER: user name empty or containing spaces")
	}
	return checkArg("PASS", "password", password)
}

// Hangup sends QUIT and closes the connection without waiting for the
// reply. It is for sessions that marked nothing for deletion, where the
// reply cannot change anything (RFC 1939 §6: the UPDATE state only removes
// marked messages), and it saves the round trip. Use Quit after DELE.
func (c *Client) Hangup(ctx context.Context) error {
	o, err := c.begin(ctx, "QUIT")
	if err != nil {
		return err
	}
	err = o.send("QUIT", "")
	o.end()
	return errors.Join(err, c.Close())
}

// LoginAndListings logs in with USER and PASS and asks for the UIDL and
// LIST listings, all in one write when the server pipelines: a fetcher's
// whole session set-up in one round trip. If the login fails the listings
// are refused by the server too (not logged in); the login's *Error is
// returned. Without PIPELINING it is Login followed by Listings.
func (c *Client) LoginAndListings(ctx context.Context, name, password string) (uidls, sizes []MessageInfo, err error) {
	if !c.canPipeline() {
		if err := c.Login(ctx, name, password); err != nil {
			return nil, nil, err
		}
		return c.Listings(ctx)
	}
	if err := checkUserPass(name, password); err != nil {
		return nil, nil, err
	}
	o, err := c.begin(ctx, "USER+PASS+UIDL+LIST")
	if err != nil {
		return nil, nil, err
	}
	defer o.end()
	o.write("USER "+name, "")
	o.write("PASS "+password, "PASS")
	o.write("UIDL", "")
	o.write("LIST", "")
	if err := o.flush(); err != nil {
		return nil, nil, err
	}
	var loginErr error
	for _, cmd := range []string{"USER", "PASS"} {
		ok, text, err := o.status()
		if err != nil {
			return nil, nil, err
		}
		if !ok && loginErr == nil {
			loginErr = parseError(cmd, text)
		}
	}
	uidls, sizes, listErr, err := c.readListings(o)
	if err != nil {
		// A server may hang up after a failed login; the login's error
		// is the one that explains it.
		if loginErr != nil {
			return nil, nil, loginErr
		}
		return nil, nil, err
	}
	if loginErr != nil {
		return nil, nil, loginErr
	}
	c.mu.Lock()
	c.caps = nil // RFC 2449 §5: capabilities may change after login
	c.mu.Unlock()
	if listErr != nil {
		return nil, nil, listErr
	}
	return uidls, sizes, nil
}
