package web

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestHashGateTakesTurns: with one hasher busy, the waiters are served
// round robin by client, not first come first served; a client past its
// share of the queue, or anyone past the queue, is refused at once; a
// waiter whose request ends leaves the queue.
func TestHashGateTakesTurns(t *testing.T) {
	g := newHashGate(1) // 1 hasher, 4 may wait, 2 per client
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	run := func(who string) func() {
		return func() {
			mu.Lock()
			order = append(order, who)
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { g.do(t.Context(), "a", func() { <-release }) })
	waitFor := func(queued int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			g.mu.Lock()
			n, r := g.queued, g.running
			g.mu.Unlock()
			if n == queued && r == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("queued %d running %d, want %d and 1", n, r, queued)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(0)
	for i, who := range []string{"a1", "a2", "b1", "c1"} {
		wg.Go(func() {
			if err := g.do(t.Context(), who[:1], run(who)); err != nil {
				t.Errorf("%s: %v", who, err)
			}
		})
		waitFor(i + 1)
	}
	if err := g.do(t.Context(), "a", run("a3")); !errors.Is(err, errHashersBusy) {
		t.Errorf("a third waiter of one client: %v, want errHashersBusy (past its share)", err)
	}
	if err := g.do(t.Context(), "d", run("d1")); !errors.Is(err, errHashersBusy) {
		t.Errorf("a waiter past the queue: %v, want errHashersBusy", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	g.mu.Lock()
	g.room++ // room for one that gives up
	g.mu.Unlock()
	if err := g.do(ctx, "e", run("e1")); !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter whose request ended: %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	want := []string{"a1", "b1", "c1", "a2"}
	if len(order) != len(want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("served %v, want %v (round robin by client)", order, want)
		}
	}
	if g.running != 0 || g.queued != 0 || len(g.turns) != 0 {
		t.Errorf("after all: running %d, queued %d, turns %v; want nothing", g.running, g.queued, g.turns)
	}
}
