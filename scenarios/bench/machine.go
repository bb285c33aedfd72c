package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a run happened: without it a table of numbers
// means nothing to the next reader.
type Machine struct {
	NProc     int    // CPUs this process may use
	CPU       string // model name from /proc/cpuinfo
	MemTotal  uint64 // bytes, from /proc/meminfo
	GoVersion string
	Kernel    string
	// LoadBefore is the 1-minute load average when the run began: above
	// zero-ish it says someone else was using the machine too.
	LoadBefore string
	Nginx      string
	Redis      string
}

func describeMachine() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), CPU: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = procKB(b, "MemTotal:")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadBefore, _, _ = strings.Cut(string(b), " ")
	}
	// Go's own toolchain version builds the shop; say which one when it
	// differs from the one running the bench.
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); v != "" {
			m.GoVersion = v
		}
	}
	m.Nginx = firstLine("nginx", "-v")
	m.Redis = firstLine("redis-server", "--version")
	return m
}

// firstLine runs a program for its version line (nginx prints it on stderr).
func firstLine(name string, args ...string) string {
	for _, p := range []string{name, "/usr/sbin/" + name} {
		out, err := exec.Command(p, args...).CombinedOutput()
		if err == nil {
			line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			return line
		}
	}
	return "unknown"
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB RAM, %s, Linux %s", m.NProc, m.CPU, float64(m.MemTotal)/(1<<30), m.GoVersion, m.Kernel)
}

// procKB reads a "Name:   123 kB" line of a /proc file, in bytes.
func procKB(b []byte, name string) uint64 {
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n << 10
		}
	}
	return 0
}

// rss is a process's resident set size, 0 when it cannot be read.
func rss(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return procKB(b, "VmRSS:")
}

// childPIDs lists the children of ppid (nginx's workers) from /proc.
func childPIDs(ppid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 {
			if parent, err := strconv.Atoi(f[1]); err == nil && parent == ppid {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}

// mib formats bytes as MiB.
func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
