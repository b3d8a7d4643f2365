package dest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// exTempFail is sysexits.h's EX_TEMPFAIL: the MDA asks to be retried.
	exTempFail = 75
	// mdaTailBytes bounds what is kept of the MDA's output for the error.
	mdaTailBytes = 4 << 10
	// mdaTailLines is how many of its last lines the error quotes.
	mdaTailLines = 5
	// mdaWaitDelay: after the process group is killed, how long to wait
	// for a grandchild that escaped it to close our pipes.
	mdaWaitDelay = 5 * time.Second
)

// mdaDest pipes each message to a command.
type mdaDest struct {
	command string
	opts    Options

	mu     sync.Mutex
	closed bool
}

// Deliver runs the command under /bin/sh -c with the message on stdin (LF
// line ends, like procmail and maildrop expect) and POPBOX_KEY,
// POPBOX_SENDER and POPBOX_RECIPIENT added to the environment. The values
// go into the environment rather than into the command line so that
// nothing from the remote server is ever parsed by the shell.
//
// The command runs in its own process group, killed whole (SIGKILL) when
// MDATimeout or ctx ends or when reading the message fails; a message the
// MDA never saw the end of must not be delivered, and closing its stdin
// normally would present a truncated message as complete.
func (d *mdaDest) Deliver(ctx context.Context, r io.Reader, m Message) error {
	if err := checkKey(m.Key); err != nil {
		return err
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.MDATimeout)
	defer cancel()

	cmd := exec.Command("/bin/sh", "-c", d.command)
	cmd.Env = append(withoutPopboxVars(os.Environ()),
		"POPBOX_KEY="+m.Key, "POPBOX_SENDER="+m.Sender, "POPBOX_RECIPIENT="+m.Recipient)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{max: mdaTailBytes}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = mdaWaitDelay
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("dest: mda: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dest: mda: starting %q: %w", d.command, err)
	}
	killGroup := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Watch ctx ourselves rather than through exec.CommandContext, whose
	// kill reaches only the shell, not the programs it started.
	stop := context.AfterFunc(ctx, killGroup)
	defer stop()

	lf := &lfWriter{w: stdin}
	copyErr := copyCtx(ctx, lf, &limitReader{r: r, max: d.opts.MaxMessageSize})
	if copyErr == nil {
		copyErr = lf.Flush()
	}
	var pipeErr error
	if copyErr != nil && !isPipeErr(copyErr) {
		killGroup()
	} else if copyErr != nil {
		pipeErr, copyErr = copyErr, nil // the MDA stopped reading: its exit status tells why
	}
	stdin.Close()
	waitErr := cmd.Wait()
	stop()

	switch {
	case waitErr == nil && copyErr == nil && pipeErr == nil:
		// Success stands even if the deadline passed meanwhile: reporting
		// it as a failure would make the engine deliver the message twice.
		return nil
	case copyErr != nil:
		if errors.Is(copyErr, context.DeadlineExceeded) || errors.Is(copyErr, context.Canceled) {
			return fmt.Errorf("%w: dest: mda %q killed while receiving the message: %w", ErrTemporary, d.command, context.Cause(ctx))
		}
		return fmt.Errorf("dest: mda %q killed, message not fully read: %w", d.command, copyErr)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: dest: mda %q killed: %w (timeout %v)%s", ErrTemporary, d.command, context.Cause(ctx), d.opts.MDATimeout, out.suffix())
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("dest: mda %q killed by signal %v%s", d.command, ws.Signal(), out.suffix())
		}
		if exitErr.ExitCode() == exTempFail {
			return fmt.Errorf("%w: dest: mda %q exited with %d (EX_TEMPFAIL)%s", ErrTemporary, d.command, exTempFail, out.suffix())
		}
		return fmt.Errorf("dest: mda %q exited with %d%s", d.command, exitErr.ExitCode(), out.suffix())
	}
	if waitErr != nil {
		return fmt.Errorf("dest: mda %q: %w%s", d.command, waitErr, out.suffix())
	}
	if pipeErr != nil {
		// Exit 0 without reading the whole message: whatever it stored is
		// not the message, so this is no delivery.
		return fmt.Errorf("dest: mda %q exited 0 without reading the whole message: %w%s", d.command, pipeErr, out.suffix())
	}
	return nil
}

// isPipeErr: the MDA closed its stdin (exited, or stopped reading).
func isPipeErr(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)
}

// withoutPopboxVars drops inherited POPBOX_* values we set ourselves, so
// the child sees exactly one of each.
func withoutPopboxVars(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "POPBOX_KEY="), strings.HasPrefix(kv, "POPBOX_SENDER="), strings.HasPrefix(kv, "POPBOX_RECIPIENT="):
		default:
			out = append(out, kv)
		}
	}
	return out
}

func (d *mdaDest) Has(ctx context.Context, key string) (bool, error) {
	return false, ErrUnknowable
}

func (d *mdaDest) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return nil
}

// tailBuffer keeps the last max octets written to it: an MDA may print
// without end, and only its last words explain a failure.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		p = p[len(p)-t.max:]
		t.buf = t.buf[:0]
		t.cut = true
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// suffix is ": " and the last lines of output, or "" if there was none.
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimRight(t.buf, "\r\n\t "))
	if t.cut {
		// The first line is probably a fragment.
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > mdaTailLines {
		lines = lines[len(lines)-mdaTailLines:]
	}
	return ": " + strings.Join(lines, " | ")
}
