package testenv

import "github.com/statelab/shop/internal/proc"

// FreePort returns a free loopback port that this process has not handed
// out yet (proc.FreePort).
func FreePort() (int, error) { return proc.FreePort() }

// ReleasePort lets FreePort hand out port again.
func ReleasePort(port int) { proc.ReleasePort(port) }

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return proc.Loopback(port) }
