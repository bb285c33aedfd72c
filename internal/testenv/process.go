package testenv

import (
	"bytes"
	"fmt"
	"os"
)

// ProcessStopped reports whether /proc says pid is stopped (state T). Where
// there is no /proc it says yes, and a pause is as good as its SIGSTOP.
// kill(2) only queues the signal, so whoever pauses a process polls this
// before counting it as stalled.
func ProcessStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces or parentheses: take the last ")".
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't')
}
