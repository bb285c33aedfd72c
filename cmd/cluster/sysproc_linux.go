package main

import "syscall"

// goremanAttr puts goreman in its own process group, so that Ctrl-C
// reaches this program alone (which then stops goreman once), and has the
// kernel send goreman SIGTERM when this program dies, however it dies
// (kill -9, a closed terminal): goreman then stops every process of the
// Procfile as it does on Ctrl-C, and no replica outlives `make cluster`
// holding its port. Pdeathsig fires when the thread that started goreman
// exits; the Go runtime keeps its threads unless a goroutine exits while
// locked to one, which this program never does.
func goremanAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
