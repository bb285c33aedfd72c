//go:build unix && !linux

package cluster

import "syscall"

// sysProcAttr puts the child in its own process group, so that a forced kill
// reaches its children too. Outside Linux there is no parent-death signal:
// Close (or the test's Cleanup) is what stops the processes.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
