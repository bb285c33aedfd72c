package testenv

import "syscall"

// sysProcAttr puts the child in its own process group and has the kernel
// SIGKILL it when this process dies, so that a crashed test leaks nothing.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
