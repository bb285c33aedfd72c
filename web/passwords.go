package web

// Password hashing under a crowd: bcrypt is built to cost CPU, so a burst of
// logins left unbounded takes every core from the catalog and the cart, and
// from the session locks the writes wait on. And the crowd may be one
// client: the queue is shared fairly, so that one client's flood cannot keep
// everyone else's logins out.

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
)

// errHashersBusy: every password hasher is busy and the queue, or this
// client's share of it, is full. It is a 503 with Retry-After, answered at
// once; the attempt was never checked, so it counts against no limit.
var errHashersBusy = errors.New("web: password hashing is at capacity")

// hashGate bounds concurrent password hashing to a few at once (about one
// per core) with a short queue behind them, served round robin by client: a
// client with a hundred attempts waiting gets one hasher in turn with a
// client that has one. A request past the queue, or past its client's share
// of it (half), is refused at once instead of waiting: waiting would only
// stretch every login's latency while the CPU stays just as busy.
type hashGate struct {
	slots int // hashes at once
	room  int // requests that may wait, all clients together
	share int // requests one client may have waiting

	mu      sync.Mutex
	running int
	queued  int
	waiting map[string][]chan struct{} // each client's waiters, oldest first
	turns   []string                   // clients with waiters, next to be served first
}

// newHashGate lets n hashes run at once and 4n more wait, at most half of
// those from one client; n < 1 means GOMAXPROCS.
func newHashGate(n int) *hashGate {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	return &hashGate{slots: n, room: 4 * n, share: 2 * n, waiting: make(map[string][]chan struct{})}
}

// do runs fn for client when a hasher is free and it is client's turn. It
// fails with errHashersBusy when the queue or client's share of it is full,
// or with ctx's error when the request ends while queued: either way fn did
// not run.
func (g *hashGate) do(ctx context.Context, client string, fn func()) error {
	g.mu.Lock()
	if g.running < g.slots && g.queued == 0 {
		g.running++
		g.mu.Unlock()
		defer g.finish()
		fn()
		return nil
	}
	if g.queued >= g.room || len(g.waiting[client]) >= g.share {
		g.mu.Unlock()
		return errHashersBusy
	}
	turn := make(chan struct{})
	if len(g.waiting[client]) == 0 {
		g.turns = append(g.turns, client)
	}
	g.waiting[client] = append(g.waiting[client], turn)
	g.queued++
	g.mu.Unlock()

	select {
	case <-turn:
	case <-ctx.Done():
		if g.leave(client, turn) {
			return ctx.Err()
		}
		// Its turn came as the request ended: pass the hasher on.
		g.finish()
		return ctx.Err()
	}
	defer g.finish()
	fn()
	return nil
}

// leave takes a waiter out of the queue and reports whether it was still
// waiting (false: its turn has come, and it holds a hasher).
func (g *hashGate) leave(client string, turn chan struct{}) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.waiting[client]
	i := slices.Index(q, turn)
	if i < 0 {
		return false
	}
	g.dequeue(client, i)
	return true
}

// dequeue removes client's i-th waiter; g.mu held.
func (g *hashGate) dequeue(client string, i int) {
	q := slices.Delete(g.waiting[client], i, i+1)
	g.queued--
	if len(q) > 0 {
		g.waiting[client] = q
		return
	}
	delete(g.waiting, client)
	g.turns = slices.DeleteFunc(g.turns, func(c string) bool { return c == client })
}

// finish frees a hasher and hands it to the next client in turn, whose
// oldest waiter runs; that client goes to the back of the line.
func (g *hashGate) finish() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if len(g.turns) == 0 {
		return
	}
	client := g.turns[0]
	turn := g.waiting[client][0]
	g.dequeue(client, 0)
	if len(g.waiting[client]) > 0 {
		// Still waiting: from the front of the line to its back.
		g.turns = append(slices.DeleteFunc(g.turns, func(c string) bool { return c == client }), client)
	}
	g.running++
	close(turn)
}
