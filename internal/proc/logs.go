package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

const (
	// tailLines is how much of a log an error message quotes.
	tailLines = 30
	// tailBytes is how much of a log is read to find those lines.
	tailBytes = 64 << 10
)

// FormatTail returns "\n--- last lines of PATH ---\n..." or "" when the log
// is empty or unreadable.
func FormatTail(path string) string {
	t := tailOf(readEnd(path), tailLines)
	if t == "" {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", path, t)
}

// readEnd returns at most the last tailBytes of a file, which may be large:
// a replica under a benchmark logs every request.
func readEnd(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(0, info.Size()-tailBytes)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, tailBytes))
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b
}

func tailOf(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// Mux serializes the copies of several processes' output into one
// io.Writer (a terminal, a test's buffer), a whole line at a time.
type Mux struct {
	mu sync.Mutex
	w  io.Writer
}

// NewMux returns a Mux writing to w.
func NewMux(w io.Writer) *Mux { return &Mux{w: w} }

// Prefixed returns a writer whose lines reach the Mux prefixed "name | ".
func (m *Mux) Prefixed(name string) *PrefixWriter {
	return &PrefixWriter{out: m, prefix: []byte(name + " | ")}
}

// PrefixWriter prefixes every line with a process name. Partial lines wait
// for their end so that lines of different processes never interleave.
type PrefixWriter struct {
	out    *Mux
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

// Write implements io.Writer; it never fails, so that a failing copy cannot
// stop the process: its log file has it all.
func (w *PrefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	i := bytes.LastIndexByte(w.buf, '\n')
	if i < 0 && len(w.buf) < 64<<10 {
		return len(p), nil
	}
	var lines []byte
	if i < 0 {
		lines, w.buf = append(w.buf, '\n'), nil
	} else {
		lines = w.buf[:i+1]
		w.buf = bytes.Clone(w.buf[i+1:])
	}
	w.emit(lines)
	return len(p), nil
}

// Flush writes a last partial line, ended with a newline.
func (w *PrefixWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}

func (w *PrefixWriter) emit(lines []byte) {
	var b bytes.Buffer
	for line := range bytes.Lines(lines) {
		b.Write(w.prefix)
		b.Write(line)
	}
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	_, _ = w.out.w.Write(b.Bytes())
}
