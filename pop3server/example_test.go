package pop3server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/store"
)

// oneMessage is a toy Backend: one account with one message that is never
// deleted. A real one checks a user database and opens a store.Store.
type oneMessage struct{}

func (oneMessage) Authenticate(_ context.Context, _ pop3server.ConnInfo, user, password string) (string, error) {
	if user != "demo" || password != "demo" {
		return "", pop3server.ErrAuthFailed
	}
	return user, nil
}

func (oneMessage) Open(_ context.Context, user string) (store.Maildrop, error) {
	return &drop{msg: []byte("Subject: hello\n\nWelcome.\n")}, nil
}

type drop struct{ msg []byte }

func (d *drop) Messages() []store.MessageInfo {
	size, _ := pop3.WireSize(bytes.NewReader(d.msg))
	return []store.MessageInfo{{UIDL: "welcome-1", Size: size}}
}
func (d *drop) Open(i int) (io.ReadCloser, error) {
	if i != 0 {
		return nil, store.ErrNoSuchMessage
	}
	return io.NopCloser(bytes.NewReader(d.msg)), nil
}
func (d *drop) Commit(deleted []int) error { return nil }
func (d *drop) Close() error               { return nil }

// Example runs a server with STLS on port 110 and implicit TLS on port 995
// until interrupted, then gives sessions 30 seconds to finish.
func Example() {
	cert, err := tls.LoadX509KeyPair("cert.pem", "key.pem")
	if err != nil {
		log.Fatal(err)
	}
	srv := &pop3server.Server{
		Backend:   oneMessage{},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Hostname:  "mail.example.org",
		Plaintext: pop3server.PlaintextNever, // passwords only over TLS
		Limits:    pop3server.Limits{IdleTimeout: 10 * time.Minute},
	}
	plain, err := net.Listen("tcp", ":110")
	if err != nil {
		log.Fatal(err)
	}
	implicit, err := net.Listen("tcp", ":995")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := srv.ServeTLS(implicit); !errors.Is(err, pop3server.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Print("shutdown: ", err)
		}
	}()
	if err := srv.Serve(plain); !errors.Is(err, pop3server.ErrServerClosed) {
		log.Fatal(err)
	}
}
