package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/rpc"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/statelab/shop/deploy"
)

// GoremanDriver does faults to the cluster `make cluster` runs: the
// Procfile under goreman, its ports derived from nginx's
// (deploy.PortsFor). stop and start go through goreman's RPC server, so
// goreman knows; kill -9, pause and resume signal the process that listens
// on the target's port; replace is kill -9, the replica's upload folder
// emptied, and goreman's start. It does not start the cluster, cannot
// scale, and a replica's drain is the one make cluster gave it.
type GoremanDriver struct {
	URL string // nginx of make cluster: http://127.0.0.1:8080
	// RPC is goreman's RPC address; "" derives it from URL's port.
	RPC string

	ports deploy.LocalPorts
}

// Start checks the URL and returns it: make cluster runs the cluster.
func (d *GoremanDriver) Start(ctx context.Context, s Setup) (string, error) {
	u, err := url.Parse(d.URL)
	if err != nil || u.Port() == "" {
		return "", fmt.Errorf("lab: goreman driver: -target %q: want http://127.0.0.1:PORT of make cluster", d.URL)
	}
	port, _ := strconv.Atoi(u.Port())
	if d.ports, err = deploy.PortsFor(port); err != nil {
		return "", fmt.Errorf("lab: goreman driver: %s: %v", d.URL, err)
	}
	if d.RPC == "" {
		d.RPC = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.ports.RPC))
	}
	if _, err := d.status(); err != nil {
		return "", fmt.Errorf("lab: goreman driver: no goreman at %s (is make cluster PORT=%d running?): %w", d.RPC, port, err)
	}
	return d.URL, nil
}

// goremanVerbs are the faults goreman's cluster can take.
var goremanVerbs = map[string]bool{"kill": true, "stop": true, "start": true, "pause": true, "resume": true, "replace": true}

// CheckFault says whether the driver can do f.
func (d *GoremanDriver) CheckFault(f Fault) error {
	switch {
	case !goremanVerbs[f.Do]:
		return unsupported("goreman", f, "make cluster runs a fixed Procfile: three replicas, one Redis, no proxy")
	case f.Drain.Set:
		return unsupported("goreman", f, "make cluster starts every replica with the shop's 2 s drain")
	case strings.HasPrefix(f.Target, "redis ") && f.Target != "redis":
		return unsupported("goreman", f, "make cluster runs one Redis")
	}
	return nil
}

// Fault does f.
func (d *GoremanDriver) Fault(ctx context.Context, f Fault) error {
	if err := d.CheckFault(f); err != nil {
		return err
	}
	port, err := d.port(f.Target)
	if err != nil {
		return err
	}
	switch f.Do {
	case "stop":
		// goreman sends SIGINT and waits for the exit (a replica drains).
		return d.call("Goreman.Stop", f.Target)
	case "start":
		if err := d.call("Goreman.Start", f.Target); err != nil {
			return err
		}
		return d.waitReady(ctx, f.Target, port)
	case "kill":
		_, err := killListener(ctx, f.Target, port)
		return err
	case "replace":
		return d.replace(ctx, f.Target, port)
	case "pause", "resume":
		pid, err := listener(port)
		if err != nil {
			return fmt.Errorf("lab: %s %s: %w", f.Do, f.Target, err)
		}
		sig := syscall.SIGSTOP
		if f.Do == "resume" {
			sig = syscall.SIGCONT
		}
		return syscall.Kill(pid, sig)
	}
	return unsupported("goreman", f, "")
}

// killListener sends SIGKILL to the process listening on port and waits
// until it is gone; it returns its pid.
func killListener(ctx context.Context, target string, port int) (int, error) {
	pid, err := listener(port)
	if err != nil {
		return 0, fmt.Errorf("lab: kill -9 %s: %w", target, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("lab: kill -9 %s (pid %d): %w", target, pid, err)
	}
	return pid, waitGone(ctx, pid)
}

// replace is what an orchestrator does with a crashed container: kill -9,
// then a new process under the same name with an empty disk (the
// replica's upload folder, RUN/shopN-uploads in the Procfile, emptied), as
// the cluster harness's ReplaceReplica does.
func (d *GoremanDriver) replace(ctx context.Context, target string, port int) error {
	pid, err := listener(port)
	if err != nil {
		return fmt.Errorf("lab: replace %s: %w", target, err)
	}
	// Asked before the kill: a dead process has no environment.
	dir, err := uploadsDir(pid)
	if err != nil {
		return fmt.Errorf("lab: replace %s: its upload folder: %w", target, err)
	}
	if _, err := killListener(ctx, target, port); err != nil {
		return err
	}
	// goreman's Start does nothing for a process it still counts as
	// running, until it has reaped the one killed.
	if err := d.waitExited(ctx, target); err != nil {
		return err
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("lab: replace %s: empty its disk: %w", target, err)
		}
	}
	if err := d.call("Goreman.Start", target); err != nil {
		return err
	}
	return d.waitReady(ctx, target, port)
}

