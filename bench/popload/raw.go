package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// maildirFiles lists the message files of a Maildir's new/ and cur/ in name
// order.
func maildirFiles(dir string) ([]string, error) {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				out = append(out, filepath.Join(dir, sub, e.Name()))
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// modeRawCopy measures the ceiling for scenario 1: the same message files
// sent over one loopback TCP connection by a separate process (popload
// raw-serve) with nothing else to do, received in 256 KiB reads with no
// parsing at all (the POP3 client parses lines, so this ceiling is strict).
// Mode lockstep is the ceiling of a lock-step loop: the client asks for
// each file with a line and reads it whole before asking for the next.
func modeRawCopy(o *opts) error {
	if o.dir == "" {
		return errors.New("-dir required")
	}
	files, err := maildirFiles(o.dir)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(exe, "raw-serve", "-dir", o.dir, "-mode", o.rawMode)
	srv.Stderr = os.Stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("raw-serve: %w", err)
	}
	c, err := net.Dial("tcp", strings.TrimSpace(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(o.timeout))
	buf := make([]byte, 256<<10)
	var total int64
	t0 := time.Now()
	if o.rawMode == "lockstep" {
		// One request per file, each answered before the next is sent:
		// the round trips of a lock-step RETR loop with nothing else.
		for _, name := range files {
			st, err := os.Stat(name)
			if err != nil {
				return err
			}
			if _, err := c.Write([]byte("next\n")); err != nil {
				return err
			}
			for left := st.Size(); left > 0; {
				k, err := c.Read(buf[:min(int64(len(buf)), left)])
				total += int64(k)
				left -= int64(k)
				if err != nil {
					return err
				}
			}
		}
	} else if _, err := c.Write([]byte("go\n")); err != nil {
		return err
	}
	for o.rawMode != "lockstep" {
		k, err := c.Read(buf)
		total += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	secs := time.Since(t0).Seconds()
	if err := srv.Wait(); err != nil {
		return fmt.Errorf("raw-serve: %w", err)
	}
	st := srv.ProcessState
	cpu := (st.UserTime() + st.SystemTime()).Seconds()
	result(o, "mode=rawcopy send=%s msgs=%d bytes=%d secs=%.3f msgs_per_s=%.1f MB_per_s=%.2f server_cpu_ms_per_msg=%.3f",
		o.rawMode, len(files), total, secs, float64(len(files))/secs, float64(total)/1e6/secs, cpu*1000/float64(len(files)))
	return nil
}

// cmdRawServe listens on a loopback port, prints its address, waits for
// one client to send a line, sends it every file and closes.
func cmdRawServe(args []string) error {
	fs := flag.NewFlagSet("raw-serve", flag.ExitOnError)
	dir := fs.String("dir", "", "Maildir")
	mode := fs.String("mode", "sendfile", "sendfile | copy | lockstep (one request line per file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := maildirFiles(*dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	ln.Close()
	defer c.Close()
	br := bufio.NewReader(c)
	if *mode != "lockstep" {
		if _, err := br.ReadString('\n'); err != nil {
			return err
		}
	}
	tc := c.(*net.TCPConn)
	buf := make([]byte, 64<<10)
	for _, name := range files {
		if *mode == "lockstep" {
			if _, err := br.ReadString('\n'); err != nil {
				return err
			}
		}
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		if *mode == "copy" || *mode == "lockstep" {
			// Hide ReadFrom/WriteTo so that io.CopyBuffer uses buf.
			_, err = io.CopyBuffer(struct{ io.Writer }{tc}, struct{ io.Reader }{f}, buf)
		} else {
			_, err = tc.ReadFrom(f) // sendfile(2)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return tc.CloseWrite()
}
