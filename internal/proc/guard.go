package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// groupGuard kills a process group when this process dies, even by SIGKILL
// or a test timeout: Pdeathsig reaches only our direct children, not nginx's
// workers, and exists only on Linux. A shell blocks reading its stdin, a pipe
// whose write end only this process holds; when this process dies the kernel
// closes that end, the read returns and the shell kills the group.
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
