// Package privdrop gives up root: a server started as root to bind
// privileged ports becomes an unprivileged user and group before it touches
// client data.
//
// Implementation notes:
//
//   - Linux keeps credentials per thread; since Go 1.16 syscall.Setuid,
//     Setgid and Setgroups change them on every thread of the process, which
//     is what makes this safe to do from Go at all.
//   - Drop verifies the result rather than trusting the return codes: the
//     real, effective and saved ids must all be the target, and setuid(0)
//     must fail afterwards. A drop that only half worked is worse than none,
//     because the log would claim otherwise.
//   - Names and numeric ids are both accepted; a number not in the user
//     database is used as is (containers often run with ids that have no
//     passwd entry), but then the group must be given.
package privdrop

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// Creds are the numeric ids Drop switches to.
type Creds struct {
	UID, GID int
	// Groups are the supplementary groups: the user's memberships in the
	// group database, as initgroups(3), login and systemd's User= give
	// them, so that membership granted by the administrator (group postfix
	// for lmtp.socket_group, say) works after the drop. None for a numeric
	// user without an entry.
	Groups []int
	// User and Group are the names as given, for messages.
	User, Group string
}

// Resolve looks up userName and groupName (names or numeric ids). An
// empty groupName means the user's primary group.
func Resolve(userName, groupName string) (Creds, error) {
	c := Creds{User: userName, Group: groupName}
	if userName == "" {
		return c, errors.New("no user to run as")
	}
	primary := ""
	var entry *user.User
	if u, err := user.Lookup(userName); err == nil {
		c.UID, _ = strconv.Atoi(u.Uid)
		primary, entry = u.Gid, u
	} else if id, ok := numericID(userName); ok {
		c.UID = id
		if u, err := user.LookupId(userName); err == nil {
			primary, entry = u.Gid, u
		}
	} else {
		return c, fmt.Errorf("user %q: %w", userName, err)
	}
	if entry != nil {
		ids, err := entry.GroupIds()
		if err != nil {
			return c, fmt.Errorf("groups of user %q: %w", userName, err)
		}
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil {
				c.Groups = append(c.Groups, g)
			}
		}
	}
	switch {
	case groupName != "":
		if g, err := user.LookupGroup(groupName); err == nil {
			c.GID, _ = strconv.Atoi(g.Gid)
		} else if id, ok := numericID(groupName); ok {
			c.GID = id
		} else {
			return c, fmt.Errorf("group %q: %w", groupName, err)
		}
	case primary != "":
		c.GID, _ = strconv.Atoi(primary)
		c.Group = primary
	default:
		return c, fmt.Errorf("user %q has no entry in the user database to take a primary group from: set the group", userName)
	}
	return c, nil
}

func numericID(s string) (int, bool) {
	n, err := strconv.ParseUint(s, 10, 31)
	return int(n), err == nil
}

// Drop resolves userName and groupName as Resolve does and switches the
// whole process to them for good, with the user's supplementary groups
// (Creds.Groups) and no others. It must run as root. It returns the ids it
// switched to.
func Drop(userName, groupName string) (Creds, error) {
	c, err := Resolve(userName, groupName)
	if err != nil {
		return c, err
	}
	if c.UID == 0 {
		return c, fmt.Errorf("user %q is root: dropping to it changes nothing", userName)
	}
	return c, drop(c)
}
