package pop3

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Command is one parsed client command.
type Command struct {
	Name string   // upper case, e.g. "RETR"
	Args []string // space-separated arguments, possibly empty
}

// Errors from ParseCommand.
var (
	ErrEmptyCommand  = errors.New("pop3: empty command")
	ErrBadKeyword    = errors.New("pop3: malformed command keyword")
	ErrBadArgument   = errors.New("pop3: malformed argument")
	ErrTooManyArgs   = errors.New("pop3: too many arguments")
	ErrInvalidNumber = errors.New("pop3: invalid number")
)

// MaxArgs bounds the arguments a command may carry; no POP3 command takes
// more than two (TOP msg n), AUTH takes a mechanism and an initial response.
const MaxArgs = 4

// ParseCommand splits a command line (without its line end).
//
// RFC 1939 §3: a keyword of three or four printable characters, then
// arguments separated by single spaces. Keywords are case-insensitive. We
// accept keywords of 1 to 16 letters or digits (so extensions and typos get a
// clean "unknown command" instead of a syntax error), tolerate repeated and
// trailing spaces, which several clients send, and refuse control
// characters (NUL included) and invalid UTF-8 anywhere in the line (RFC 6856
// allows UTF-8 arguments, nothing else above 0x7F).
func ParseCommand(line []byte) (Command, error) {
	if len(line) == 0 {
		return Command{}, ErrEmptyCommand
	}
	if !utf8.Valid(line) {
		return Command{}, ErrBadArgument
	}
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return Command{}, ErrBadArgument
		}
	}
	// Split on SPACE only: strings.Fields would also split on Unicode
	// spaces (U+0085, U+00A0, U+3000...) and so break up UTF-8 arguments.
	fields := strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' })
	if len(fields) == 0 {
		return Command{}, ErrEmptyCommand
	}
	kw := fields[0]
	if len(kw) > 16 {
		return Command{}, ErrBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return Command{}, ErrBadKeyword
		}
	}
	if len(fields)-1 > MaxArgs {
		return Command{}, ErrTooManyArgs
	}
	return Command{Name: strings.ToUpper(kw), Args: fields[1:]}, nil
}

// ParseNumber parses a message number or line count: decimal digits only, no
// sign, at most 9 digits so it always fits an int (RFC 1939 §3: "msg" is a
// message number; "RETR 99999999999999999999" must get a clean -ERR).
func ParseNumber(s string) (int, error) {
	if len(s) == 0 || len(s) > 9 {
		return 0, ErrInvalidNumber
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrInvalidNumber
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, ErrInvalidNumber
	}
	return n, nil
}
