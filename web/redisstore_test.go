package web

import (
	"context"
	"sync"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/testenv"
)

// TestRedisStoreLockedWrite: a locked write reads the session in the lock's
// round trip and releases the lock in the commit's, leaving nothing behind;
// concurrent locked writes to one session still serialize.
func TestRedisStoreLockedWrite(t *testing.T) {
	rd := testenv.StartRedis(t)
	sessions := NewRedisSessions(rd.Addr(), true)
	t.Cleanup(func() { sessions.Close() })
	m := sessions.manager
	locks := sessions.locks.(redisLocks)
	store := locks.store

	ctx, err := m.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Put(ctx, keyWriter, "0")
	token, _, err := m.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// n writers in parallel, each read-modify-write under the lock: none
	// may be lost.
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(context.Background(), LockWait)
			defer cancel()
			unlock, err := sessions.locks.Lock(lctx, token)
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			ctx, err := m.Load(context.Background(), token)
			if err != nil {
				t.Error(err)
				return
			}
			m.Put(ctx, keyWriter, m.GetString(ctx, keyWriter)+"+")
			if _, _, err := m.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	ctx, err = m.Load(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.GetString(ctx, keyWriter); len(got) != 1+n {
		t.Errorf("after %d locked writes: %q, want one + each", n, got)
	}
	conn, err := redis.Dial("tcp", rd.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n, _ := redis.Int(conn.Do("EXISTS", "lock:session:"+token)); n != 0 {
		t.Error("the lock outlived the writes")
	}
	if ttl, _ := redis.Int64(conn.Do("PTTL", sessionKeyPrefix+token)); ttl <= 0 || ttl > sessionLifetime.Milliseconds() {
		t.Errorf("session PTTL %d, want its lifetime", ttl)
	}
	leftovers := 0
	store.held.Range(func(any, any) bool { leftovers++; return true })
	store.prefetched.Range(func(any, any) bool { leftovers++; return true })
	if leftovers != 0 {
		t.Errorf("%d held locks or prefetched sessions left in the store", leftovers)
	}

	// A lock taken and released without a commit (the write changed
	// nothing) is released by the unlock itself.
	unlock, err := sessions.locks.Lock(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if n, _ := redis.Int(conn.Do("EXISTS", "lock:session:"+token)); n != 0 {
		t.Error("an uncommitted write's lock was not released")
	}
}
