package web

// The event streams' pump: open streams cost memory, not goroutines.
//
// net/http gives every connection a goroutine (its stack grows to 16 KiB
// under our middleware), a second one reading in the background, and
// 10 KiB of buffers: about 37 KiB per open stream, measured, or 180 MiB
// for 5,000 streams. A stream needs none of that between two events. So
// once its headers are decided, GET /events takes the connection over
// (http.ResponseController.Hijack) and leaves it here, with one small
// goroutine per stream that only notices the client leave: a few workers,
// started when a stream has something to write and gone when none has,
// write to whichever stream the hub woke, and one ticker, running while
// any stream is open, wakes them all for the heartbeat. A write that
// cannot go out within pumpWriteStall (the client stopped reading and its
// socket buffers are full) drops the stream: nothing is queued for a
// client without bound, and no worker waits on it long.

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/statelab/shop/live"
)

const (
	// maxPumpWorkers bounds the goroutines writing to streams at once.
	maxPumpWorkers = 8
	// pumpWriteStall is how long one write may block before the stream
	// is dropped.
	pumpWriteStall = time.Second
)

// pump serves taken-over event streams.
type pump struct {
	heartbeat time.Duration

	mu      sync.Mutex
	streams map[*pumped]struct{}
	queue   []*pumped
	workers int
	ticking bool
}

// pumped is one taken-over stream.
type pumped struct {
	conn net.Conn
	st   *live.Stream
	pos  string // the id of the last event written
	// Guarded by pump.mu: waiting in the queue, being written, woken
	// again while being written, heartbeat due.
	queued, busy, again, beat bool
}

func newPump(heartbeat time.Duration) *pump {
	return &pump{heartbeat: heartbeat, streams: make(map[*pumped]struct{})}
}

// add takes a stream over; its ready event and backlog are written.
func (p *pump) add(conn net.Conn, st *live.Stream, pos string) {
	h := &pumped{conn: conn, st: st, pos: pos}
	p.mu.Lock()
	p.streams[h] = struct{}{}
	if !p.ticking {
		p.ticking = true
		go p.tick()
	}
	p.mu.Unlock()
	st.SetNotify(func() { p.wake(h) })
	// A client that leaves must free its place at once, not at the next
	// heartbeat's failed write: one small goroutine per stream waits for
	// the connection to end (an SSE client sends nothing more), on a
	// stack of a few KiB, not the request's.
	go func() {
		var b [1]byte
		h.conn.Read(b[:])
		st.Close() // wakes a worker, which closes the connection
	}()
}

// wake queues h for a worker; it never blocks (the hub calls it while
// delivering).
func (p *pump) wake(h *pumped) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wakeLocked(h)
}

func (p *pump) wakeLocked(h *pumped) {
	switch {
	case h.queued:
	case h.busy:
		h.again = true
	default:
		h.queued = true
		p.queue = append(p.queue, h)
		if p.workers < maxPumpWorkers {
			p.workers++
			go p.work()
		}
	}
}

// work writes to woken streams until none is waiting.
func (p *pump) work() {
	var buf bytes.Buffer
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		h := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		h.queued, h.busy = false, true
		beat := h.beat
		h.beat = false
		p.mu.Unlock()

		open := p.serve(h, beat, &buf)

		p.mu.Lock()
		h.busy = false
		if !open {
			delete(p.streams, h)
		} else if h.again {
			h.again = false
			p.wakeLocked(h)
		}
		p.mu.Unlock()
	}
}

// serve writes what h has; it reports false once the stream is over.
func (p *pump) serve(h *pumped, beat bool, buf *bytes.Buffer) bool {
	buf.Reset()
	evs, err := h.st.Next()
	switch {
	case errors.Is(err, live.ErrDraining):
		// Spread the reconnections over a second, so that a drained
		// replica's browsers do not all arrive at once.
		buf.WriteString("retry: " + strconv.Itoa(250+rand.IntN(1000)) + "\n\n")
	case errors.Is(err, live.ErrResume):
		buf.WriteString("retry: 250\n\n")
	case err == nil:
		for _, e := range evs {
			appendEvent(buf, &h.pos, e)
		}
		if beat {
			buf.WriteString(": heartbeat\n\n")
		}
	}
	if buf.Len() > 0 {
		h.conn.SetWriteDeadline(time.Now().Add(pumpWriteStall))
		if _, werr := h.conn.Write(buf.Bytes()); werr != nil && err == nil {
			err = werr // the client went away, or stopped reading
		}
	}
	if buf.Cap() > 64<<10 {
		*buf = bytes.Buffer{} // a big backlog's buffer is not kept
	}
	if err != nil {
		h.conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			h.st.Drop()
		} else {
			h.st.Close()
		}
		return false
	}
	return true
}

// tick wakes every stream for its heartbeat, while any is open.
func (p *pump) tick() {
	t := time.NewTicker(p.heartbeat)
	defer t.Stop()
	for range t.C {
		p.mu.Lock()
		if len(p.streams) == 0 {
			p.ticking = false
			p.mu.Unlock()
			return
		}
		for h := range p.streams {
			h.beat = true
			p.wakeLocked(h)
		}
		p.mu.Unlock()
	}
}

// appendEvent writes e in the text/event-stream format. A notice has no
// id of its own and carries *pos, the id of the last event written, so
// that every event has an id and the browser's position stays true.
func appendEvent(buf *bytes.Buffer, pos *string, e live.Event) {
	if e.ID != "" {
		*pos = e.ID
	}
	buf.WriteString("id: ")
	buf.WriteString(*pos)
	buf.WriteString("\nevent: ")
	buf.WriteString(e.Type)
	// Data is one line of JSON: json.Marshal escapes every newline.
	buf.WriteString("\ndata: ")
	buf.Write(e.Data)
	buf.WriteString("\n\n")
}
