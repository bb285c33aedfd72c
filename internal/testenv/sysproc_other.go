//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr puts the child in its own process group. Outside Linux there
// is no parent-death signal: the test's Cleanup is what stops the process.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
