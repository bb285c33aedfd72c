package testenv

import (
	"context"
	"testing"
	"time"
)

// TestRedisLifecycle: the Redis that web's tests stop, restart and stall
// does each of those for real.
func TestRedisLifecycle(t *testing.T) {
	r := StartRedis(t)
	answers := func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		return ping(ctx, r.Addr()) == nil
	}
	if !answers() {
		t.Fatal("a started Redis does not answer PING")
	}
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	if answers() {
		t.Error("a paused Redis answers PING")
	}
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	if !answers() {
		t.Error("a resumed Redis does not answer PING")
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if answers() {
		t.Error("a stopped Redis answers PING")
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !answers() {
		t.Error("a restarted Redis does not answer PING")
	}
}
