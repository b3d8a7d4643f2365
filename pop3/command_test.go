package pop3

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Command
		err  error
	}{
		{"upper case", "STAT", Command{Name: "STAT"}, nil},
		{"lower case", "stat", Command{Name: "STAT"}, nil},
		{"mixed case", "StAt", Command{Name: "STAT"}, nil},
		{"one arg", "RETR 1", Command{Name: "RETR", Args: []string{"1"}}, nil},
		{"two args", "top 1 10", Command{Name: "TOP", Args: []string{"1", "10"}}, nil},
		{"args keep their case", "USER Bob", Command{Name: "USER", Args: []string{"Bob"}}, nil},
		{"multiple spaces", "TOP  1   10", Command{Name: "TOP", Args: []string{"1", "10"}}, nil},
		{"leading and trailing spaces", "  LIST 2  ", Command{Name: "LIST", Args: []string{"2"}}, nil},
		{"max args", "AUTH a b c d", Command{Name: "AUTH", Args: []string{"a", "b", "c", "d"}}, nil},
		{"too many args", "AUTH a b c d e", Command{}, ErrTooManyArgs},
		{"digits in keyword", "X1", Command{Name: "X1"}, nil},
		{"keyword of 16", strings.Repeat("k", 16), Command{Name: strings.Repeat("K", 16)}, nil},
		{"keyword of 17", strings.Repeat("k", 17), Command{}, ErrBadKeyword},
		{"keyword of 17 with args", strings.Repeat("k", 17) + " 1", Command{}, ErrBadKeyword},
		{"keyword with dot", "US.ER bob", Command{}, ErrBadKeyword},
		{"keyword with underscore", "US_ER", Command{}, ErrBadKeyword},
		{"keyword symbol", "* 1", Command{}, ErrBadKeyword},
		{"keyword non-ASCII letter", "ÚSER bob", Command{}, ErrBadKeyword},
		{"valid UTF-8 arg", "USER jürgen", Command{Name: "USER", Args: []string{"jürgen"}}, nil},
		{"valid UTF-8 4-byte arg", "PASS 🔑x", Command{Name: "PASS", Args: []string{"🔑x"}}, nil},
		// Arguments are separated by SPACE only (RFC 1939 §3); Unicode
		// spaces inside a UTF-8 argument are part of it.
		{"NBSP inside arg", "USER a\u00a0b", Command{Name: "USER", Args: []string{"a\u00a0b"}}, nil},
		{"ideographic space inside arg", "PASS 秘\u3000密", Command{Name: "PASS", Args: []string{"秘\u3000密"}}, nil},
		{"em space after keyword", "USER\u2003bob", Command{}, ErrBadKeyword},
		{"NEL after keyword", "USER\u0085bob", Command{}, ErrBadKeyword},
		{"NEL before number", "\u00850", Command{}, ErrBadKeyword}, // found by FuzzParseCommand
		{"invalid UTF-8 arg", "USER \xff", Command{}, ErrBadArgument},
		{"truncated UTF-8 arg", "USER j\xc3", Command{}, ErrBadArgument},
		{"overlong UTF-8 NUL", "USER \xc0\x80", Command{}, ErrBadArgument},
		{"UTF-16 surrogate", "USER \xed\xa0\x80", Command{}, ErrBadArgument},
		{"invalid UTF-8 keyword", "\xffUSER", Command{}, ErrBadArgument},
		{"NUL in arg", "USER a\x00b", Command{}, ErrBadArgument},
		{"NUL alone", "\x00", Command{}, ErrBadArgument},
		{"NUL in keyword", "US\x00ER", Command{}, ErrBadArgument},
		{"tab separator", "USER\tbob", Command{}, ErrBadArgument},
		{"CR", "QUIT\r", Command{}, ErrBadArgument},
		{"LF", "QUIT\n", Command{}, ErrBadArgument},
		{"escape", "USER \x1b[31m", Command{}, ErrBadArgument},
		{"DEL", "USER a\x7f", Command{}, ErrBadArgument},
		{"empty", "", Command{}, ErrEmptyCommand},
		{"only spaces", "   ", Command{}, ErrEmptyCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.line))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("ParseCommand(%q) error = %v, want %v", tt.line, err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseCommand(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}

func TestParseCommandDoesNotAliasInput(t *testing.T) {
	// ReadLine returns a slice into the bufio buffer; the Command must stay
	// valid after that buffer is reused.
	line := []byte("user bob")
	cmd, err := ParseCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	copy(line, "XXXXXXXX")
	if diff := cmp.Diff(Command{Name: "USER", Args: []string{"bob"}}, cmd); diff != "" {
		t.Errorf("Command changed with its input (-want +got):\n%s", diff)
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{"0", 0, nil},
		{"1", 1, nil},
		{"42", 42, nil},
		{"007", 7, nil},
		{"999999999", 999999999, nil},
		{"000000001", 1, nil},
		{"1000000000", 0, ErrInvalidNumber},
		{"0000000001", 0, ErrInvalidNumber},
		{"99999999999999999999", 0, ErrInvalidNumber},
		{"-1", 0, ErrInvalidNumber},
		{"+1", 0, ErrInvalidNumber},
		{"1a", 0, ErrInvalidNumber},
		{"a1", 0, ErrInvalidNumber},
		{"1.0", 0, ErrInvalidNumber},
		{"0x10", 0, ErrInvalidNumber},
		{"1_000", 0, ErrInvalidNumber},
		{" 1", 0, ErrInvalidNumber},
		{"1 ", 0, ErrInvalidNumber},
		{"١", 0, ErrInvalidNumber}, // ARABIC-INDIC DIGIT ONE
		{"", 0, ErrInvalidNumber},
	}
	for _, tt := range tests {
		got, err := ParseNumber(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("ParseNumber(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func isKeywordByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"", " ", "STAT", "stat", "RETR 1", "TOP 1 10", "TOP  1   10  ", "AUTH PLAIN dGVzdA==",
		"AUTH a b c d", "AUTH a b c d e", "USER jürgen", "USER a\u00a0b", "PASS 秘\u3000密",
		"USER\u2003bob", "USER \xff", "USER a\x00b", "USER\tbob", "QUIT\r", "US.ER",
		strings.Repeat("k", 16), strings.Repeat("k", 17) + " x", "ß", "ǅ x", "İ",
	} {
		f.Add([]byte(s))
	}
	sentinels := []error{ErrEmptyCommand, ErrBadKeyword, ErrBadArgument, ErrTooManyArgs}
	f.Fuzz(func(t *testing.T, line []byte) {
		in := string(line) // line itself must not be modified by the parser
		cmd, err := ParseCommand(line)
		if string(line) != in {
			t.Fatalf("ParseCommand modified its input: %q -> %q", in, line)
		}
		if err != nil {
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("ParseCommand(%q) returned unexpected error %v", in, err)
			}
			if cmd.Name != "" || cmd.Args != nil {
				t.Fatalf("ParseCommand(%q) returned %+v with error %v", in, cmd, err)
			}
			return
		}
		if cmd.Name == "" || len(cmd.Name) > 16 || cmd.Name != strings.ToUpper(cmd.Name) {
			t.Fatalf("ParseCommand(%q): bad Name %q", in, cmd.Name)
		}
		for i := 0; i < len(cmd.Name); i++ {
			if !isKeywordByte(cmd.Name[i]) {
				t.Fatalf("ParseCommand(%q): Name %q has byte %q", in, cmd.Name, cmd.Name[i])
			}
		}
		if len(cmd.Args) > MaxArgs {
			t.Fatalf("ParseCommand(%q): %d args, max %d", in, len(cmd.Args), MaxArgs)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.Contains(a, " ") || !utf8.ValidString(a) {
				t.Fatalf("ParseCommand(%q): bad arg %q", in, a)
			}
		}
		// Only SPACE separates: dropping the spaces from the line leaves the
		// keyword (in its original case) followed by the arguments.
		stripped := strings.ReplaceAll(in, " ", "")
		if len(stripped) < len(cmd.Name) ||
			!strings.EqualFold(stripped[:len(cmd.Name)], cmd.Name) ||
			stripped[len(cmd.Name):] != strings.Join(cmd.Args, "") {
			t.Fatalf("ParseCommand(%q) = %q %q: not the line's space-separated words", in, cmd.Name, cmd.Args)
		}
		// The canonical form parses to the same command.
		joined := strings.Join(append([]string{cmd.Name}, cmd.Args...), " ")
		again, err := ParseCommand([]byte(joined))
		if err != nil {
			t.Fatalf("ParseCommand(%q) ok but re-joined %q fails: %v", in, joined, err)
		}
		if diff := cmp.Diff(cmd, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-parse of %q differs (-first +again):\n%s", joined, diff)
		}
	})
}
