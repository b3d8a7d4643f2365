package pop3client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrProtocol is wrapped by errors for a malformed or hostile reply: not
// starting with +OK or -ERR, over a length or count bound, a listing that is
// cut short or does not parse. The connection is closed and every later
// command fails.
var ErrProtocol = errors.New("pop3client: protocol error")

// ErrBusy is wrapped by the error of a command issued while the body of a
// Retr or Top is still open (not yet closed), or from within RetrMany's
// callback: the server is still sending that body, so a new command's reply
// could not be told from it.
var ErrBusy = errors.New("pop3client: a message body is still open")

// Error is an -ERR reply. The session stays usable.
type Error struct {
	// Command is the command that failed, without secrets ("PASS", not the
	// password; "AUTH PLAIN", not the credentials).
	Command string
	// Code is the extended response code inside "[ ]" (RFC 2449 §8,
	// RFC 3206), e.g. "IN-USE", "AUTH", "SYS/TEMP"; "" when there was none.
	Code string
	// Text is the human-readable rest of the reply.
	Text string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3client: ")
	b.WriteString(e.Command)
	b.WriteString(": -ERR")
	if e.Code != "" {
		b.WriteString(" [")
		b.WriteString(e.Code)
		b.WriteString("]")
	}
	if e.Text != "" {
		b.WriteString(" ")
		b.WriteString(e.Text)
	}
	return b.String()
}

// Temporary reports whether trying again later may succeed: the mailbox is
// locked by another session (IN-USE, RFC 2449 §8.1.2), logins are too
// frequent (LOGIN-DELAY, §8.1.1), or the server has a passing problem
// (SYS/TEMP, RFC 3206 §4). Codes are hierarchical, so SYS/TEMP/X counts too.
func (e *Error) Temporary() bool {
	levels := strings.Split(strings.ToUpper(e.Code), "/")
	switch levels[0] {
	case "IN-USE", "LOGIN-DELAY":
		return true
	case "SYS":
		return len(levels) > 1 && levels[1] == "TEMP"
	}
	return false
}

// parseError makes an *Error from the text after "-ERR ".
func parseError(cmd, text string) *Error {
	code, rest := splitRespCode(text)
	return &Error{Command: cmd, Code: code, Text: rest}
}

// splitRespCode separates an RFC 2449 §8 response code from the text:
//
//	resp-code = "[" resp-level *("/" resp-level) "]"
//	resp-level = 1*rchar
//	rchar = %x21-2E / %x30-5C / %x5E-7F   ; printable except "/" and "]"
//
// Text that only looks like a code (no closing bracket, an empty level) is
// left whole.
func splitRespCode(text string) (code, rest string) {
	if !strings.HasPrefix(text, "[") {
		return "", text
	}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		return "", text
	}
	code = text[1:end]
	for level := range strings.SplitSeq(code, "/") {
		if level == "" {
			return "", text
		}
		for i := 0; i < len(level); i++ {
			if c := level[i]; c < 0x21 || c > 0x7e {
				return "", text
			}
		}
	}
	return code, strings.TrimLeft(text[end+1:], " ")
}

// parseStatus splits a status line (RFC 1939 §3: "+OK" or "-ERR", then
// optionally a space and text). Anything else is an error describing why.
func parseStatus(line []byte) (ok bool, text string, err error) {
	s := string(line)
	for _, ind := range [...]string{"+OK", "-ERR"} {
		rest, found := strings.CutPrefix(s, ind)
		if !found {
			continue
		}
		if rest != "" && rest[0] != ' ' {
			break
		}
		return ind == "+OK", strings.TrimLeft(rest, " "), nil
	}
	return false, "", fmt.Errorf("reply %s is neither +OK nor -ERR", quote(line))
}

// checkLine refuses control characters other than tab in a status or
// listing line: no valid reply has them, and passed on they would end up in
// logs and terminals.
func checkLine(line []byte) error {
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("control character %#02x in line %s", c, quote(line))
		}
	}
	return nil
}

// quote shows a piece of a bad line in an error: quoted, so that it cannot
// forge log lines, and cut short, so that a huge line makes a short error.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// parseNum parses a message number: a positive decimal (RFC 1939 §5: numbers
// start at 1). Only digits: strconv alone would take "+5".
func parseNum(s string) (int, error) {
	if !allDigits(s) {
		return 0, fmt.Errorf("message number %s is not a positive decimal", strconv.Quote(s))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("message number %s out of range", strconv.Quote(s))
	}
	return n, nil
}

// parseSize parses an octet count or message count: a non-negative decimal.
func parseSize(s string) (int64, error) {
	if !allDigits(s) {
		return 0, fmt.Errorf("size %s is not a decimal number", strconv.Quote(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %s out of range", strconv.Quote(s))
	}
	return n, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseScan parses a scan listing, the line of a LIST listing or the text
// of a LIST n reply. RFC 1939 §5 LIST: "message-number SP size", and "this
// memo makes no requirement on what follows the message size", so further
// fields are ignored.
func parseScan(s string) (MessageInfo, error) {
	f := fields(s)
	if len(f) < 2 {
		return MessageInfo{}, fmt.Errorf("scan listing %s is not \"number size\"", strconv.Quote(s))
	}
	n, err := parseNum(f[0])
	if err != nil {
		return MessageInfo{}, err
	}
	size, err := parseSize(f[1])
	if err != nil {
		return MessageInfo{}, err
	}
	return MessageInfo{Num: n, Size: size}, nil
}

// parseUIDL parses a unique-id listing (RFC 1939 §7: "message-number SP
// unique-id"). A unique-id cannot contain spaces, so a third field means
// the line does not parse. The second result reports a unique-id outside
// the RFC's 1-70 characters in 0x21-0x7E: accepted, because real servers
// send such ids and refusing them would make the mailbox unreadable.
func parseUIDL(s string) (MessageInfo, bool, error) {
	f := fields(s)
	if len(f) != 2 {
		return MessageInfo{}, false, fmt.Errorf("unique-id listing %s is not \"number unique-id\"", strconv.Quote(s))
	}
	n, err := parseNum(f[0])
	if err != nil {
		return MessageInfo{}, false, err
	}
	uid := f[1]
	odd := len(uid) > 70
	for i := 0; i < len(uid); i++ {
		if uid[i] < 0x21 || uid[i] > 0x7e {
			odd = true
		}
	}
	return MessageInfo{Num: n, UIDL: uid}, odd, nil
}

// parseStat parses the text of a STAT reply (RFC 1939 §5: "nn mm", the
// message count and the maildrop size; anything after is ignored).
func parseStat(s string) (int, int64, error) {
	f := fields(s)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("drop listing %s is not \"count size\"", strconv.Quote(s))
	}
	count, err := parseSize(f[0])
	if err != nil {
		return 0, 0, err
	}
	if count > int64(^uint(0)>>1) {
		return 0, 0, fmt.Errorf("message count %d out of range", count)
	}
	size, err := parseSize(f[1])
	if err != nil {
		return 0, 0, err
	}
	return int(count), size, nil
}

// fields splits s at runs of spaces and tabs. Unlike strings.Fields it
// leaves other bytes alone: a unique-id with a U+00A0 in it is one field.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}
