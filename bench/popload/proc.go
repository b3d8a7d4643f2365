package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// parsePids reads "-server-pid 1,2".
func parsePids(spec string) []int {
	var out []int
	for p := range strings.SplitSeq(spec, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// descendants returns roots and every process below them.
func descendants(roots []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(pid)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	seen := map[int]bool{}
	q := append([]int(nil), roots...)
	for len(q) > 0 {
		p := q[0]
		q = q[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		q = append(q, children[p]...)
	}
	return out
}

// serverCPU returns the CPU seconds of the process trees: utime+stime of
// each live process plus cutime+cstime (children it has reaped).
func serverCPU(spec string) (float64, bool) {
	roots := parsePids(spec)
	if len(roots) == 0 {
		return 0, false
	}
	var ticks int64
	for _, pid := range descendants(roots) {
		f := statFields(pid)
		// after ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
		if len(f) > 14 {
			for _, k := range []int{11, 12, 13, 14} {
				v, _ := strconv.ParseInt(f[k], 10, 64)
				ticks += v
			}
		}
	}
	return float64(ticks) / 100, true // USER_HZ is 100 on Linux
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

type cpuMark struct {
	srv, cli float64
	ok       bool
}

func markCPU(o *opts) cpuMark {
	s, ok := serverCPU(o.pids)
	return cpuMark{srv: s, cli: selfCPU(), ok: ok}
}

// cpuSince formats the CPU used since m, in total and per unit.
func cpuSince(o *opts, m cpuMark, units int, unit string) string {
	e := markCPU(o)
	out := fmt.Sprintf("client_cpu_s=%.2f", e.cli-m.cli)
	if m.ok {
		srv := e.srv - m.srv
		out += fmt.Sprintf(" server_cpu_s=%.2f", srv)
		if units > 0 {
			out += fmt.Sprintf(" server_cpu_ms_per_%s=%.3f", unit, srv*1000/float64(units))
		}
	}
	return out
}

type memInfo struct{ procs, rssKB, pssKB int64 }

func kbField(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// measureMem sums VmRSS and Pss (smaps_rollup) over the process trees.
func measureMem(spec string) (memInfo, bool) {
	roots := parsePids(spec)
	if len(roots) == 0 {
		return memInfo{}, false
	}
	var m memInfo
	for _, pid := range descendants(roots) {
		d := filepath.Join("/proc", strconv.Itoa(pid))
		rss := kbField(d+"/status", "VmRSS:")
		if rss == 0 {
			continue
		}
		m.procs++
		m.rssKB += rss
		m.pssKB += kbField(d+"/smaps_rollup", "Pss:")
	}
	return m, true
}

// sysUsedKB is MemTotal-MemAvailable: the whole machine, client included.
func sysUsedKB() int64 {
	return kbField("/proc/meminfo", "MemTotal:") - kbField("/proc/meminfo", "MemAvailable:")
}
