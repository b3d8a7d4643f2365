// Command popload is the load generator of bench/compare-dovecot.sh. It
// drives any POP3 server (popbox, Dovecot) and LMTP server the same way and
// prints one line per measurement:
//
//	RESULT key=value key=value ...
//
// which the script collects and `popload table` turns into medians and
// popbox/Dovecot ratios.
//
// Subcommands (popload SUBCOMMAND -h lists the flags):
//
//	gen         write deterministic RFC 5322 test messages into Maildir(s)
//	hash        print popbox's default argon2id hash of a password, {ARGON2ID}-prefixed
//	throughput  one session RETRs every message (lock-step or pipelined)
//	rawcopy     the same files over a bare loopback TCP connection (the ceiling)
//	sessions    K workers loop full sessions (login, STAT, UIDL, RETR all, QUIT)
//	idle        open N logged-in sessions, hold them, measure server memory
//	statuidl    login -> STAT -> UIDL -> QUIT latency, warm or cold
//	login       K workers loop connect, login, QUIT (plain or implicit TLS)
//	lmtp        K LMTP connections deliver messages to a set of mailboxes
//	mem         memory (RSS, PSS) of a server process tree
//	table       medians and ratios from a file of RESULT lines
//	users       print the names a user spec (user1-user3,bulk) stands for
//
// Server CPU and memory are read from /proc for the given -server-pid and
// all its descendants: CPU is utime+stime plus cutime+cstime (reaped
// children, so Dovecot's per-session processes count), memory is the sum of
// Pss from /proc/PID/smaps_rollup (and of VmRSS, which counts shared pages
// once per process).
//
// Units: MB is 10^6 octets of message data as the client receives it
// (dot-unstuffed, CRLF line ends), KB is 1024 octets.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// opts holds every flag; each subcommand reads the ones it needs.
type opts struct {
	addr     string
	user     string
	pass     string
	users    string
	tlsMode  string
	auth     string
	timeout  time.Duration
	conc     int
	duration time.Duration
	pipeline int
	n        int
	hold     time.Duration
	pids     string
	warmup   bool
	tags     string
	cold     bool
	before   string
	rcpts    int
	size     int
	domain   string
	rawMode  string
	dir      string
}

func (o *opts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", "127.0.0.1:1110", "server address host:port (lmtp: also unix:/path)")
	fs.StringVar(&o.user, "user", "bulk", "user (throughput, statuidl)")
	fs.StringVar(&o.pass, "pass", "secret", "password of every user")
	fs.StringVar(&o.users, "users", "user1-user200", "users: PREFIXa-PREFIXb and/or a comma list (sessions, idle, login, lmtp)")
	fs.StringVar(&o.tlsMode, "tls", "none", "none | pop3s (implicit TLS) | stls")
	fs.StringVar(&o.auth, "auth", "user", "user (USER/PASS) | plain (AUTH PLAIN)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "deadline of each exchange")
	fs.IntVar(&o.conc, "c", 50, "concurrent workers (sessions, login, lmtp); dialers (idle)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time (sessions, login, lmtp)")
	fs.IntVar(&o.pipeline, "pipeline", 1, "RETR commands in flight (throughput); 1 = lock-step")
	fs.IntVar(&o.n, "n", 20, "connections (idle) or sessions (statuidl)")
	fs.DurationVar(&o.hold, "hold", 5*time.Second, "how long idle sessions are held after the memory reading")
	fs.StringVar(&o.pids, "server-pid", "", "comma list of server PIDs: CPU and memory of these and all descendants")
	fs.BoolVar(&o.warmup, "warmup", true, "one untimed pass first (sessions: a session per mailbox; lmtp: one delivery per worker)")
	fs.StringVar(&o.tags, "tags", "", "key=value pairs copied to the start of the RESULT line (e.g. \"scn=s1 srv=popbox run=1\")")
	fs.BoolVar(&o.cold, "cold", false, "statuidl: sync and drop the page cache, dentries and inodes before each session (root)")
	fs.StringVar(&o.before, "before", "", "statuidl: shell command run before each session (after -cold), e.g. removing index files")
	fs.IntVar(&o.rcpts, "rcpts", 1, "lmtp: recipients per message")
	fs.IntVar(&o.size, "size", 4000, "lmtp: message size in octets")
	fs.StringVar(&o.domain, "domain", "example.org", "lmtp: recipient domain")
	fs.StringVar(&o.rawMode, "mode", "sendfile", "rawcopy: sendfile (kernel copy) | copy (read+write through a 64 KiB buffer) | lockstep (copy, one request per file)")
	fs.StringVar(&o.dir, "dir", "", "rawcopy: the Maildir whose new/ and cur/ files are sent")
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: popload gen|hash|throughput|rawcopy|sessions|idle|statuidl|login|lmtp|mem|table|users [flags] (SUBCOMMAND -h for flags)")
		os.Exit(2)
	}
	mode := os.Args[1]
	args := os.Args[2:]
	var err error
	switch mode {
	case "gen":
		err = cmdGen(args)
	case "table":
		err = cmdTable(args)
	case "users":
		for _, spec := range args {
			for _, u := range parseUsers(spec) {
				fmt.Println(u)
			}
		}
	case "raw-serve": // internal: the sending side of rawcopy
		err = cmdRawServe(args)
	default:
		fs := flag.NewFlagSet(mode, flag.ExitOnError)
		o := &opts{}
		o.register(fs)
		if err := fs.Parse(args); err != nil {
			os.Exit(2)
		}
		raiseNoFile()
		go func() { // exit at once on Ctrl-C
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
			<-ch
			os.Exit(130)
		}()
		switch mode {
		case "hash":
			err = cmdHash(o)
		case "throughput":
			err = modeThroughput(o)
		case "rawcopy":
			err = modeRawCopy(o)
		case "sessions":
			err = modeSessions(o)
		case "idle":
			err = modeIdle(o)
		case "statuidl":
			err = modeStatUIDL(o)
		case "login":
			err = modeLogin(o)
		case "lmtp":
			err = modeLMTP(o)
		case "mem":
			m, ok := measureMem(o.pids)
			if !ok {
				err = errors.New("-server-pid required")
				break
			}
			result(o, "mode=mem procs=%d rss_MB=%.1f pss_MB=%.1f", m.procs, float64(m.rssKB)/1024, float64(m.pssKB)/1024)
		default:
			err = fmt.Errorf("unknown subcommand %q", mode)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "popload:", err)
		os.Exit(1)
	}
}

// result prints a RESULT line, prefixed with -tags.
func result(o *opts, format string, a ...any) {
	tags := ""
	if o.tags != "" {
		tags = o.tags + " "
	}
	fmt.Printf("RESULT "+tags+format+"\n", a...)
}

// raiseNoFile raises the soft limit on open files to the hard limit: the
// idle benchmark holds thousands of connections.
func raiseNoFile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}
