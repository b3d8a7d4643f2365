//go:build !unix

package privdrop

import (
	"errors"
	"fmt"
)

func drop(Creds) error {
	return fmt.Errorf("dropping privileges: %w", errors.ErrUnsupported)
}
