package main

// How a replica stops without failing a request nginx sends it.
//
// nginx OSS checks health only passively: it never reads /readyz, keeps
// sending requests to a draining replica and reuses its idle keepalive
// connections to it. A request nginx has written is not resent when it is a
// POST (proxy_next_upstream error timeout, rightly without non_idempotent),
// so it must never be written onto a connection this replica is closing: the
// shopper would get a 502. A refused connection is the one failure nginx
// always retries elsewhere. So after the drain period:
//
//  1. Close the listener. New connections are refused; nginx sends the
//     request to another replica (nothing was sent) and marks this one
//     failed for its fail_timeout.
//  2. Answer every request with "Connection: close": nginx then drops each
//     connection itself after reading the answer, and the side that closes
//     is the one that knows no request is on the wire.
//  3. Wait until no request is in flight and no connection has been used
//     for a while: nginx has stopped picking this replica.
//  4. Only then http.Server.Shutdown. It closes idle connections at once,
//     and drops unanswered a request it reads after it began: both fail a
//     request nginx is sending at that moment.
//
// Keep-alive stays on during the drain itself. SetKeepAlivesEnabled(false)
// there closes the idle connections at once, the very race above: measured
// in rolling restarts under load, it failed more POSTs than doing nothing.
// "Connection: close" from the start of the drain makes every request a new
// connection instead, and Shutdown drops the requests on the newest ones.
//
// What remains: a connection the kernel has accepted but Go has not yet when
// the listener closes is reset, and nginx fails it if it had already written
// the request. That window is tiny while nginx reuses its connections, which
// is why they stay open until the listener is closed. Only taking the replica
// out of nginx's upstreams before stopping it closes that window too.

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// quietPeriod is how long no connection may be used before Shutdown
	// closes the idle ones: far longer than the gap between two requests
	// nginx sends a replica it still picks.
	quietPeriod = 250 * time.Millisecond
	// quietMax bounds the wait for quiet, so a stop always ends.
	quietMax = 2 * time.Second
)

// connWatch follows the server's connections (http.Server.ConnState) so the
// stop can tell when nginx has left this replica alone.
type connWatch struct {
	mu      sync.Mutex
	busy    map[net.Conn]bool // every open connection; true while a request is read or served
	changed time.Time         // the last time any connection changed state
}

func newConnWatch() *connWatch { return &connWatch{busy: make(map[net.Conn]bool)} }

// track is the http.Server.ConnState hook.
func (w *connWatch) track(c net.Conn, s http.ConnState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changed = time.Now()
	switch s {
	case http.StateNew, http.StateActive:
		w.busy[c] = true
	case http.StateIdle:
		w.busy[c] = false
	default: // closed or hijacked
		delete(w.busy, c)
	}
}

// waitQuiet returns once no request is in flight and no connection changed
// state for quietPeriod since it was called, or after quietMax.
func (w *connWatch) waitQuiet() {
	start := time.Now()
	for time.Since(start) < quietMax {
		if w.quietSince(start) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *connWatch) quietSince(start time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, busy := range w.busy {
		if busy {
			return false
		}
	}
	last := w.changed
	if last.Before(start) {
		last = start
	}
	return time.Since(last) >= quietPeriod
}

// closeWhenStopping answers "Connection: close" once stopping is set, which
// makes net/http close the connection after the answer and tells nginx not
// to reuse it.
func closeWhenStopping(stopping *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
