//go:build unix && !linux

package proc

import (
	"os/exec"
	"syscall"
)

// havePdeathsig: outside Linux nothing kills our children when we die, so
// Start guards every process group (guard.go).
const havePdeathsig = false

// sysProcAttr puts the child in its own process group, which the guard kills
// when this process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// startCmd starts cmd: without Pdeathsig the thread that forks does not
// matter.
func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
