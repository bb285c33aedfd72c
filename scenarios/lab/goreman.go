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
// on the target's port. It does not start the cluster, cannot scale, and a
// replica's drain is the one make cluster gave it.
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
var goremanVerbs = map[string]bool{"kill": true, "stop": true, "start": true, "pause": true, "resume": true}

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
		pid, err := listener(port)
		if err != nil {
			return fmt.Errorf("lab: kill -9 %s: %w", f.Target, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("lab: kill -9 %s (pid %d): %w", f.Target, pid, err)
		}
		return waitGone(ctx, pid)
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
