package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// certFiles writes a new certificate and key into dir under names starting
// with prefix and returns their paths, a pool trusting the certificate and
// its fingerprint.
func certFiles(t *testing.T, dir, prefix string) (certFile, keyFile string, roots *x509.CertPool, fp string) {
	t.Helper()
	certPEM, keyPEM, fp := newCertPair(t)
	certFile, keyFile = filepath.Join(dir, prefix+"-cert.pem"), filepath.Join(dir, prefix+"-key.pem")
	writeFile(t, certFile, string(certPEM))
	writeFile(t, keyFile, string(keyPEM))
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots, fp
}

// firstLine connects to addr and returns the server's first line.
func firstLine(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the greeting of %s: %v", addr, err)
	}
	return c, strings.TrimSuffix(l, "\r\n")
}

// TestServeReloadConfig: SIGHUP applies a changed certificate and
// max_connections_per_ip while a logged-in session carries on, logs a
// changed key that needs a restart, and refuses an invalid configuration
// whole, keeping the one in force.
func TestServeReloadConfig(t *testing.T) {
	t.Parallel()
	dir, data := t.TempDir(), t.TempDir()
	addUser(t, data, "alice", "alice-pw")
	deliverMsg(t, data, "alice", "Subject: one\n\nbody one\n")
	cert1, key1, roots1, fp1 := certFiles(t, dir, "one")
	cert2, key2, roots2, fp2 := certFiles(t, dir, "two")
	cfgFile := filepath.Join(dir, "popbox.toml")
	config := func(cert, key, perIP, hostname string) string {
		return fmt.Sprintf("[pop3]\nauth_failure_delay = \"0s\"\nmax_connections_per_ip = %s\nhostname = %q\n[tls]\ncert_file = %q\nkey_file = %q\n",
			perIP, hostname, cert, key)
	}
	writeFile(t, cfgFile, config(cert1, key1, "10", "one.test"))
	p := startServe(t, binOpts{}, append([]string{"-c", cfgFile, "--data", data}, listenArgs...)...)

	held, fp := dialPOP3S(t, p.tls, roots1)
	if fp != fp1 {
		t.Fatalf("certificate before the reload %s, want %s", fp, fp1)
	}
	held.login("alice", "alice-pw")
	stat := held.cmd("STAT")

	replaceFile(t, cfgFile, []byte(config(cert2, key2, "2", "two.test")))
	p.signal(syscall.SIGHUP)
	p.waitLog(ioTimeout, `msg="configuration reloaded"`, func(r logRecord) bool {
		return r["msg"] == "configuration reloaded" && r["max_connections_per_ip"] == "2"
	})
	p.waitLog(ioTimeout, "pop3.hostname needs a restart", func(r logRecord) bool {
		return r["level"] == "WARN" && strings.Contains(r["msg"], "needs a restart") && r["key"] == "pop3.hostname"
	})

	// A new connection gets the new certificate (the held one is the
	// first of 127.0.0.1's two sessions now allowed).
	second, fp := dialPOP3S(t, p.tls, roots2)
	if fp != fp2 {
		t.Errorf("certificate after the reload %s, want %s", fp, fp2)
	}
	if _, l := firstLine(t, p.plain); l != "-ERR [SYS/TEMP] too many connections from your address" {
		t.Errorf("third connection from 127.0.0.1 with max_connections_per_ip = 2: %q", l)
	}

	// The session from before the reload goes on.
	if got := held.cmd("STAT"); got != stat {
		t.Errorf("STAT on the held session after the reload: %q, want %q", got, stat)
	}
	if got := held.cmd("RETR 1"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("RETR 1 on the held session: %q", got)
	} else if body := strings.Join(held.body(), "\n"); !strings.Contains(body, "body one") {
		t.Errorf("RETR 1 on the held session: %q", body)
	}
	if got := held.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT on the held session: %q", got)
	}
	held.expectClosed()

	// An invalid configuration is refused whole: neither its certificate
	// nor its other values apply.
	replaceFile(t, cfgFile, []byte(config(cert1, key1, "0", "two.test")))
	p.signal(syscall.SIGHUP)
	rec := p.waitLog(ioTimeout, `msg="reloading configuration failed, ..."`, func(r logRecord) bool {
		return r["level"] == "ERROR" && strings.HasPrefix(r["msg"], "reloading configuration failed")
	})
	if !strings.Contains(rec["err"], "max_connections_per_ip") {
		t.Errorf("the error names %q, want max_connections_per_ip", rec["err"])
	}
	third, fp := dialPOP3S(t, p.tls, roots2)
	if fp != fp2 {
		t.Errorf("certificate after a refused reload %s, want still %s", fp, fp2)
	}
	if _, l := firstLine(t, p.plain); l != "-ERR [SYS/TEMP] too many connections from your address" {
		t.Errorf("third connection after a refused reload: %q, want max_connections_per_ip = 2 still", l)
	}
	for _, c := range []*pop3Conn{second, third} {
		c.cmd("QUIT")
	}
	p.stop()
}

