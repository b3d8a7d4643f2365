// Package mailtest reads back what popbox fetch stored, for tests: the
// messages of a Maildir or an mboxrd file, with line ends normalised and
// the header fields the fetcher adds removed, so they compare with what
// the server was given. The fetch and cmd/popbox tests share it.
package mailtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Local returns the messages of a destination spec ("maildir:DIR" or
// "mbox:FILE"), each normalised (Normalise) and without the Received and
// X-Popbox-Key fields popbox fetch adds. A destination not yet created
// holds no messages.
func Local(spec string) ([]string, error) {
	kind, path, _ := strings.Cut(spec, ":")
	var raw []string
	switch kind {
	case "maildir":
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(path, sub))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(path, sub, e.Name()))
				if err != nil {
					return nil, err
				}
				raw = append(raw, string(b))
			}
		}
	case "mbox":
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if raw, err = ParseMboxrd(string(b)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("mailtest: unknown destination %q", spec)
	}
	for i, m := range raw {
		raw[i] = StripHeader(StripHeader(Normalise(m), "X-Popbox-Key"), "Received")
	}
	return raw, nil
}

// ParseMboxrd splits an mboxrd file into messages: each entry is a From_
// line, the message with ">From" lines quoted once more, and a blank line.
// An entry without its closing blank line is an error.
func ParseMboxrd(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "From ") {
		return nil, fmt.Errorf("mailtest: mbox does not start with a From_ line: %q", s[:min(len(s), 40)])
	}
	var msgs, cur []string
	var bad error
	flush := func() {
		if cur == nil {
			return
		}
		if n := len(cur); n > 0 && cur[n-1] == "\n" {
			cur = cur[:n-1] // the blank line that ends every entry
		} else if bad == nil {
			bad = fmt.Errorf("mailtest: mbox entry %d not followed by a blank line", len(msgs)+1)
		}
		msgs = append(msgs, strings.Join(cur, ""))
	}
	for _, l := range strings.SplitAfter(s, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "From ") {
			flush()
			cur = []string{}
			continue
		}
		if q := strings.TrimLeft(l, ">"); len(q) < len(l) && strings.HasPrefix(q, "From ") {
			l = l[1:]
		}
		cur = append(cur, l)
	}
	flush()
	return msgs, bad
}

// Normalise turns CRLF into LF and adds a final LF when missing, the form
// in which a message and its retrieved copy compare equal.
func Normalise(m string) string {
	m = strings.ReplaceAll(m, "\r\n", "\n")
	if !strings.HasSuffix(m, "\n") {
		m += "\n"
	}
	return m
}

// StripHeader removes the first header field called name, with its
// continuation lines.
func StripHeader(m, name string) string {
	lines := strings.SplitAfter(m, "\n")
	for i, l := range lines {
		if l == "\n" || l == "" {
			break // end of the header
		}
		if strings.HasPrefix(strings.ToLower(l), strings.ToLower(name)+":") {
			j := i + 1
			for j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")) {
				j++
			}
			return strings.Join(append(lines[:i:i], lines[j:]...), "")
		}
	}
	return m
}
