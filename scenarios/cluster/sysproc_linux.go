package cluster

import "syscall"

// sysProcAttr puts the child in its own process group, so that a forced kill
// reaches its children too, and has the kernel SIGKILL it when this process
// dies, so that a crashed test leaks nothing. (Pdeathsig fires when the OS
// thread that started the child exits; the Go runtime keeps its threads
// unless a goroutine exits while locked to one, which this package never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
