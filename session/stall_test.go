package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/statelab/shop/session"
)

// TestLockAfterRedisStall: a locked write whose lock attempt times out
// while Redis is stopped (SIGSTOP) leaves its SET NX in Redis's socket, to
// land when Redis resumes. The next write on that session, once Redis
// answers again, must get the lock at once instead of waiting out the
// stale lock's TTL (LockWait is shorter than the TTL, so waiting would be
// ErrLockTimeout).
func TestLockAfterRedisStall(t *testing.T) {
	f := newStore(t, session.Redis, true, nil)
	cookie := save(t, f.store, "shop1")

	if err := f.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			f.redis.Resume()
		}
	}()
	_, err := f.store.Load(t.Context(), cookie, true)
	if !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("locked load during the stall: %v, want ErrUnavailable", err)
	}
	time.Sleep(time.Second) // 2 s of stall in all, as in the issue
	if err := f.redis.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	// Redis answers again: wait for that, as a user would by reloading.
	deadline := time.Now().Add(5 * time.Second)
	for f.store.Ping(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Redis does not answer after SIGCONT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 2 {
		s, err := f.store.Load(t.Context(), cookie, true)
		if err != nil {
			t.Fatalf("write %d after the stall: %v, want the lock at once", i+1, err)
		}
		s.Touch("shop1")
		if _, _, err := f.store.Save(t.Context(), s); err != nil {
			t.Fatalf("save %d after the stall: %v", i+1, err)
		}
	}
}
