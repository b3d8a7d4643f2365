package dovecot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultUIDLFormat is Dovecot's default pop3_uidl_format (2.3,
// src/lib-storage/mail-storage-settings.c).
const DefaultUIDLFormat = "%08Xu%08Xv"

// ErrUIDLFormat: a pop3_uidl_format this package cannot expand as Dovecot
// would (or that Dovecot itself refuses for Maildir).
var ErrUIDLFormat = errors.New("dovecot: unsupported pop3_uidl_format")

// maxFormatWidth bounds a width or offset in the format, so that "%09999999u"
// cannot make a gigabyte of zeros.
const maxFormatWidth = 1024

// uidlKeys is pop3-client.c's enum uidl_keys: which per-message values the
// format uses.
type uidlKeys uint8

const (
	keyUIDValidity uidlKeys = 1 << iota
	keyUID
	keyMD5
	keyFileName
	keyGUID
)

// formatVars are the values pop3_get_uid offers var_expand.
type formatVars struct {
	uid, uidValidity uint32
	fileName, guid   string
}

// uidlFormat is a checked pop3_uidl_format.
type uidlFormat struct {
	format string
	keys   uidlKeys
}

// parseUIDLFormat checks format as Dovecot's configuration check does
// (mail-storage-settings.c mail_storage_settings_check: every variable one
// of %v %u %m %f %g %%, long %{...} keys included, and at least one that
// is not %%), and refuses what expand cannot do: %m (Maildir has no header
// MD5; Dovecot fails the UIDL command) and modifiers other than L U X R T.
func parseUIDLFormat(format string) (*uidlFormat, error) {
	f := &uidlFormat{format: format, keys: keyMask(format)}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 >= len(format) {
			continue
		}
		i++
		switch c := varGetKey(format[i:]); c {
		case 'v', 'u', 'm', 'f', 'g', '%':
		default:
			return nil, fmt.Errorf("%w: %q: unknown variable %%%c (Dovecot refuses it too)", ErrUIDLFormat, format, c)
		}
	}
	if f.keys == 0 {
		return nil, fmt.Errorf("%w: %q uses none of %%u %%v %%f %%g (Dovecot refuses it too)", ErrUIDLFormat, format)
	}
	if f.keys&keyMD5 != 0 {
		return nil, fmt.Errorf("%w: %q: %%m (header MD5) is not available for Maildir, in Dovecot either", ErrUIDLFormat, format)
	}
	// Expanding with sample values finds every other problem.
	if _, err := f.expand(formatVars{uid: 1, uidValidity: 1, fileName: "x", guid: "x"}); err != nil {
		return nil, err
	}
	return f, nil
}

// keyMask follows parse_uidl_keymask and var_get_key: only short keys
// count, so a format of long keys alone ("%{uid}") is invalid in Dovecot.
func keyMask(format string) uidlKeys {
	var mask uidlKeys
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 >= len(format) {
			continue
		}
		i++
		switch varGetKey(format[i:]) {
		case 'v':
			mask |= keyUIDValidity
		case 'u':
			mask |= keyUID
		case 'm':
			mask |= keyMD5
		case 'f':
			mask |= keyFileName
		case 'g':
			mask |= keyGUID
		}
	}
	return mask
}

// allModifiers are var_expand's modifier letters (2.3 var-expand.c).
const allModifiers = "LUEXRHNMDT"

// varGetKey is var_get_key: the key letter after [<offset>.]<width> and
// modifiers, or '{' for a long key, or 0 at the end.
func varGetKey(s string) byte {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '-') {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '-') {
			i++
		}
	}
	for i < len(s) && strings.IndexByte(allModifiers, s[i]) >= 0 {
		i++
	}
	if i >= len(s) {
		return 0
	}
	return s[i]
}

