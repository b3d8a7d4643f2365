package postgres_test

import (
	"context"
	"log"
	"strings"
	"time"

	"github.com/popbox/popbox/store/postgres"
)

// A frontend migrates the schema (`popbox migrate`; safe to run from every
// frontend at once), opens the store, delivers and serves a session.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := "host=/run/postgresql dbname=popbox pool_max_conns=20"
	if err := postgres.Migrate(ctx, dsn); err != nil {
		log.Fatal(err)
	}
	s, err := postgres.Open(ctx, dsn, postgres.Options{Retention: 7 * 24 * time.Hour})
	if err != nil {
		log.Fatal(err) // an unmigrated database names `popbox migrate`
	}
	defer s.Close()
	if _, err := s.Deliver(ctx, "alice", strings.NewReader("Subject: hi\n\nhello\n")); err != nil {
		log.Fatal(err)
	}
	m, err := s.Open(ctx, "alice") // store.ErrInUse while another frontend has it
	if err != nil {
		log.Fatal(err)
	}
	for i, msg := range m.Messages() {
		log.Printf("%d %s %d", i+1, msg.UIDL, msg.Size)
	}
	if err := m.Commit([]int{0}); err != nil { // postgres.ErrLeaseLost if fenced off
		log.Fatal(err)
	}
}
