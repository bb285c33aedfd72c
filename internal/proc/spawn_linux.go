package proc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// havePdeathsig: Linux kills our children itself when we die.
const havePdeathsig = true

// sysProcAttr puts the child in its own process group, so that a forced kill
// reaches its children too, and has the kernel SIGKILL it when this process
// dies, so that a crashed supervisor (kill -9, a test timeout) leaks nothing.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// spawner is the one goroutine, locked to its OS thread for the life of the
// process, that forks every child. Pdeathsig fires when the *thread* that
// forked the child exits, not the process: a child forked on a thread that
// the runtime later ends (a goroutine that exits while locked to it) would be
// killed under a living supervisor. A thread that never exits makes
// Pdeathsig mean "when this process dies". The thread belongs to the
// process, like the ports in use, hence process-wide state.
var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// startCmd starts cmd on the spawner's thread.
func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as we do
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnRequest{cmd: cmd, done: done}
	return <-done
}
