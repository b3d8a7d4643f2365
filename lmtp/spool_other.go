//go:build !linux

package lmtp

import "os"

// openTempFile makes a temporary file in dir that is already unlinked.
func openTempFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	return createUnlinked(dir)
}