// waitExited waits until goreman no longer counts name as running.
func (d *GoremanDriver) waitExited(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		st, err := d.status()
		if err == nil && !st[name] {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: goreman still counts %s as running 5 s after kill -9 (%v)", name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// uploadsDir is the folder a running replica keeps review photos in, from
// its command line or environment as the shop reads them (-uploads,
// SHOP_UPLOADS; without either, "uploads" beside the SQLite file), made
// absolute against its working directory; "" when they are in an object
// store. It reads /proc, so it works where the driver finds pids by /proc.
func uploadsDir(pid int) (string, error) {
	proc := "/proc/" + strconv.Itoa(pid)
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		return "", err
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return "", err
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return "", err
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(environ), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	// flag is -name's value (-name v, -name=v, or with two dashes) on the
	// command line, which wins over the environment as in the shop.
	flag := func(name, fallback string) string {
		for i := 1; i < len(args); i++ {
			a, ok := strings.CutPrefix(args[i], "-")
			if !ok {
				continue
			}
			a = strings.TrimPrefix(a, "-")
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
		}
		return fallback
	}
	dir := flag("uploads", env["SHOP_UPLOADS"])
	switch {
	case strings.HasPrefix(dir, "s3://"):
		return "", nil
	case dir == "":
		db := flag("db", env["SHOP_DB"])
		switch {
		case db == "":
			dir = "uploads" // beside the default shop.db
		case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
			dir = "uploads"
		default:
			dir = filepath.Join(filepath.Dir(db), "uploads")
		}
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(cwd, dir)
	}
	return dir, nil
}

// port is where the target listens.
func (d *GoremanDriver) port(target string) (int, error) {
	for _, np := range d.ports.Named() {
		if np.Name == target && np.Name != "nginx" && np.Name != "goreman" {
			return np.Port, nil
		}
	}
	return 0, fmt.Errorf("lab: make cluster has no %s (it runs shop1..shop3 and redis)", target)
}

func (d *GoremanDriver) call(method, proc string) error {
	c, err := rpc.Dial("tcp", d.RPC)
	if err != nil {
		return fmt.Errorf("lab: goreman at %s: %w", d.RPC, err)
	}
	defer c.Close()
	var ret string
	if err := c.Call(method, []string{proc}, &ret); err != nil {
		return fmt.Errorf("lab: goreman %s %s: %w", method, proc, err)
	}
	return nil
}

// status is goreman's list of processes: name → running.
func (d *GoremanDriver) status() (map[string]bool, error) {
	c, err := rpc.Dial("tcp", d.RPC)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var ret string
	if err := c.Call("Goreman.Status", []string{}, &ret); err != nil {
		return nil, err
	}
	st := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(ret))
	for sc.Scan() {
		if l := sc.Text(); len(l) > 1 {
			st[l[1:]] = l[0] == '*'
		}
	}
	return st, nil
}

// waitReady waits until a started replica's /readyz answers 200, or a
// started Redis accepts connections.
func (d *GoremanDriver) waitReady(ctx context.Context, target string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	client := &http.Client{Timeout: time.Second}
	for {
		var err error
		if target == "redis" {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
			}
		} else {
			var resp *http.Response
			if resp, err = client.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not ready after start: %v", target, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LiveReplicas counts the replicas goreman runs.
func (d *GoremanDriver) LiveReplicas() int {
	st, err := d.status()
	if err != nil {
		return 0
	}
	n := 0
	for name, running := range st {
		if running && strings.HasPrefix(name, "shop") {
			n++
		}
	}
	return n
}

// Close does nothing: the cluster belongs to make cluster.
func (d *GoremanDriver) Close() error { return nil }

// waitGone waits until a killed process has exited.
func waitGone(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for syscall.Kill(pid, 0) == nil {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
				return nil // a zombie: dead, its parent not yet told
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: pid %d still runs after SIGKILL", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// listener returns the pid of the process listening on a loopback TCP
// port: from /proc on Linux, from lsof elsewhere (macOS).
func listener(port int) (int, error) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		out, err := exec.Command("lsof", "-nP", "-t", "-iTCP:"+strconv.Itoa(port), "-sTCP:LISTEN").Output()
		if err != nil {
			return 0, fmt.Errorf("nothing listens on port %d (lsof: %v)", port, err)
		}
		return strconv.Atoi(strings.Fields(string(out))[0])
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(l)
			// local_address is HEXIP:HEXPORT, st 0A is LISTEN.
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid, nil
		}
	}
	return 0, fmt.Errorf("port %d: no process of ours holds it", port)
}
