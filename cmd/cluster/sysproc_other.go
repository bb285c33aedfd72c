//go:build !linux

package main

import "syscall"

// goremanAttr leaves goreman in this program's process group where the
// kernel has no parent-death signal: a closed terminal's SIGHUP and Ctrl-C
// then reach goreman too, which stops every process of the Procfile. Only
// a kill -9 of this program alone can still leave them running.
func goremanAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
