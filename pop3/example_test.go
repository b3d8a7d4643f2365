package pop3_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/popbox/popbox/pop3"
)

// A stored message with LF line ends and a line that starts with a dot is
// sent as a multi-line response: CRLF line ends, the dot line stuffed, a
// final CRLF added and the ".CRLF" terminator.
func ExampleDotWriter() {
	var out strings.Builder
	bw := bufio.NewWriter(&out)
	dw := pop3.NewDotWriter(bw)
	fmt.Fprint(dw, "Subject: hi\n\n.hidden\nbye")
	dw.Close()
	bw.Flush()
	fmt.Printf("%q\n", out.String())
	// Output:
	// "Subject: hi\r\n\r\n..hidden\r\nbye\r\n.\r\n"
}

// WireSize is the size STAT and LIST announce: the message after line-end
// conversion, without stuffing or terminator.
func ExampleWireSize() {
	for _, msg := range []string{"", "a\r\n", "a\n", "a", ".\n"} {
		n, err := pop3.WireSize(strings.NewReader(msg))
		if err != nil {
			panic(err)
		}
		fmt.Printf("%q: %d\n", msg, n)
	}
	// Output:
	// "": 0
	// "a\r\n": 3
	// "a\n": 3
	// "a": 3
	// ".\n": 3
}

// ReadLine bounds what a client can make the server buffer: an over-long
// line is skipped and the next command is read normally.
func ExampleReadLine() {
	in := "USER bob\r\n" + strings.Repeat("A", 300) + "\r\nquit\n"
	r := bufio.NewReader(strings.NewReader(in))
	for {
		line, err := pop3.ReadLine(r, pop3.MaxCommandLine)
		switch {
		case errors.Is(err, pop3.ErrLineTooLong):
			fmt.Println("-ERR line too long")
			continue
		case err != nil:
			fmt.Println(err)
			return
		}
		cmd, err := pop3.ParseCommand(line)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Println(cmd.Name, cmd.Args)
	}
	// Output:
	// USER [bob]
	// -ERR line too long
	// QUIT []
	// EOF
}
