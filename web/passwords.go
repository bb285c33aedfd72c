package web

// Password hashing under a crowd: bcrypt is built to cost CPU, so a burst of
// logins left unbounded takes every core from the catalog and the cart, and
// from the session locks the writes wait on.

import (
	"context"
	"errors"
	"runtime"
)

// errHashersBusy: every password hasher is busy and the queue is full. It is
// a 503 with Retry-After, answered at once.
var errHashersBusy = errors.New("web: password hashing is at capacity")

// hashGate bounds concurrent password hashing to a few at once (about one per
// core) with a short queue behind them. A request past the queue is refused
// at once instead of waiting: waiting would only stretch every login's
// latency while the CPU stays just as busy.
type hashGate struct {
	running  chan struct{} // one token per hash in progress
	admitted chan struct{} // one token per request running or queued
}

// newHashGate lets n hashes run at once and n more wait; n < 1 means
// GOMAXPROCS.
func newHashGate(n int) *hashGate {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	return &hashGate{running: make(chan struct{}, n), admitted: make(chan struct{}, 2*n)}
}

// do runs fn when a hasher is free. It fails with errHashersBusy when the
// queue is full, or with ctx's error when the request ends while queued.
func (g *hashGate) do(ctx context.Context, fn func()) error {
	select {
	case g.admitted <- struct{}{}:
	default:
		return errHashersBusy
	}
	defer func() { <-g.admitted }()
	select {
	case g.running <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.running }()
	fn()
	return nil
}
