package session

// The near-cache's memory: copies of Redis sessions in this replica, bounded
// in bytes, that may be served only while Redis is telling this replica
// about every change to them (see tracking.go). Everything here is about
// never serving a copy older than Redis's:
//
//   - An invalidation drops the copy and cancels every fill in flight for
//     its key: a GET that was answered before a write must not land after
//     the write's invalidation.
//   - A fill carries a ticket taken before its GET was sent; it lands only
//     if no invalidation, flush or other fill came in between.
//   - A write of this replica's refreshes the copy when its own
//     invalidation is the only one that arrived meanwhile; with two writes
//     of one session in flight here at once, none refreshes it.
//   - While invalidations cannot arrive (the connection is down or not yet
//     subscribed), nothing is served or filled, and what was cached is gone.

import (
	"container/list"
	"sync"
	"time"
)

// entryOverhead approximates what one cached session costs beyond its
// encoded bytes and key: the entry, its list element, its map slot and the
// decoded strings' headers.
const entryOverhead = 256

// cached is one session as the near-cache keeps it: decoded, so that a hit
// costs no JSON.
type cached struct {
	deadline time.Time
	vals     map[string]any // as scs holds them; never changed once cached
	ver      int64
	size     int // the encoded bytes, as Redis holds them
}

// slot is a key's state: its copy, if any, and what is in flight for it.
type slot struct {
	key   string
	entry *cached       // nil while only a fill or write is in flight
	elem  *list.Element // in the LRU list while entry != nil
	// fill is the ticket of the latest GET in flight, 0 for none.
	fill uint64
	// write is the ticket of this replica's write in flight, 0 for none or
	// when two overlapped (then none refreshes).
	write uint64
	// selfInvalidations counts invalidations expected from this replica's
	// own writes, which must not cancel their refresh.
	selfInvalidations int
}

func (sl *slot) idle() bool {
	return sl.entry == nil && sl.fill == 0 && sl.write == 0 && sl.selfInvalidations == 0
}

// nearCache is the bounded set of copies. Safe for concurrent use.
type nearCache struct {
	maxBytes int64

	mu     sync.Mutex
	live   bool // invalidations are arriving: serving and filling allowed
	slots  map[string]*slot
	lru    *list.List // of *slot with an entry, most recent first
	bytes  int64      // of the entries
	ticket uint64
}

func newNearCache(maxBytes int64) *nearCache {
	return &nearCache{maxBytes: maxBytes, slots: make(map[string]*slot), lru: list.New()}
}

func entryBytes(key string, e *cached) int64 {
	return int64(len(key) + e.size + entryOverhead)
}

// lookup is what get found.
type lookup int

const (
	lookupMiss   lookup = iota // no copy
	lookupHit                  // a current copy
	lookupStale                // a copy older than the browser's version
	lookupBypass               // not live: Redis only
)

// get returns the copy of key if it may be served to a browser that last
// saw version minVer.
func (c *nearCache) get(key string, minVer int64, now time.Time) (cached, lookup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return cached{}, lookupBypass
	}
	sl := c.slots[key]
	if sl == nil || sl.entry == nil {
		return cached{}, lookupMiss
	}
	if !now.Before(sl.entry.deadline) {
		c.dropEntry(sl)
		return cached{}, lookupMiss
	}
	if sl.entry.ver < minVer {
		return cached{}, lookupStale
	}
	c.lru.MoveToFront(sl.elem)
	return *sl.entry, lookupHit
}

// slotFor returns key's slot, creating it.
func (c *nearCache) slotFor(key string) *slot {
	sl := c.slots[key]
	if sl == nil {
		sl = &slot{key: key}
		c.slots[key] = sl
	}
	return sl
}

// forget removes sl when nothing is left in it.
func (c *nearCache) forget(sl *slot) {
	if sl.idle() {
		delete(c.slots, sl.key)
	}
}

func (c *nearCache) dropEntry(sl *slot) {
	if sl.entry == nil {
		return
	}
	c.bytes -= entryBytes(sl.key, sl.entry)
	c.lru.Remove(sl.elem)
	sl.entry, sl.elem = nil, nil
	c.forget(sl)
}

