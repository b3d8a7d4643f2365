package config

import (
	"errors"
	"strconv"
	"strings"
)

// Kinds of configuration error; test with errors.Is.
var (
	// ErrSyntax: the file is not valid TOML.
	ErrSyntax = errors.New("config: TOML syntax error")
	// ErrUnknownKey: a key Config does not have (often a typo).
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrWrongType: a known key with a value of the wrong TOML type.
	ErrWrongType = errors.New("config: wrong type")
	// ErrInvalidValue: a value of the right type that is not allowed.
	ErrInvalidValue = errors.New("config: invalid value")
	// ErrTooLarge: the file exceeds MaxFileSize, or nests arrays and inline
	// tables or dotted keys deeper than Parse allows.
	ErrTooLarge = errors.New("config: file too large")
)

// Error is one problem in a configuration. Parse and Validate return these,
// several joined with errors.Join when there is more than one.
type Error struct {
	File string // file name given to Parse or Load; "" from Validate
	Line int    // 1-based line in File; 0 when unknown or not from a file
	Key  string // dotted key ("pop3.idle_timeout"); "" for syntax errors
	Msg  string // what is wrong, for people
	Kind error  // ErrSyntax, ErrUnknownKey, ErrWrongType, ErrInvalidValue or ErrTooLarge
	Err  error  // underlying cause (a toml.ParseError), or nil
}

// Error formats as "file:line: key: msg", leaving out the parts not known,
// the form editors and compilers use so that tools can jump to the line.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is match Kind and, if set, the underlying cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}
