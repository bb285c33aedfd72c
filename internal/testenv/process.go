package testenv

import "github.com/statelab/shop/internal/proc"

// ProcessStopped reports whether pid is stopped (state T); see proc.Stopped.
func ProcessStopped(pid int) bool { return proc.Stopped(pid) }
