package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/popbox/popbox/userdb/passhash"
)

// cmdHash prints popbox's default argon2id hash of -pass with Dovecot's
// {ARGON2ID} prefix: a passwd-file line both servers verify with the same
// work (Dovecot through libsodium, popbox through x/crypto/argon2), and one
// popbox does not rehash at login since its parameters are popbox's own.
func cmdHash(o *opts) error {
	h, err := passhash.Hash(o.pass, passhash.Params{})
	if err != nil {
		return err
	}
	fmt.Println("{ARGON2ID}" + h)
	return nil
}

// metric is one row of the table: a RESULT key, which direction is
// better, and the target for popbox/Dovecot (0: none).
type metric struct {
	key    string
	higher bool
	target float64
	// abs: the target is a bound on popbox's own value, not a ratio.
	abs bool
}

// tableSpec lists, by scenario prefix, the keys shown.
var tableSpec = []struct {
	prefix  string
	metrics []metric
}{
	{"s1-", []metric{{"MB_per_s", true, 2, false}, {"server_cpu_ms_per_msg", false, 0.5, false}}},
	{"s2", []metric{{"sessions_per_s", true, 2, false}, {"p99_ms", false, 0.5, false}, {"server_cpu_ms_per_session", false, 0, false}, {"errors", false, 0, false}}},
	{"s3", []metric{{"pss_per_conn_KB", false, 25, true}, {"established", true, 0, false}, {"alive", true, 0, false}, {"pss_MB", false, 0, false}, {"logins_per_s", true, 0, false}}},
	{"s4-warm", []metric{{"session_ms_p50", false, 0.5, false}, {"stat_uidl_ms_p50", false, 0, false}, {"login_ms_p50", false, 0, false}}},
	{"s4-", []metric{{"session_ms_p50", false, 0, false}, {"stat_uidl_ms_p50", false, 0, false}, {"login_ms_p50", false, 0, false}}},
	{"s5-", []metric{{"logins_per_s", true, 1.5, false}, {"p99_ms", false, 0, false}, {"server_cpu_ms_per_login", false, 0, false}, {"errors", false, 0, false}}},
	{"s6-", []metric{{"deliveries_per_s", true, 1, false}, {"p99_ms", false, 0, false}, {"server_cpu_ms_per_delivery", false, 0, false}, {"errors", false, 0, false}}},
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1 || v <= -1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// cmdTable reads RESULT lines tagged scn=, srv= (dovecot, popbox, raw-*)
// and prints a Markdown table of medians, ranges and popbox/Dovecot ratios.
func cmdTable(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	in := fs.String("results", "", "file of RESULT lines (default: stdin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := os.Stdin
	if *in != "" {
		var err error
		if f, err = os.Open(*in); err != nil {
			return err
		}
		defer f.Close()
	}
	type cell = map[string][]float64 // key -> values over runs
	data := map[string]map[string]cell{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "RESULT ")
		if !ok {
			continue
		}
		kv := map[string]string{}
		for field := range strings.FieldsSeq(line) {
			if k, v, ok := strings.Cut(field, "="); ok {
				kv[k] = v
			}
		}
		scn, srv := kv["scn"], kv["srv"]
		if scn == "" || srv == "" {
			continue
		}
		if data[scn] == nil {
			data[scn] = map[string]cell{}
			order = append(order, scn)
		}
		if data[scn][srv] == nil {
			data[scn][srv] = cell{}
		}
		for k, v := range kv {
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				data[scn][srv][k] = append(data[scn][srv][k], x)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	show := func(c cell, key string) (string, float64, bool) {
		v := c[key]
		if len(v) == 0 {
			return "–", 0, false
		}
		m := median(v)
		s := num(m)
		if len(v) > 1 {
			lo, hi := slices.Min(v), slices.Max(v)
			if lo != hi {
				s += " (" + num(lo) + "–" + num(hi) + ")"
			}
		}
		return s, m, true
	}
	fmt.Println("| scenario | metric | Dovecot | popbox | popbox/Dovecot | target | met |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, scn := range order {
		var ms []metric
		for _, sp := range tableSpec {
			if strings.HasPrefix(scn, sp.prefix) {
				ms = sp.metrics
				break
			}
		}
		d, p := data[scn]["dovecot"], data[scn]["popbox"]
		for _, m := range ms {
			ds, dv, dok := show(d, m.key)
			ps, pv, pok := show(p, m.key)
			if !dok && !pok {
				continue
			}
			ratio, target, met := "–", "", ""
			if dok && pok && dv != 0 {
				ratio = num(pv/dv) + "x"
			}
			if m.target > 0 {
				var ok bool
				switch {
				case m.abs && pok:
					target = "≤ " + num(m.target)
					ok = pv <= m.target
				case !m.abs && m.higher && dok && pok && dv != 0:
					target = "≥ " + num(m.target) + "x"
					ok = pv/dv >= m.target
				case !m.abs && !m.higher && dok && pok && dv != 0:
					target = "≤ " + num(m.target) + "x"
					ok = pv/dv <= m.target
				}
				if target != "" {
					met = map[bool]string{true: "yes", false: "**no**"}[ok]
				}
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", scn, m.key, ds, ps, ratio, target, met)
		}
		// Scenario 1: popbox against the bare TCP copy of the same files.
		if strings.HasPrefix(scn, "s1-") && scn != "s1-raw" && p != nil {
			for _, raw := range []string{"raw-sendfile", "raw-copy", "raw-lockstep"} {
				r := data["s1-raw"][raw]
				_, rv, rok := show(r, "MB_per_s")
				_, pv, pok := show(p, "MB_per_s")
				if !rok || !pok || rv <= 0 {
					continue
				}
				if raw != "raw-copy" {
					// No target. The target's raw copy reads each file and
					// writes it to the socket, the data path a POP3 server
					// has too; sendfile is the kernel's zero-copy path,
					// which no server that converts line ends can take, and
					// the lock-step loop is the ceiling of any lock-step
					// client. Both are shown for reading the target row.
					fmt.Printf("| %s | MB_per_s vs %s | – | %s | %s of raw (%s MB/s) |  |  |\n", scn, raw, num(pv), num(pv/rv), num(rv))
					continue
				}
				ok := pv/rv >= 0.5
				fmt.Printf("| %s | MB_per_s vs %s | – | %s | %s of raw (%s MB/s) | ≥ 0.5 | %s |\n", scn, raw, num(pv), num(pv/rv), num(rv),
					map[bool]string{true: "yes", false: "**no**"}[ok])
			}
		}
	}
	return nil
}
