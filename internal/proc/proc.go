// Package proc supervises the processes that tests, the cluster harness and
// the lab start (redis-server, Sentinel, nginx, PostgreSQL, shop replicas):
// it starts them with their output in a log file, stops, kills (SIGKILL to
// the whole process group), pauses (SIGSTOP/SIGCONT), waits for readiness
// and quotes the end of a log when something goes wrong.
//
// Children die with their supervisor, even one killed with kill -9: on Linux
// the kernel sends them SIGKILL (Pdeathsig) when this process dies, and a
// process whose own children would outlive it (nginx's workers), or any
// process where there is no Pdeathsig, is watched by a guard that kills its
// whole process group.
//
// The package does not import testing: internal/testenv and the
// scenarios/cluster harness are thin wrappers over it.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// ReadyTimeout bounds every WaitUntil: how long a process may take to
	// become ready.
	ReadyTimeout = 10 * time.Second
	// PollInterval is how often a wait looks again.
	PollInterval = 25 * time.Millisecond
	// killTimeout bounds the wait for a process to die after SIGKILL.
	killTimeout = 5 * time.Second
	// pauseTimeout bounds the wait for a process to be stopped after SIGSTOP.
	pauseTimeout = 2 * time.Second
)

// ErrAddrInUse marks a start that failed because another process took the
// port between picking it and the child binding it; the caller picks again.
var ErrAddrInUse = errors.New("address already in use")

// Spec is what Start runs.
type Spec struct {
	// Name names the process in errors and prefixes its lines in Out.
	Name string
	Path string
	Args []string
	Env  []string // nil inherits the environment
	Dir  string
	// LogPath is the file stdout and stderr are appended to, across
	// restarts.
	LogPath string
	// Out, when set, gets a copy of the output, every line prefixed with
	// Name.
	Out *Mux
	// Guard kills the whole process group when this process dies and when
	// the leader exits: for a process whose own children Pdeathsig does not
	// reach (nginx's workers). Where there is no Pdeathsig every process is
	// guarded.
	Guard bool
	// Credential runs the process as another user (PostgreSQL, which
	// refuses root); nil runs it as ourselves.
	Credential *syscall.Credential
}

// Process is one run of a process. A restart is a new Process.
type Process struct {
	name    string
	logPath string
	logFrom int64 // size of the log file when this run started
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait has returned
	termed  atomic.Bool   // SIGTERM was sent

	// Set before done is closed; read only after.
	state *os.ProcessState
}

