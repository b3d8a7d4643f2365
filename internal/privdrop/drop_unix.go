//go:build unix

package privdrop

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
)

func drop(c Creds) error {
	// Order matters: groups and gid can only be changed while still root.
	if err := syscall.Setgroups(append([]int{}, c.Groups...)); err != nil {
		return fmt.Errorf("setting supplementary groups %v: %w", c.Groups, err)
	}
	if err := syscall.Setgid(c.GID); err != nil {
		return fmt.Errorf("setting group %d (%s): %w", c.GID, c.Group, err)
	}
	if err := syscall.Setuid(c.UID); err != nil {
		return fmt.Errorf("setting user %d (%s): %w", c.UID, c.User, err)
	}
	return verify(c)
}

// verify checks that the drop took and cannot be undone.
func verify(c Creds) error {
	if uid, euid := os.Getuid(), os.Geteuid(); uid != c.UID || euid != c.UID {
		return fmt.Errorf("privileges not dropped: uid %d, euid %d, want %d", uid, euid, c.UID)
	}
	if gid, egid := os.Getgid(), os.Getegid(); gid != c.GID || egid != c.GID {
		return fmt.Errorf("privileges not dropped: gid %d, egid %d, want %d", gid, egid, c.GID)
	}
	groups, err := os.Getgroups()
	if err != nil {
		return fmt.Errorf("checking supplementary groups: %w", err)
	}
	for _, g := range groups {
		if g != c.GID && !slices.Contains(c.Groups, g) {
			return fmt.Errorf("privileges not dropped: still in group %d", g)
		}
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("privileges not dropped: setuid(0) succeeded afterwards")
	}
	return nil
}
