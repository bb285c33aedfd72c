package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// errNotStarted is returned for a replica whose process never ran.
var errNotStarted = errors.New("not started")

// Replica is one shop process with a fixed name, port and environment; a
// restart reuses all three, so nginx finds it where it was.
type Replica struct {
	name string
	port int
	bin  string
	dir  string // working directory; the log is dir/NAME.log
	env  []string
	out  *proc.Mux

	mu sync.Mutex
	p  *proc.Process // the current or last run
}

// Name is the replica's name (SHOP_REPLICA), as in X-Served-By.
func (r *Replica) Name() string { return r.name }

// Addr is the replica's own host:port, bypassing nginx.
func (r *Replica) Addr() string { return testenv.Loopback(r.port) }

// URL is "http://" + Addr: the replica directly, bypassing nginx.
func (r *Replica) URL() string { return "http://" + r.Addr() }

// LogPath is the file that the replica's stdout and stderr are appended to,
// across restarts.
func (r *Replica) LogPath() string { return filepath.Join(r.dir, r.name+".log") }

// Pid is the process id of the replica's current or last run, 0 when it
// never ran: the bench reads /proc/PID/status for its memory.
func (r *Replica) Pid() int {
	p := r.current()
	if p == nil {
		return 0
	}
	return p.Pid()
}

// Running reports whether the replica's process is alive.
func (r *Replica) Running() bool {
	p := r.current()
	return p != nil && p.Running()
}

// SetEnv adds KEY=value settings for the replica's next Start, overriding
// what it was started with: a replica redeployed with other settings
// (new session keys). It does not touch a running process.
func (r *Replica) SetEnv(kv ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.env = append(append([]string(nil), r.env...), kv...)
}

// Start (re)starts the replica with the same name, port and environment and
// waits until GET /readyz answers 200. It fails at once when the process
// exits meanwhile; after a timeout the process is left running (not ready)
// for the caller to inspect, Kill or Close.
func (r *Replica) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.p != nil && r.p.Running() {
		r.mu.Unlock()
		return fmt.Errorf("cluster: %s is already running", r.name)
	}
	p, err := proc.Start(proc.Spec{Name: r.name, Path: r.bin, Env: r.env, Dir: r.dir, LogPath: r.LogPath(), Out: r.out})
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.p = p
	r.mu.Unlock()
	return r.waitReady(ctx, p)
}

// WaitReady waits until GET /readyz answers 200 (at most 10 s), failing at
// once when the process exits.
func (r *Replica) WaitReady(ctx context.Context) error {
	p := r.current()
	if p == nil {
		return fmt.Errorf("cluster: %s: %w", r.name, errNotStarted)
	}
	return r.waitReady(ctx, p)
}

func (r *Replica) waitReady(ctx context.Context, p *proc.Process) error {
	u := r.URL() + "/readyz"
	return p.WaitUntil(ctx, "GET "+u+" answers 200", httpOK(newProbeClient(), u))
}

// Kill sends SIGKILL (kill -9), as a crash would, and waits until the
// process is gone. Killing a stopped replica does nothing.
func (r *Replica) Kill() error {
	p := r.current()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Term sends SIGTERM (and SIGCONT, in case it is paused) and returns at
// once: the replica turns not-ready, drains and exits. Wait tells how it
// ended. Terminating a stopped replica does nothing.
func (r *Replica) Term() error {
	p := r.current()
	if p == nil {
		return nil
	}
	return p.Term()
}

// termOnce sends SIGTERM unless Term already did.
func (r *Replica) termOnce() error {
	p := r.current()
	if p == nil || p.Termed() {
		return nil
	}
	return r.Term()
}

// Pause freezes the replica with SIGSTOP, a hung process: the kernel still
// accepts connections (up to the listen backlog) but nothing answers. Resume
// undoes it; Term, Kill and Close work on a paused replica too.
func (r *Replica) Pause() error {
	p := r.current()
	if p == nil {
		return fmt.Errorf("cluster: pause %s: %w", r.name, errNotStarted)
	}
	return p.Pause()
}

// Resume continues a paused replica with SIGCONT.
func (r *Replica) Resume() error {
	p := r.current()
	if p == nil {
		return fmt.Errorf("cluster: resume %s: %w", r.name, errNotStarted)
	}
	return p.Signal(syscall.SIGCONT)
}

// Wait waits for the current run to end and returns its exit code, -1 when a
// signal ended it. For a replica that already exited it returns at once.
func (r *Replica) Wait(ctx context.Context) (exitCode int, err error) {
	p := r.current()
	if p == nil {
		return -1, fmt.Errorf("cluster: wait for %s: %w", r.name, errNotStarted)
	}
	select {
	case <-p.Done():
		return p.ExitCode(), nil
	case <-ctx.Done():
		return -1, fmt.Errorf("cluster: wait for %s: %w", r.name, context.Cause(ctx))
	}
}

func (r *Replica) current() *proc.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}
