package proc

// What /proc tells about other processes: whether one is stopped, and whose
// parent is whom.

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Stopped reports whether /proc says pid is stopped (state T). Where there
// is no /proc it says yes, and a pause is as good as its SIGSTOP. kill(2)
// only queues the signal, so whoever pauses a process polls this before
// counting it as stalled.
func Stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	state, _, ok := statFields(b)
	return ok && (state == 'T' || state == 't')
}

// Gone reports whether pid has exited: no such process, or a zombie that
// nobody reaped yet.
func Gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	state, _, ok := statFields(b)
	return ok && (state == 'Z' || state == 'X')
}

// Children returns the live (not zombie) children of ppid, read from /proc.
func Children(ppid int) (map[int]bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	kids := make(map[int]bool)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		state, parent, ok := statFields(stat)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		if parent == ppid {
			kids[pid] = true
		}
	}
	return kids, nil
}

// statFields reads the state and the parent's pid from /proc/PID/stat:
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses,
// hence the last ")".
func statFields(stat []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 2 || len(fields[0]) == 0 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	return fields[0][0], ppid, err == nil
}
