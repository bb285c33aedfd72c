package cluster

// Process plumbing shared by Redis, nginx and the replicas: one log file per
// process, one goroutine per process that calls cmd.Wait exactly once, and
// forced kills that reach the whole process group.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statelab/shop/internal/testenv"
)

const (
	// readyTimeout bounds every wait for a process to become ready.
	readyTimeout = 10 * time.Second
	// pollInterval is how often a wait looks again.
	pollInterval = 25 * time.Millisecond
	// closeGrace is how long Close lets a process stop after SIGTERM before
	// it sends SIGKILL.
	closeGrace = 3 * time.Second
	// killTimeout bounds the wait for a process to die after SIGKILL.
	killTimeout = 5 * time.Second
	// tailLines is how much of a log an error message quotes.
	tailLines = 30
	// tailBytes is how much of a log is read to find those lines.
	tailBytes = 64 << 10
)

// errAddrInUse marks a start that failed because another process took the
// port between picking it and the child binding it; the caller picks again.
var errAddrInUse = errors.New("address already in use")

// procSpec is what startProc runs.
type procSpec struct {
	name    string
	path    string
	args    []string
	env     []string // nil inherits the environment
	dir     string
	logPath string        // stdout and stderr are appended here
	out     *sharedWriter // optional copy of the output, prefixed with name
	// guard kills the process group when this process dies and when the
	// leader exits: for nginx, whose workers Pdeathsig does not reach.
	guard bool
}

// proc is one run of a process. A restart is a new proc.
type proc struct {
	name    string
	logPath string
	logFrom int64 // size of the log file when this run started
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait has returned
	termed  atomic.Bool   // SIGTERM was sent

	// Set before done is closed; read only after.
	state *os.ProcessState
}

func startProc(s procSpec) (*proc, error) {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: open log: %w", s.name, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: %s: open log: %w", s.name, err)
	}

	cmd := exec.Command(s.path, s.args...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.SysProcAttr = sysProcAttr()
	var w io.Writer = f
	var pw *prefixWriter
	if s.out != nil {
		pw = s.out.prefixed(s.name)
		w = io.MultiWriter(f, pw)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// With a copy to s.out, Wait also waits for the copying goroutine, which
	// a grandchild holding the pipe (an nginx worker) could stretch forever.
	cmd.WaitDelay = time.Second

	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: start %s: %w", s.name, err)
	}
	p := &proc{name: s.name, logPath: s.logPath, logFrom: info.Size(), cmd: cmd, done: make(chan struct{})}
	var guard *groupGuard
	if s.guard {
		if guard, err = guardGroup(cmd.Process.Pid); err != nil {
			p.killGroup()
			cmd.Wait()
			f.Close()
			return nil, fmt.Errorf("cluster: start %s: %w", s.name, err)
		}
	}
	go func() {
		cmd.Wait() // the exit status is in ProcessState
		if guard != nil {
			// Workers that outlive their master; they hold the group's
			// number, so it still names this group.
			p.killGroup()
			guard.release()
		}
		if pw != nil {
			pw.flush()
		}
		f.Close()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// pause stops the process with SIGSTOP and returns once it is stopped.
// kill(2) only queues the signal: without the wait a request sent right after
// Pause may still be answered, and a "stalled" test passes or fails by luck.
func (p *proc) pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.running() && !testenv.ProcessStopped(p.pid()) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: pause %s: not stopped 2 s after SIGSTOP", p.name)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exitCode is the exit status, -1 when a signal ended the process. Only
// valid once done is closed.
func (p *proc) exitCode() int {
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// signal sends sig to the process itself (not its group): a graceful signal
// lets the process deal with its own children.
func (p *proc) signal(sig os.Signal) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: signal %s: %w", p.name, err)
	}
	return nil
}

// term sends SIGTERM, then SIGCONT: a paused process would hold SIGTERM
// pending until resumed.
func (p *proc) term() error {
	p.termed.Store(true)
	return errors.Join(p.signal(syscall.SIGTERM), p.signal(syscall.SIGCONT))
}

// killGroup sends SIGKILL to the whole process group, so that children (nginx
// workers, a Redis rewrite child) die with the leader. Only while the leader
// lives or its group is known to hold members: once both are gone the number
// may name someone else's group.
func (p *proc) killGroup() {
	// ESRCH: nothing left in the group.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// kill sends SIGKILL to the group and waits for the process to be reaped.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	p.killGroup()
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("cluster: %s (pid %d) still running %s after SIGKILL", p.name, p.pid(), killTimeout)
	}
}

