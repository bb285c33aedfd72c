package redisclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/scenarios/cluster"
)

func set(t *testing.T, c *redisclient.Client, key string, v any) error {
	t.Helper()
	return c.Do(t.Context(), func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "SET", key, v)
		return err
	})
}

func get(t *testing.T, c *redisclient.Client, key string) (int, error) {
	t.Helper()
	var n int
	err := c.Do(t.Context(), func(ctx context.Context, conn redis.Conn) (err error) {
		n, err = redis.Int(redis.DoContext(conn, ctx, "GET", key))
		return err
	})
	return n, err
}

// One tier for the whole package (starting one takes seconds): each step
// leaves it as the next expects.
func TestSentinel(t *testing.T) {
	ha := cluster.StartRedisHAT(t)
	c := redisclient.New(redisclient.Config{Sentinels: ha.SentinelAddrs(), Master: ha.MasterName()})
	defer c.Close()
	watchCtx, stopWatch := context.WithCancel(t.Context())
	watching := make(chan struct{})
	go func() { defer close(watching); c.Watch(watchCtx) }()
	defer func() { stopWatch(); <-watching }()

	first, err := ha.Primary(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("topology", func(t *testing.T) {
		if err := set(t, c, "statelab:k", "v"); err != nil {
			t.Fatal(err)
		}
		if c.Addr() != ha.ProxyAddr(first) {
			t.Errorf("Addr %q, want the primary %s", c.Addr(), ha.ProxyAddr(first))
		}
		top, ok, err := c.Topology(t.Context())
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if top.Primary != ha.ProxyAddr(first) || len(top.Replicas) != 1 || !top.Replicas[0].Up || len(top.Sentinels) != 3 {
			t.Errorf("topology %+v: want primary %s, one replica up, three sentinels", top, ha.ProxyAddr(first))
		}
		if !top.Failover.At.IsZero() {
			t.Errorf("a failover was seen before any: %+v", top.Failover)
		}
	})

	t.Run("READONLY drops the connection and is an outage", func(t *testing.T) {
		replica := ha.Servers()[1]
		conn, err := redis.DialContext(t.Context(), "tcp", ha.ProxyAddr(replica))
		if err != nil {
			t.Fatal(err)
		}
		pc := redisclient.NewPrimaryConn(conn, ha.ProxyAddr(replica))
		defer pc.Close()
		_, err = pc.Do("SET", "statelab:k", "w")
		var reply redis.Error
		if !errors.As(err, &reply) || !redisclient.OutageReply(reply) {
			t.Fatalf("SET on a replica: %v, want a READONLY reply that counts as an outage", err)
		}
		if !errors.Is(pc.Err(), redisclient.ErrMoved) {
			t.Errorf("Err after READONLY = %v, want errMoved so that the pool closes it", pc.Err())
		}
		// The same through a pipeline read with Do(""), as the session
		// store's commit does.
		pc2 := redisclient.NewPrimaryConn(must(redis.DialContext(t.Context(), "tcp", ha.ProxyAddr(replica))), ha.ProxyAddr(replica))
		defer pc2.Close()
		pc2.Send("MULTI")
		pc2.Send("SET", "statelab:k", "w")
		pc2.Send("EXEC")
		if _, err := pc2.Do(""); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(pc2.Err(), redisclient.ErrMoved) {
			t.Errorf("Err after a pipelined READONLY = %v, want errMoved", pc2.Err())
		}
	})

	t.Run("a primary that comes back after a failover gets no writes", func(t *testing.T) {
		// An idle pooled connection to the primary, as a replica keeps.
		if err := set(t, c, "statelab:before", 1); err != nil {
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
		for c.LastFailover().To != ha.ProxyAddr(next) {
			if time.Now().After(deadline) {
				t.Fatalf("Watch heard no failover to %s: %+v", ha.ProxyAddr(next), c.LastFailover())
			}
			time.Sleep(10 * time.Millisecond)
		}
		top, _, err := c.Topology(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if top.Failover.From != ha.ProxyAddr(first) || top.Failover.To != ha.ProxyAddr(next) {
			t.Errorf("last failover %+v, want %s → %s", top.Failover, ha.ProxyAddr(first), ha.ProxyAddr(next))
		}
		if role, err := first.Role(t.Context()); err != nil || role != "master" {
			t.Fatalf("the old primary answers ROLE %q, %v: want it still to believe it is the primary, or the test proves nothing", role, err)
		}
		for i := range 20 {
			if err := set(t, c, "statelab:after", i); err != nil {
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
		if got, err := get(t, c, "statelab:after"); err != nil || got != 19 {
			t.Errorf("GET on the new primary = %d, %v; want 19", got, err)
		}
	})
}

func must(c redis.Conn, err error) redis.Conn {
	if err != nil {
		panic(err)
	}
	return c
}