// setEntry installs e in sl and evicts the least recently used copies
// until the bound holds again.
func (c *nearCache) setEntry(sl *slot, e *cached) {
	n := entryBytes(sl.key, e)
	if n > c.maxBytes {
		c.dropEntry(sl)
		return
	}
	if sl.entry != nil {
		c.bytes -= entryBytes(sl.key, sl.entry)
		sl.entry = e
		c.lru.MoveToFront(sl.elem)
	} else {
		sl.entry = e
		sl.elem = c.lru.PushFront(sl)
	}
	c.bytes += n
	for c.bytes > c.maxBytes {
		c.dropEntry(c.lru.Back().Value.(*slot))
	}
}

// beginFill takes a ticket for a GET about to be sent; 0 means do not
// fill (not live).
func (c *nearCache) beginFill(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return 0
	}
	c.ticket++
	c.slotFor(key).fill = c.ticket
	return c.ticket
}

// endFill installs what the GET of ticket read, nil for nothing to keep,
// unless anything came in between.
func (c *nearCache) endFill(key string, ticket uint64, e *cached) {
	if ticket == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sl := c.slots[key]
	if sl == nil || sl.fill != ticket {
		return
	}
	sl.fill = 0
	// A write in flight here may or may not be in what the GET read.
	if e != nil && sl.write == 0 && sl.selfInvalidations == 0 {
		c.setEntry(sl, e)
	}
	c.forget(sl)
}

// beginWrite announces a write of key by this replica: the copy goes at
// once (it is about to be old), and the write's own invalidation will not
// cancel its refresh. Returns 0 when not live.
func (c *nearCache) beginWrite(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return 0
	}
	sl := c.slotFor(key)
	c.dropEntry(sl)
	sl = c.slotFor(key) // dropEntry may have forgotten it
	sl.fill = 0
	sl.selfInvalidations++
	if sl.selfInvalidations > 1 {
		sl.write = 0 // overlapping writes: which landed last is unknown
		return 0
	}
	c.ticket++
	sl.write = c.ticket
	return c.ticket
}

// endWrite refreshes the copy with what the write of ticket stored (e nil:
// the write failed and may or may not have landed).
func (c *nearCache) endWrite(key string, ticket uint64, e *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sl := c.slots[key]
	if sl == nil {
		return
	}
	if e == nil {
		// Whether Redis applied it is unknown: expect no invalidation of
		// ours, so that the next one, whoever caused it, drops the key.
		sl.selfInvalidations = 0
		sl.write = 0
		c.dropEntry(sl)
		c.forget(sl)
		return
	}
	if ticket != 0 && sl.write == ticket {
		sl.write = 0
		c.setEntry(sl, e)
	}
	c.forget(sl)
}

// drop forgets key's copy and any fill in flight, as an invalidation would.
func (c *nearCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sl := c.slots[key]; sl != nil {
		sl.fill = 0
		c.dropEntry(sl)
		c.forget(sl)
	}
}

// install keeps a copy of a session nobody else can know of yet (a token
// this replica just issued).
func (c *nearCache) install(key string, e *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return
	}
	c.setEntry(c.slotFor(key), e)
}

// invalidate is Redis saying key changed. It reports whether a copy was
// dropped.
func (c *nearCache) invalidate(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	sl := c.slots[key]
	if sl == nil {
		return false
	}
	sl.fill = 0
	if sl.selfInvalidations > 0 {
		// Ours, or one from a write made before ours took the lock whose
		// message was still on its way: either way our write is the newest,
		// so its refresh (or the copy it already left) stays. A write after
		// ours needs the lock ours held until its commit, so its message
		// comes after ours, when none is expected any more. (Writes without
		// the lock never take this path: see CachedRedisStore.Save.)
		sl.selfInvalidations--
		c.forget(sl)
		return false
	}
	sl.write = 0
	had := sl.entry != nil
	c.dropEntry(sl)
	c.forget(sl)
	return had
}

// setLive turns serving on (invalidations arrive) or off (they cannot);
// either way everything cached or in flight is forgotten.
func (c *nearCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.flushLocked()
}

// flush forgets everything (Redis said so: FLUSHALL, or a reset).
func (c *nearCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
}

func (c *nearCache) flushLocked() {
	clear(c.slots)
	c.lru.Init()
	c.bytes = 0
}

// stats are the cache's size for the inspector and tests.
func (c *nearCache) stats() (entries int, bytes int64, live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes, c.live
}
