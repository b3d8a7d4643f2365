// Package interop holds the interoperability tests of popbox's POP3 server:
// they prove that the real binary works with real third-party clients, and
// with a strict hand-written client, over plain POP3, STLS and POP3S.
//
// The package has no code of its own; everything is in its tests, which run
// under plain `go test ./...`:
//
//   - TestMain builds cmd/popbox once. Each test then starts its own server
//     in a fresh data directory, exactly as an operator would (`popbox serve`
//     with loopback listeners on port 0), learns the ports from the server's
//     start-up log lines, and stops it with SIGTERM, failing if it does not
//     exit promptly and cleanly.
//   - The mail is generated in Go, deterministically, and delivered with
//     `popbox deliver`. It is chosen to hit the places where POP3 servers
//     go wrong: byte-stuffing (lines starting with '.', lone '.' lines at the
//     start and end of a body), line ends (bare LF, CRLF, mixed, no final
//     newline), 8-bit text, a 5000-octet line, a 5 MB message and a message
//     with headers only.
//   - The third-party clients (curl, Python's poplib, fetchmail, mpop,
//     getmail6) are driven by the shell scripts in testdata/, taken from the
//     project's shared POP3 harness, so that the same scripts that measured
//     the Dovecot baseline judge popbox. Each script fetches the whole
//     mailbox without deleting anything and compares what the client stored
//     with a manifest written from the generated mail, after normalising
//     line ends (testdata/maildigest.py). Clients verify the server's
//     self-signed certificate wherever they can.
//   - A raw client written here checks what the third-party clients are too
//     lenient to notice: every octet of every RETR against the delivered
//     message, exact LIST sizes, stable UIDLs, and that DELE takes effect on
//     QUIT and only on QUIT.
//
// A client that is not installed makes its subtests skip, except under CI
// (CI=true), where the missing tool and its Debian package are reported as a
// failure, so that CI cannot go green by testing nothing.
package interop