// TestCheckConfig: check-config reports every configuration problem with
// its line, and the file problems, with EX_CONFIG; a good file gets
// "configuration OK" and a summary, and nothing is created.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, _, _ := certFiles(t, dir, "ok")
	_, otherKey, _, _ := certFiles(t, dir, "other")
	data := filepath.Join(dir, "not-yet")
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, fmt.Sprintf("data_dir = %q\nstore = \"postgres://u:secret@db.invalid/mail\"\n[tls]\ncert_file = %q\nkey_file = %q\n", data, cert, key))
	r := runCLI(t, "", "-c", good, "check-config")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "configuration OK") {
		t.Fatalf("good file: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"pop3 127.0.0.1:1110", "mail store: postgres://u:xxxxx@db.invalid/mail", "not connected"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout+r.Stderr, "secret") {
		t.Errorf("the password shows:\n%s%s", r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("check-config created the data directory (%v)", err)
	}

	syntax := filepath.Join(dir, "syntax.toml")
	writeFile(t, syntax, "[pop3]\nidle_timeout = \"5x\"\nbogus = 1\n")
	r = runCLI(t, "", "-c", syntax, "check-config")
	if r.Code != exitConfig {
		t.Errorf("invalid values: exit %d, want %d", r.Code, exitConfig)
	}
	for _, want := range []string{syntax + ":2: pop3.idle_timeout", syntax + ":3: pop3.bogus: unknown key"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
		}
	}

	files := filepath.Join(dir, "files.toml")
	writeFile(t, files, fmt.Sprintf("data_dir = %q\n[tls]\ncert_file = %q\nkey_file = %q\nclient_ca_file = %q\n", cert, cert, otherKey, otherKey))
	r = runCLI(t, "", "-c", files, "check-config")
	if r.Code != exitConfig {
		t.Errorf("file problems: exit %d, want %d", r.Code, exitConfig)
	}
	for _, want := range []string{"tls.cert_file: ", "private key does not match", "tls.client_ca_file: ", "data_dir: " + cert + " is not a directory"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
}

// TestServeSocketActivation runs serve as systemd would: with listening
// sockets passed as fds 3 to 5 (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID
// set to serve's pid by a shell that execs it) and a NOTIFY_SOCKET, which
// must see READY=1, RELOADING=1 then READY=1 around a SIGHUP, and
// STOPPING=1 at SIGTERM.
func TestServeSocketActivation(t *testing.T) {
	t.Parallel()
	dir, data := t.TempDir(), t.TempDir()
	addUser(t, data, "alice", "alice-pw")
	var files []*os.File
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close() // the dup in f keeps the socket
		files = append(files, f)
	}
	lmtpPath := filepath.Join(dir, "lmtp.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: lmtpPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	uf, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	ul.Close()
	files = append(files, uf)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()

	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	next := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		for {
			notify.SetReadDeadline(time.Now().Add(startTimeout))
			n, err := notify.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", want, err)
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "WATCHDOG=1") {
				continue
			}
			if !strings.HasPrefix(msg, want) {
				t.Fatalf("NOTIFY_SOCKET got %q, want %s", msg, want)
			}
			if want == "RELOADING=1" && !strings.Contains(msg, "MONOTONIC_USEC=") {
				t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
			}
			return
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	// LISTEN_PID must be serve's own pid: the shell's, which exec keeps.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`,
		popboxBin, "serve", "--allow-root", "--data", data)
	cmd.ExtraFiles = files
	stderr := newLineLog()
	cmd.Stderr = stderr
	cmd.Env = childEnv("LISTEN_FDS=3", "LISTEN_FDNAMES=pop3:pop3s:lmtp", "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=2000000")
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	}()

	next("READY=1")
	c := dialPOP3(t, addrs[0])
	c.login("alice", "alice-pw")
	if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT over the activated pop3 socket: %q", got)
	}
	roots, _ := readCert(t, filepath.Join(data, "tls", "cert.pem"))
	s, _ := dialPOP3S(t, addrs[1], roots)
	s.cmd("QUIT")
	lc, err := net.DialTimeout("unix", lmtpPath, ioTimeout)
	if err != nil {
		t.Fatalf("dialing the activated lmtp socket: %v", err)
	}
	lc.SetReadDeadline(time.Now().Add(ioTimeout))
	if l, err := bufio.NewReader(lc).ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Errorf("LMTP greeting on the activated socket: %q, %v", l, err)
	}
	lc.Close()
	for _, want := range []string{"proto=pop3 addr=" + addrs[0], "proto=pop3s addr=" + addrs[1], "proto=lmtp addr=" + lmtpPath} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}

	cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(stopTimeout):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
