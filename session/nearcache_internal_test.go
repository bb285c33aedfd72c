package session

import (
	"strconv"
	"testing"
	"time"
)

func testEntry(ver int64, size int) *cached {
	return &cached{deadline: time.Now().Add(time.Hour), ver: ver, size: size}
}

// TestNearCacheByteBound: 100k sessions of a few hundred bytes to 1.2 KB go
// through a 1 MiB cache; after every fill the cache holds at most its
// bound, it keeps the most recent sessions and has dropped the oldest.
func TestNearCacheByteBound(t *testing.T) {
	const maxBytes = 1 << 20
	c := newNearCache(maxBytes)
	c.setLive(true)
	key := func(i int) string { return KeyPrefix + strconv.Itoa(i) }
	for i := range 100_000 {
		k := key(i)
		ticket := c.beginFill(k)
		c.endFill(k, ticket, testEntry(1, 200+i%1000))
		if _, bytes, _ := c.stats(); bytes > maxBytes {
			t.Fatalf("after %d sessions the cache holds %d bytes, over its bound of %d", i+1, bytes, maxBytes)
		}
	}
	entries, bytes, _ := c.stats()
	t.Logf("100000 sessions through a %d-byte cache: %d kept, %d bytes", maxBytes, entries, bytes)
	if entries < 500 {
		t.Errorf("only %d sessions kept in %d bytes", entries, bytes)
	}
	if len(c.slots) != entries {
		t.Errorf("%d slots for %d entries: bookkeeping leaks", len(c.slots), entries)
	}
	if _, found := c.get(key(99_999), 0, time.Now()); found != lookupHit {
		t.Error("the most recent session was evicted")
	}
	if _, found := c.get(key(0), 0, time.Now()); found != lookupMiss {
		t.Error("the oldest session is still cached")
	}
	// One session bigger than the whole bound is never kept.
	ticket := c.beginFill("big")
	c.endFill("big", ticket, testEntry(1, maxBytes))
	if _, found := c.get("big", 0, time.Now()); found != lookupMiss {
		t.Error("a session bigger than the bound was kept")
	}
}

// TestNearCacheRaces walks the orders of events that could leave an old copy
// behind, one at a time, and checks what a read finds afterwards.
func TestNearCacheRaces(t *testing.T) {
	const k = KeyPrefix + "token"
	for _, tc := range []struct {
		name string
		run  func(c *nearCache)
		want lookup
		ver  int64 // of the copy, when hit
	}{
		{"fill", func(c *nearCache) {
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
		}, lookupHit, 1},
		{"invalidation while the GET is out: the fill is dropped", func(c *nearCache) {
			ticket := c.beginFill(k)
			c.invalidate(k)
			c.endFill(k, ticket, testEntry(1, 100))
		}, lookupMiss, 0},
		{"a newer fill wins over an older one", func(c *nearCache) {
			first := c.beginFill(k)
			second := c.beginFill(k)
			c.endFill(k, second, testEntry(2, 100))
			c.endFill(k, first, testEntry(1, 100))
		}, lookupHit, 2},
		{"a fill during our own write is not kept", func(c *nearCache) {
			ticket := c.beginFill(k)
			w := c.beginWrite(k)
			c.endFill(k, ticket, testEntry(1, 100))
			c.endWrite(k, w, testEntry(2, 100))
			c.invalidate(k) // our write's own message
		}, lookupHit, 2},
		{"our write refreshes, its message arriving first", func(c *nearCache) {
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
			w := c.beginWrite(k)
			c.invalidate(k)
			c.endWrite(k, w, testEntry(2, 100))
		}, lookupHit, 2},
		{"another replica's write after ours drops our refresh", func(c *nearCache) {
			w := c.beginWrite(k)
			c.invalidate(k) // ours
			c.invalidate(k) // theirs, after ours released the lock
			c.endWrite(k, w, testEntry(2, 100))
		}, lookupMiss, 0},
		{"another replica's write after our refresh drops it", func(c *nearCache) {
			w := c.beginWrite(k)
			c.endWrite(k, w, testEntry(2, 100))
			c.invalidate(k) // ours
			c.invalidate(k) // theirs
		}, lookupMiss, 0},
		{"a failed write keeps nothing and expects no message", func(c *nearCache) {
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
			w := c.beginWrite(k)
			c.endWrite(k, w, nil)
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
			c.invalidate(k) // someone's write: must drop the copy
		}, lookupMiss, 0},
		{"overlapping writes of ours refresh nothing", func(c *nearCache) {
			w1 := c.beginWrite(k)
			w2 := c.beginWrite(k)
			c.endWrite(k, w2, testEntry(3, 100))
			c.endWrite(k, w1, testEntry(2, 100))
		}, lookupMiss, 0},
		{"connection lost: everything goes, nothing is served", func(c *nearCache) {
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
			ticket := c.beginFill(k)
			c.setLive(false)
			c.endFill(k, ticket, testEntry(1, 100))
		}, lookupBypass, 0},
		{"connection back: what was in flight before is not kept", func(c *nearCache) {
			ticket := c.beginFill(k)
			w := c.beginWrite(k + "w")
			c.setLive(false)
			c.setLive(true)
			c.endFill(k, ticket, testEntry(1, 100))
			c.endWrite(k+"w", w, testEntry(1, 100))
		}, lookupMiss, 0},
		{"flush", func(c *nearCache) {
			c.endFill(k, c.beginFill(k), testEntry(1, 100))
			c.flush()
		}, lookupMiss, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newNearCache(1 << 20)
			c.setLive(true)
			tc.run(c)
			e, got := c.get(k, 0, time.Now())
			if got != tc.want || got == lookupHit && e.ver != tc.ver {
				t.Errorf("lookup %d (version %d), want %d (version %d)", got, e.ver, tc.want, tc.ver)
			}
			if _, _, live := c.stats(); live {
				for key, sl := range c.slots {
					if sl.idle() {
						t.Errorf("slot %s left behind with nothing in it", key)
					}
				}
			}
		})
	}
}

// TestNearCacheVersion: a copy older than the version the browser's cookie
// names is not served.
func TestNearCacheVersion(t *testing.T) {
	const k = KeyPrefix + "token"
	c := newNearCache(1 << 20)
	c.setLive(true)
	c.endFill(k, c.beginFill(k), testEntry(4, 100))
	for _, tc := range []struct {
		minVer int64
		want   lookup
	}{{0, lookupHit}, {3, lookupHit}, {4, lookupHit}, {5, lookupStale}} {
		if _, got := c.get(k, tc.minVer, time.Now()); got != tc.want {
			t.Errorf("cookie version %d, copy version 4: lookup %d, want %d", tc.minVer, got, tc.want)
		}
	}
	if _, got := c.get(k, 0, time.Now().Add(2*time.Hour)); got != lookupMiss {
		t.Errorf("an expired copy: lookup %d, want a miss", got)
	}
}

func TestSplitCookie(t *testing.T) {
	for _, tc := range []struct {
		cookie, token string
		ver           int64
	}{
		{"abc", "abc", 0},
		{"abc.7", "abc", 7},
		{"abc.", "abc", 0},
		{"abc.-1", "abc", 0},
		{"abc.x", "abc", 0},
		{"", "", 0},
	} {
		token, ver := splitCookie(tc.cookie)
		if token != tc.token || ver != tc.ver {
			t.Errorf("splitCookie(%q) = %q, %d; want %q, %d", tc.cookie, token, ver, tc.token, tc.ver)
		}
	}
}
