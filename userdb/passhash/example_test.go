package passhash_test

import (
	"fmt"

	"github.com/popbox/popbox/userdb/passhash"
)

func Example() {
	// Hash a new password with the default (OWASP) argon2id parameters.
	h, err := passhash.Hash("correct horse", passhash.Params{})
	if err != nil {
		panic(err)
	}
	ok, err := passhash.Verify(h, "correct horse")
	fmt.Println(ok, err)

	// A hash imported from Dovecot verifies too, and wants an upgrade.
	dovecot := "{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG"
	ok, err = passhash.Verify(dovecot, "correct horse")
	fmt.Println(ok, err, passhash.NeedsRehash(dovecot, passhash.DefaultParams()))
	// Output:
	// true <nil>
	// true <nil> true
}
