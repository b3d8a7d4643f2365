// Command statuidl measures how long a POP3 server takes to answer STAT and
// UIDL for a mailbox, the work a fetcher does on every poll, and the whole
// session around it (connect, login, STAT, UIDL, QUIT). It prints one RESULT
// line with medians and 90th percentiles in milliseconds, in the key=value
// style of the shared harness so results can be compared side by side.
//
//	statuidl -addr 127.0.0.1:1110 -user big -pass secret -n 20
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1110", "server address (plain POP3)")
	user := flag.String("user", "big", "user")
	pass := flag.String("pass", "secret", "password")
	n := flag.Int("n", 20, "sessions")
	label := flag.String("label", "server", "label for the RESULT line")
	flag.Parse()
	var statUIDL, session []float64
	lines := 0
	for i := 0; i < *n; i++ {
		su, total, count, err := run(*addr, *user, *pass)
		if err != nil {
			fmt.Fprintln(os.Stderr, "statuidl:", err)
			os.Exit(1)
		}
		statUIDL = append(statUIDL, su)
		session = append(session, total)
		lines = count
	}
	fmt.Printf("RESULT label=%s msgs=%d sessions=%d stat_uidl_ms_p50=%.2f stat_uidl_ms_p90=%.2f session_ms_p50=%.2f session_ms_p90=%.2f\n",
		*label, lines, *n, pct(statUIDL, 50), pct(statUIDL, 90), pct(session, 50), pct(session, 90))
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func run(addr, user, pass string) (statUIDL, session float64, count int, err error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReaderSize(c, 64*1024)
	w := bufio.NewWriter(c)
	cmd := func(s string) (string, error) {
		if s != "" {
			w.WriteString(s + "\r\n")
			if err := w.Flush(); err != nil {
				return "", err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("%q: %s", s, strings.TrimSpace(line))
		}
		return line, nil
	}
	for _, s := range []string{"", "USER " + user, "PASS " + pass} {
		if _, err := cmd(s); err != nil {
			return 0, 0, 0, err
		}
	}
	t1 := time.Now()
	if _, err := cmd("STAT"); err != nil {
		return 0, 0, 0, err
	}
	if _, err := cmd("UIDL"); err != nil {
		return 0, 0, 0, err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, 0, 0, err
		}
		if line == ".\r\n" {
			break
		}
		count++
	}
	t2 := time.Now()
	if _, err := cmd("QUIT"); err != nil && !errors.Is(err, net.ErrClosed) {
		return 0, 0, 0, err
	}
	return ms(t2.Sub(t1)), ms(time.Since(t0)), count, nil
}