// stop sends SIGTERM and waits up to grace for the exit, then SIGKILLs. An
// escalation is an error: a process that ignores SIGTERM breaks the contract.
func (p *proc) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	if err := p.term(); err != nil {
		return errors.Join(err, p.kill())
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		if err := p.kill(); err != nil {
			return err
		}
		return fmt.Errorf("cluster: %s did not exit within %s of SIGTERM; killed%s", p.name, grace, p.tail())
	}
}

// groupGuard kills a process group when this process dies, even by SIGKILL
// or a test timeout: Pdeathsig reaches only our direct children, not nginx's
// workers. A shell blocks reading its stdin, a pipe whose write end only this
// process holds; when this process dies the kernel closes that end, the read
// returns and the shell kills the group.
type groupGuard struct {
	cmd  *exec.Cmd
	w    *os.File
	done chan struct{}
}

func guardGroup(pgid int) (*groupGuard, error) {
	r, w, err := os.Pipe() // close-on-exec: no other child inherits w
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", `read _; kill -s KILL -- -"$1"`, "statelab-guard", strconv.Itoa(pgid))
	cmd.Stdin = r
	// Its own group, and no Pdeathsig: it must outlive this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("guard: %w", err)
	}
	g := &groupGuard{cmd: cmd, w: w, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

// release ends the guard without letting it kill: SIGKILL first, so the
// shell never sees its stdin close.
func (g *groupGuard) release() {
	g.cmd.Process.Kill()
	select {
	case <-g.done:
	case <-time.After(killTimeout):
	}
	g.w.Close()
}

// exitedError describes a process that exited while something waited for it.
func (p *proc) exitedError(what string) error {
	err := fmt.Errorf("cluster: %s exited (%s) %s%s", p.name, p.state, what, p.tail())
	if bytes.Contains(bytes.ToLower(p.logSince()), []byte(errAddrInUse.Error())) {
		err = fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// logSince returns the start of what this run wrote to its log, where a
// failure to start shows.
func (p *proc) logSince() []byte {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, p.logFrom, tailBytes))
	return b
}

// tail formats the end of the log for an error message.
func (p *proc) tail() string {
	return formatTail(p.logPath)
}

// formatTail returns "\n--- last lines of PATH ---\n..." or "" when the log
// is empty or unreadable.
func formatTail(path string) string {
	t := tailOf(readEnd(path), tailLines)
	if t == "" {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", path, t)
}

// readEnd returns at most the last tailBytes of a file, which may be large:
// a replica under a benchmark logs every request.
func readEnd(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(0, info.Size()-tailBytes)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, tailBytes))
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b
}

func tailOf(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check until it returns nil, p exits, ctx ends or
// readyTimeout passes. Errors name the process and quote its log.
func waitFor(ctx context.Context, p *proc, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitedError("while waiting until " + what)
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s: gave up waiting until %s (%v): %v%s", p.name, what, context.Cause(ctx), err, p.tail())
		case <-tick.C:
		}
	}
}

// newProbeClient returns a client for readiness probes: short timeouts and no
// idle connections left behind.
func newProbeClient() *http.Client {
	return &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
}

// httpOK returns a check that GETs url and wants status 200.
func httpOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := httpGet(ctx, client, url)
		return err
	}
}

// httpGet GETs url and returns the response headers when the status is 200.
func httpGet(ctx context.Context, client *http.Client, url string) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Header, nil
}

// sharedWriter serializes the copies of several processes' output into one
// io.Writer (Options.Stdout), a whole line at a time.
type sharedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *sharedWriter) prefixed(name string) *prefixWriter {
	return &prefixWriter{out: s, prefix: []byte(name + " | ")}
}

// prefixWriter prefixes every line with the process name. Partial lines wait
// for their end so that lines of different processes never interleave.
type prefixWriter struct {
	out    *sharedWriter
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	i := bytes.LastIndexByte(w.buf, '\n')
	if i < 0 && len(w.buf) < 64<<10 {
		return len(p), nil
	}
	var lines []byte
	if i < 0 {
		lines, w.buf = append(w.buf, '\n'), nil
	} else {
		lines = w.buf[:i+1]
		w.buf = bytes.Clone(w.buf[i+1:])
	}
	w.emit(lines)
	return len(p), nil
}

func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}

func (w *prefixWriter) emit(lines []byte) {
	var b bytes.Buffer
	for line := range bytes.Lines(lines) {
		b.Write(w.prefix)
		b.Write(line)
	}
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	// A failing copy must not stop the process: its log file has it all.
	_, _ = w.out.w.Write(b.Bytes())
}

// baseEnv is the environment of this process without SHOP_* variables, so
// that a developer's shell cannot change what a replica runs with.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHOP_") {
			env = append(env, kv)
		}
	}
	return env
}
