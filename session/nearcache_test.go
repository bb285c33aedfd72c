package session_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
)

// cacheEvents records a store's near-cache events and invalidation
// connections.
type cacheEvents struct {
	session.Observer
	mu     sync.Mutex
	counts map[string]int
	ids    chan int64
}

func newCacheEvents() *cacheEvents {
	return &cacheEvents{counts: map[string]int{}, ids: make(chan int64, 16)}
}

func (e *cacheEvents) ObserveStore(string, time.Duration, error) {}
func (e *cacheEvents) ObserveLockWait(time.Duration, bool)       {}
func (e *cacheEvents) ObserveNearCache(event string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[event]++
}

func (e *cacheEvents) count(event string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[event]
}

// cachedStore is a replica's near-cached store over r, and its events.
func cachedStore(t *testing.T, r *testenv.Redis) (*session.CachedRedisStore, *cacheEvents) {
	t.Helper()
	rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
	ev := newCacheEvents()
	st := session.NewCachedRedis(rc, session.Options{Lock: true, Observer: ev}, session.CacheOptions{OnConnected: func(id int64) { ev.ids <- id }})
	t.Cleanup(func() {
		st.Close()
		rc.Close()
	})
	return st, ev
}

// connectedID waits, bounded, for the store's next invalidation connection.
func connectedID(t *testing.T, ev *cacheEvents) int64 {
	t.Helper()
	select {
	case id := <-ev.ids:
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("the invalidation connection did not subscribe within 5 s")
		return 0
	}
}

// bare is a cookie without its version: a client that knows the session but
// not its last write.
func bare(cookie string) string {
	token, _, _ := strings.Cut(cookie, ".")
	return token
}

// writeCart loads cookie's session for a write on st, sets its cart and
// saves it; it returns the new cookie.
func writeCart(t *testing.T, st session.Store, cookie, cart string) string {
	t.Helper()
	s, err := st.Load(t.Context(), cookie, true)
	if err != nil {
		t.Fatal(err)
	}
	s.Touch("test")
	s.SetCart([]byte(cart))
	c, _, err := st.Save(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readCart loads cookie's session for a read and returns its cart and
// where it came from.
func readCart(t *testing.T, st session.Store, cookie string) (cart, source string) {
	t.Helper()
	s, err := st.Load(t.Context(), cookie, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Cart()), s.NearCache()
}

// TestNearCacheInvalidationConnectionKilled: Redis kills the invalidation
// connection (CLIENT KILL). The replica flushes its copies at once and
// serves nothing from the cache until it has subscribed again; reads stay
// correct throughout, and invalidation works again afterwards.
func TestNearCacheInvalidationConnectionKilled(t *testing.T) {
	r := testenv.StartRedis(t)
	a, evA := cachedStore(t, r)
	b, evB := cachedStore(t, r)
	connectedID(t, evA)
	id := connectedID(t, evB)

	cookie := writeCart(t, a, "", `{"rev":1}`)
	cachedOn(t, b, bare(cookie), `{"rev":1}`)

	conn, err := redis.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	flushes := evB.count(session.CacheFlush)
	if _, err := conn.Do("CLIENT", "KILL", "ID", id); err != nil {
		t.Fatalf("CLIENT KILL ID %d: %v", id, err)
	}
	for deadline := time.Now().Add(2 * time.Second); evB.count(session.CacheFlush) == flushes; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b did not flush its near-cache within 2 s of losing its invalidation connection")
		}
	}

	// While b cannot hear Redis, a write on a is still what b reads.
	cookie = writeCart(t, a, cookie, `{"rev":2}`)
	if cart, src := readCart(t, b, bare(cookie)); cart != `{"rev":2}` || src == session.CacheHit {
		t.Fatalf("read on b after the kill: %s from %q, want rev 2 from Redis", cart, src)
	}

	// Back: a new connection, an empty cache, and invalidation at work.
	if next := connectedID(t, evB); next == id {
		t.Fatalf("b's invalidation connection has the killed one's id %d", id)
	}
	if entries, _, live := b.CacheStats(); !live || entries != 0 {
		t.Fatalf("b after reconnecting: live %v with %d entries, want live and empty", live, entries)
	}
	cachedOn(t, b, bare(cookie), `{"rev":2}`)
	writeCart(t, a, cookie, `{"rev":3}`)
	seenWithin(t, 100*time.Millisecond, func() bool {
		cart, _ := readCart(t, b, bare(cookie))
		return cart == `{"rev":3}`
	}, "b never showed a's write after reconnecting")
}

// cachedOn reads cookie's session on st until st serves it from its
// near-cache, and checks the cart. A first read fills the cache, but the
// invalidation of the write before may still be on its way and drop that
// copy: hence a few reads, bounded.
func cachedOn(t *testing.T, st session.Store, cookie, want string) {
	t.Helper()
	seenWithin(t, time.Second, func() bool {
		cart, src := readCart(t, st, cookie)
		if cart != want {
			t.Fatalf("read: cart %s, want %s", cart, want)
		}
		return src == session.CacheHit
	}, "never served from the near-cache")
}

// seenWithin polls ok until it holds, failing after d.
func seenWithin(t *testing.T, d time.Duration, ok func() bool, msg string) {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("%s within %v", msg, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestNearCacheFlushAll: FLUSHALL in Redis empties every replica's copies
// (Redis sends an invalidation naming no key).
func TestNearCacheFlushAll(t *testing.T) {
	r := testenv.StartRedis(t)
	a, evA := cachedStore(t, r)
	connectedID(t, evA)
	cookie := writeCart(t, a, "", `{"rev":1}`)
	readCart(t, a, bare(cookie))
	conn, err := redis.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	seenWithin(t, time.Second, func() bool {
		s, err := a.Load(t.Context(), bare(cookie), false)
		return err == nil && !s.Known()
	}, "the session was still served after FLUSHALL")
}