// Start starts the process in a process group of its own and returns at
// once; WaitUntil waits for it to be ready.
func Start(s Spec) (*Process, error) {
	f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("proc: %s: open log: %w", s.Name, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("proc: %s: open log: %w", s.Name, err)
	}

	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = s.Credential
	var w io.Writer = f
	var pw *PrefixWriter
	if s.Out != nil {
		pw = s.Out.Prefixed(s.Name)
		w = io.MultiWriter(f, pw)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// With a copy to s.Out, Wait also waits for the copying goroutine, which
	// a grandchild holding the pipe (an nginx worker) could stretch forever.
	cmd.WaitDelay = time.Second

	if err := startCmd(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("proc: start %s: %w", s.Name, err)
	}
	p := &Process{name: s.Name, logPath: s.LogPath, logFrom: info.Size(), cmd: cmd, done: make(chan struct{})}
	var guard *groupGuard
	if s.Guard || !havePdeathsig {
		if guard, err = guardGroup(cmd.Process.Pid); err != nil {
			p.killGroup()
			cmd.Wait()
			f.Close()
			return nil, fmt.Errorf("proc: start %s: %w", s.Name, err)
		}
	}
	go func() {
		cmd.Wait() // the exit status is in ProcessState
		if guard != nil {
			// Children that outlive their leader; they hold the group's
			// number, so it still names this group.
			p.killGroup()
			guard.release()
		}
		if pw != nil {
			pw.Flush()
		}
		f.Close()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p, nil
}

// Name is the process's name from its Spec.
func (p *Process) Name() string { return p.name }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file the process logs to.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitCode is the exit status, -1 when a signal ended the process or it has
// not exited yet.
func (p *Process) ExitCode() int {
	if p.Running() || p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// Wait waits for the process to exit and returns its exit code, -1 when a
// signal ended it.
func (p *Process) Wait(ctx context.Context) (exitCode int, err error) {
	select {
	case <-p.done:
		return p.ExitCode(), nil
	case <-ctx.Done():
		return -1, fmt.Errorf("proc: wait for %s: %w", p.name, context.Cause(ctx))
	}
}

// Signal sends sig to the process itself (not its group): a graceful signal
// lets the process deal with its own children. An exited process is not an
// error.
func (p *Process) Signal(sig os.Signal) error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("proc: signal %s: %w", p.name, err)
	}
	return nil
}

// Term sends SIGTERM, then SIGCONT: a paused process would hold SIGTERM
// pending until resumed.
func (p *Process) Term() error {
	p.termed.Store(true)
	return errors.Join(p.Signal(syscall.SIGTERM), p.Signal(syscall.SIGCONT))
}

// Termed reports whether Term was called: a second SIGTERM may cut a drain
// short, as in a terminal.
func (p *Process) Termed() bool { return p.termed.Load() }

// Pause stops the process with SIGSTOP and returns once it is stopped.
// kill(2) only queues the signal: without the wait a request sent right
// after Pause may still be answered, and a "stalled" test passes or fails by
// luck.
func (p *Process) Pause() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(pauseTimeout)
	for p.Running() && !Stopped(p.Pid()) {
		if time.Now().After(deadline) {
			return fmt.Errorf("proc: pause %s: not stopped %s after SIGSTOP", p.name, pauseTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// killGroup sends SIGKILL to the whole process group, so that children (nginx
// workers, a Redis rewrite child) die with the leader. Only while the leader
// lives or its group is known to hold members: once both are gone the number
// may name someone else's group.
func (p *Process) killGroup() {
	// ESRCH: nothing left in the group.
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
}

// Kill sends SIGKILL to the process group, as a crash would, and waits for
// the process to be reaped.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	p.killGroup()
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("proc: %s (pid %d) still running %s after SIGKILL", p.name, p.Pid(), killTimeout)
	}
}

// Stop sends SIGTERM and waits up to grace for the exit, then SIGKILLs. An
// escalation is an error: a process that ignores SIGTERM breaks the
// contract. Stopping an exited process does nothing.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Term(); err != nil {
		return errors.Join(err, p.Kill())
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		if err := p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("proc: %s did not exit within %s of SIGTERM; killed%s", p.name, grace, p.Tail())
	}
}

// WaitUntil polls check until it returns nil, the process exits, ctx ends or
// ReadyTimeout passes. Errors name the process and quote its log; an exit
// whose log says the address was in use wraps ErrAddrInUse.
func (p *Process) WaitUntil(ctx context.Context, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.ExitedError("while waiting until " + what)
		case <-ctx.Done():
			return fmt.Errorf("proc: %s: gave up waiting until %s (%v): %v%s", p.name, what, context.Cause(ctx), err, p.Tail())
		case <-tick.C:
		}
	}
}

// ExitedError describes a process that exited while something waited for
// it, quoting its log; it wraps ErrAddrInUse when the log says so.
func (p *Process) ExitedError(what string) error {
	err := fmt.Errorf("proc: %s exited (%s) %s%s", p.name, p.state, what, p.Tail())
	if bytes.Contains(bytes.ToLower(p.LogSince()), []byte(ErrAddrInUse.Error())) {
		err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
	}
	return err
}

// LogSince returns the start of what this run wrote to its log, where a
// failure to start shows.
func (p *Process) LogSince() []byte {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, p.logFrom, tailBytes))
	return b
}

// Tail formats the end of the log for an error message.
func (p *Process) Tail() string { return FormatTail(p.logPath) }