// expand is var_expand_with_funcs for pop3_get_uid's table.
func (f *uidlFormat) expand(v formatVars) (string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrUIDLFormat, f.format, fmt.Sprintf(format, args...))
	}
	s := f.format
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out.WriteByte(s[i])
			continue
		}
		i++
		// [<offset>.]<width>[<modifiers>]<variable>
		var (
			offset, width int
			zeroPad       bool
			sign          = 1
		)
		number := func() (int, error) {
			n := 0
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				n = n*10 + int(s[i]-'0')
				if n > maxFormatWidth {
					return 0, bad("width or offset above %d", maxFormatWidth)
				}
				i++
			}
			return n, nil
		}
		if i < len(s) && s[i] == '-' {
			sign = -1
			i++
		}
		if i < len(s) && s[i] == '0' {
			zeroPad = true
			i++
		}
		var err error
		if width, err = number(); err != nil {
			return "", err
		}
		if i < len(s) && s[i] == '.' {
			offset, sign, width = sign*width, 1, 0
			i++
			zeroPad = false
			if i < len(s) && s[i] == '0' {
				zeroPad = true
				i++
			}
			if i < len(s) && s[i] == '-' {
				sign = -1
				i++
			}
			if width, err = number(); err != nil {
				return "", err
			}
			width *= sign
		}
		var mods []byte
		for len(mods) < 10 && i < len(s) && strings.IndexByte(allModifiers, s[i]) >= 0 {
			if strings.IndexByte("LUXRT", s[i]) < 0 {
				return "", bad("modifier %c is not supported here", s[i])
			}
			mods = append(mods, s[i])
			i++
		}
		if i >= len(s) {
			break
		}
		// Long %{...} keys never get here: parseUIDLFormat refuses
		// them as Dovecot's configuration check does.
		val, err := f.shortVar(s[i], v)
		if err != nil {
			return "", bad("%v", err)
		}
		for _, m := range mods {
			val = modify(m, val)
		}
		if offset < 0 {
			if len(val) > -offset {
				val = val[len(val)+offset:]
			}
		} else {
			val = val[min(offset, len(val)):]
		}
		switch {
		case width == 0:
			out.WriteString(val)
		case !zeroPad:
			if width < 0 {
				width = len(val) + width
			}
			if width < 0 {
				// str_append_max with a negative size_t: all of it.
				width = len(val)
			}
			out.WriteString(val[:min(width, len(val))])
		default:
			for n := len(val); n < width; n++ {
				out.WriteByte('0')
			}
			out.WriteString(val)
		}
	}
	return out.String(), nil
}

// shortVar is var_expand_short with pop3_get_uid's table.
func (f *uidlFormat) shortVar(key byte, v formatVars) (string, error) {
	switch key {
	case 'v':
		return strconv.FormatUint(uint64(v.uidValidity), 10), nil
	case 'u':
		return strconv.FormatUint(uint64(v.uid), 10), nil
	case 'f':
		return v.fileName, nil
	case 'g':
		return v.guid, nil
	case 'm':
		return "", errors.New("%m is not available for Maildir")
	case '%':
		return "%", nil
	}
	return "", fmt.Errorf("unknown variable %%%c", key)
}

// modify applies one var_expand modifier.
func modify(m byte, s string) string {
	switch m {
	case 'L':
		return asciiMap(s, 'A', 'Z', 'a'-'A')
	case 'U':
		return asciiMap(s, 'a', 'z', 'A'-'a')
	case 'X':
		// m_str_hex: str_to_ullong (all digits, no sign, no overflow)
		// or 0, printed with %llx.
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || strings.TrimLeft(s, "0123456789") != "" {
			n = 0
		}
		return strconv.FormatUint(n, 16)
	case 'R':
		b := []byte(s)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	case 'T':
		// m_str_trim: trailing i_isspace, C's isspace.
		return strings.TrimRight(s, " \t\n\v\f\r")
	}
	panic("dovecot: unchecked modifier")
}

func asciiMap(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}
