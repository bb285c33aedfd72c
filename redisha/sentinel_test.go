package redisha

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/scenarios/cluster"
)

const testTimeout = 250 * time.Millisecond

func newPool(s *Sentinel) *redis.Pool {
	return &redis.Pool{
		MaxIdle: 8,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return s.Dial(ctx, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
		},
		TestOnBorrowContext: s.TestOnBorrow,
	}
}

func do(t *testing.T, pool *redis.Pool, cmd string, args ...any) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	c, err := pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return redis.DoContext(c, ctx, cmd, args...)
}

// One tier for the whole package: each step leaves it as the next expects.
func TestSentinel(t *testing.T) {
	ha := cluster.StartRedisHAT(t)
	s := New(ha.SentinelAddrs(), ha.MasterName(), testTimeout)
	defer s.Close()
	watchCtx, stopWatch := context.WithCancel(t.Context())
	watching := make(chan struct{})
	go func() { defer close(watching); s.Watch(watchCtx) }()
	defer func() { stopWatch(); <-watching }()
	pool := newPool(s)
	defer pool.Close()

	first, err := ha.Primary(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("topology", func(t *testing.T) {
		if _, err := do(t, pool, "SET", "statelab:k", "v"); err != nil {
			t.Fatal(err)
		}
		top, err := s.Topology(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if top.Primary != ha.ProxyAddr(first) || len(top.Replicas) != 1 || !top.Replicas[0].Up || len(top.Sentinels) != 3 {
			t.Errorf("topology %+v: want primary %s, one replica up, three sentinels", top, ha.ProxyAddr(first))
		}
		if !top.Failover.At.IsZero() {
			t.Errorf("a failover was seen before any: %+v", top.Failover)
		}
	})

	t.Run("READONLY drops the connection", func(t *testing.T) {
		replica := ha.Servers()[1]
		c, err := redis.DialContext(t.Context(), "tcp", ha.ProxyAddr(replica))
		if err != nil {
			t.Fatal(err)
		}
		pc := &primaryConn{Conn: c, addr: ha.ProxyAddr(replica)}
		defer pc.Close()
		if _, err := pc.Do("SET", "statelab:k", "w"); err == nil {
			t.Fatal("SET on a replica succeeded")
		}
		if !errors.Is(pc.Err(), errMoved) {
			t.Errorf("Err after READONLY = %v, want errMoved so that the pool closes it", pc.Err())
		}
	})

	t.Run("a primary that comes back after a failover gets no writes", func(t *testing.T) {
		// An idle pooled connection to the primary, as a replica keeps.
		if _, err := do(t, pool, "SET", "statelab:before", "1"); err != nil {
			t.Fatal(err)
		}
		// Frozen, not killed: its connections stay open, and when it resumes
		// it still believes it is the primary until Sentinel demotes it.
		if err := first.Pause(); err != nil {
			t.Fatal(err)
		}
		next, err := ha.WaitFailover(t.Context(), first)
		if err != nil {
			first.Resume()
			t.Fatal(err)
		}
		if err := first.Resume(); err != nil {
			t.Fatal(err)
		}
		// Until Watch heard the announcement, a borrow may still go to the
		// old primary: wait for it, bounded.
		deadline := time.Now().Add(5 * time.Second)
		for s.LastFailover().To != ha.ProxyAddr(next) {
			if time.Now().After(deadline) {
				t.Fatalf("Watch heard no failover to %s: %+v", ha.ProxyAddr(next), s.LastFailover())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if f := s.LastFailover(); f.From != ha.ProxyAddr(first) {
			t.Errorf("failover from %s, want %s", f.From, ha.ProxyAddr(first))
		}
		role, err := redis.Values(do(t, &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", first.Addr()) }}, "ROLE"))
		if err != nil || string(role[0].([]byte)) != "master" {
			t.Fatalf("the old primary answers ROLE %q, %v: want it still to believe it is the primary, or the test proves nothing", role, err)
		}
		for i := range 20 {
			if _, err := do(t, pool, "SET", "statelab:after", i); err != nil {
				t.Errorf("write %d after the failover: %v", i, err)
			}
		}
		old, err := redis.Dial("tcp", first.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if n, err := redis.Int(old.Do("EXISTS", "statelab:after")); err != nil || n != 0 {
			t.Errorf("the demoted primary holds a write made after the failover (EXISTS = %d, %v)", n, err)
		}
		got, err := redis.Int(do(t, pool, "GET", "statelab:after"))
		if err != nil || got != 19 {
			t.Errorf("GET on the new primary = %d, %v; want 19", got, err)
		}
	})
}
