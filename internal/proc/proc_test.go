package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supervisorEnv makes the test binary play a supervisor (TestMain) for
// TestChildrenDieWithSupervisor: its value is the folder to report in.
const supervisorEnv = "PROC_TEST_SUPERVISOR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(supervisorEnv); dir != "" {
		superviseForever(dir)
		return
	}
	code := m.Run()
	if kids, err := Children(os.Getpid()); err == nil && len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "proc: leaked child processes: %v\n", kids)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// superviseForever starts three kinds of children, writes their pids to
// dir/pids and waits to be killed:
//   - a plain child;
//   - a guarded shell whose own child (a grandchild of ours, which
//     Pdeathsig does not reach) sleeps;
//   - a child started from a goroutine whose OS thread then exits: Pdeathsig
//     fires when the thread that forked the child exits, so this one dies at
//     once unless the supervisor forks on a thread of its own.
func superviseForever(dir string) {
	fail := func(err error) {
		os.WriteFile(filepath.Join(dir, "error"), []byte(err.Error()), 0o644)
		os.Exit(2)
	}
	plain, err := Start(Spec{Name: "plain", Path: "sleep", Args: []string{"300"}, LogPath: filepath.Join(dir, "plain.log")})
	if err != nil {
		fail(err)
	}
	grand := filepath.Join(dir, "grandchild")
	guarded, err := Start(Spec{
		Name:    "guarded",
		Path:    "/bin/sh",
		Args:    []string{"-c", `sleep 300 & echo $! > "$1.tmp" && mv "$1.tmp" "$1"; wait`, "sh", grand},
		LogPath: filepath.Join(dir, "guarded.log"),
		Guard:   true,
	})
	if err != nil {
		fail(err)
	}
	// The runtime never ends the main thread: keep this goroutine on it, so
	// that the goroutine below runs on a thread that can end.
	runtime.LockOSThread()
	started := make(chan *Process)
	go func() {
		// Never unlocked: the runtime ends this thread when the goroutine
		// returns.
		runtime.LockOSThread()
		p, err := Start(Spec{Name: "thread", Path: "sleep", Args: []string{"300"}, LogPath: filepath.Join(dir, "thread.log")})
		if err != nil {
			fail(err)
		}
		started <- p
	}()
	thread := <-started
	var grandPid []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if grandPid, err = os.ReadFile(grand); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fail(err)
	}
	pids := fmt.Sprintf("%d %d %d %s", plain.Pid(), guarded.Pid(), thread.Pid(), bytes.TrimSpace(grandPid))
	if err := os.WriteFile(filepath.Join(dir, "pids.tmp"), []byte(pids), 0o644); err != nil {
		fail(err)
	}
	if err := os.Rename(filepath.Join(dir, "pids.tmp"), filepath.Join(dir, "pids")); err != nil {
		fail(err)
	}
	select {}
}

// TestChildrenDieWithSupervisor: a supervisor killed with kill -9 leaves
// nothing behind: neither its children nor a child's own child. Issue 24's
// orphans: replicas that held their ports an hour after their cluster died.
func TestChildrenDieWithSupervisor(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), supervisorEnv+"="+dir)
	sup, err := Start(Spec{Name: "supervisor", Path: exe, Args: []string{"-test.run=^$"}, Env: env, LogPath: filepath.Join(dir, "supervisor.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Kill()

	var pids []int
	err = sup.WaitUntil(t.Context(), "it reports its children", func(context.Context) error {
		if b, err := os.ReadFile(filepath.Join(dir, "error")); err == nil {
			return errors.New(string(b))
		}
		b, err := os.ReadFile(filepath.Join(dir, "pids"))
		if err != nil {
			return err
		}
		pids = nil
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return err
			}
			pids = append(pids, pid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, nothing outlives the test.
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	names := []string{"plain child", "guarded child", "child forked on an exited thread", "grandchild"}

	// While the supervisor lives, so do its children: the one whose
	// forking thread has exited too.
	time.Sleep(300 * time.Millisecond)
	for i, pid := range pids {
		if Gone(pid) {
			t.Errorf("%s (pid %d) died while its supervisor lives", names[i], pid)
		}
	}

	if err := syscall.Kill(sup.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i, pid := range pids {
		for !Gone(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !Gone(pid) {
			t.Errorf("%s (pid %d) outlived its supervisor's kill -9", names[i], pid)
		}
	}
}

// TestLifecycle: pause stalls, resume continues, stop escalates on a
// process that ignores SIGTERM and says so, kill ends a whole group.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	// A shell that ignores SIGTERM, with a child of its own.
	p, err := Start(Spec{
		Name:    "stubborn",
		Path:    "/bin/sh",
		Args:    []string{"-c", `trap '' TERM; sleep 300 & echo started; wait`},
		LogPath: filepath.Join(dir, "stubborn.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitUntil(t.Context(), "it says started", func(context.Context) error {
		if !bytes.Contains(p.LogSince(), []byte("started")) {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kids, err := Children(p.Pid())
	if err != nil || len(kids) != 1 {
		t.Fatalf("children of the shell: %v, %v", kids, err)
	}

	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if !Stopped(p.Pid()) {
		t.Error("a paused process is not stopped")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); Stopped(p.Pid()) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if Stopped(p.Pid()) {
		t.Error("a resumed process is still stopped")
	}

	err = p.Stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Errorf("Stop of a process that ignores SIGTERM = %v, want an escalation error", err)
	}
	if p.Running() {
		t.Error("still running after Stop")
	}
	if !p.Termed() {
		t.Error("Termed is false after Stop")
	}
	for kid := range kids {
		for deadline := time.Now().Add(2 * time.Second); !Gone(kid) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if !Gone(kid) {
			t.Errorf("the shell's child %d outlived the kill of its group", kid)
		}
	}
	if code := p.ExitCode(); code != -1 {
		t.Errorf("exit code of a killed process = %d, want -1", code)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	shared := NewMux(&out)
	a, b := shared.Prefixed("a"), shared.Prefixed("b")
	a.Write([]byte("one\ntw"))
	b.Write([]byte("x\n"))
	a.Write([]byte("o\nthree"))
	a.Flush()
	if got, want := out.String(), "a | one\nb | x\na | two\na | three\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestAddrInUseIsRecognized(t *testing.T) {
	p, err := Start(Spec{
		Name:    "sh",
		Path:    "/bin/sh",
		Args:    []string{"-c", "echo 'listen tcp 127.0.0.1:8081: bind: address already in use' >&2; exit 1"},
		LogPath: t.TempDir() + "/sh.log",
	})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitUntil(t.Context(), "never", func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, ErrAddrInUse) {
		t.Errorf("err = %v, want ErrAddrInUse", err)
	}
	if p.ExitCode() != 1 {
		t.Errorf("exit code = %d, want 1", p.ExitCode())
	}
}
