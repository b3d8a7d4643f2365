package userdb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/popbox/popbox/userdb"
)

func Example() {
	dir, err := os.MkdirTemp("", "userdb-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	// Zero Options: OWASP argon2id parameters, 5 s busy timeout.
	db, err := userdb.Open(filepath.Join(dir, "users.db"), userdb.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if err := db.Add(ctx, "Alice@Example.org", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}
	// Names are case-insensitive; Authenticate returns the canonical one.
	name, err := db.Authenticate(ctx, "ALICE@example.org", "correct horse battery staple")
	fmt.Println(name, err)

	_, err = db.Authenticate(ctx, "alice@example.org", "wrong")
	fmt.Println(errors.Is(err, userdb.ErrAuthFailed))

	users, err := db.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range users {
		fmt.Println(u.Name, u.PasswordScheme)
	}
	// Output:
	// alice@example.org <nil>
	// true
	// alice@example.org argon2id
}

// Several frontends share their users through PostgreSQL: `popbox migrate`
// (Migrate) creates or upgrades the schema once, then each frontend opens
// the database by its URL.
func Example_postgreSQL() {
	ctx := context.Background()
	dsn := "postgres://popbox@db.example.org/popbox?sslmode=verify-full"
	if err := userdb.Migrate(ctx, dsn); err != nil {
		log.Fatal(err)
	}
	db, err := userdb.Open(dsn, userdb.Options{})
	if errors.Is(err, userdb.ErrSchemaVersion) {
		log.Fatal(err) // says to run `popbox migrate`
	}
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	name, err := db.Authenticate(ctx, "alice@example.org", "correct horse battery staple")
	fmt.Println(name, err)
}
