package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2/memstore"
)

// memoryCleanup is how often the memory store drops expired sessions.
const memoryCleanup = time.Minute

// DefaultMaxMemorySessions bounds a memory store unless Options say
// otherwise: about 20 MB of sessions with small carts, 60 MB more RSS
// at the bound under a flood of new sessions (with GC headroom).
const DefaultMaxMemorySessions = 50_000

// evictSample is how many sessions an eviction compares to find the least
// recently used: Redis's approximation of LRU, which costs a few map reads
// instead of a list kept in order on every load.
const evictSample = 8

// maxEvictedRemembered bounds the tokens the store remembers evicting, so
// that their browsers learn why their cart is gone.
const maxEvictedRemembered = 4096

// memoryKind is the memory store as it registers itself.
var memoryKind = Kind{
	Name: Memory,
	Traits: Traits{
		Place: InReplica, Locks: true, SharesNothing: true,
		ReplicaDeath: func(replica string) string {
			return fmt.Sprintf(
				"The session lives in %[1]s's memory and nowhere else. If %[1]s died, the session would die with it, and so would every cart %[1]s holds. "+
					"Your browser would keep its cookie, but the next replica nginx picks has never seen that token: it shows an empty cart, "+
					"and a restarted %[1]s starts with empty memory too. This is what stateful means: the replica is the only copy of your data.", replica)
		},
		RedisOutage: "Nothing happens to it: memory sessions never touch Redis.",
		KeyChange:   keylessText,
	},
	Open: func(d Deps) (Store, error) { return NewMemory(d.Options), nil },
}

// MemoryStore keeps sessions in this process: the stateful choice. scs
// manages them over its memstore, bounded (memstore keeps all it is
// given); a session lives and dies with the replica that created it, and
// so only this process can write it: its lock is an in-process mutex.
type MemoryStore struct {
	scs   *scsSessions
	mem   *boundedMemStore
	locks *memoryLocks // nil with the lock off
}

// NewMemory returns an empty memory store holding at most
// o.MaxMemorySessions sessions. Close stops its cleanup.
func NewMemory(o Options) *MemoryStore {
	max := o.MaxMemorySessions
	if max <= 0 {
		max = DefaultMaxMemorySessions
	}
	mem := newBoundedMemStore(max, o.observer())
	m := &MemoryStore{scs: newSCS(mem, o.observer()), mem: mem}
	if o.Lock {
		m.locks = &memoryLocks{locks: make(map[string]*keyLock)}
	}
	return m
}

// Kind is Memory.
func (m *MemoryStore) Kind() string { return Memory }

// Load returns the session token names, taking its lock first for a write.
func (m *MemoryStore) Load(ctx context.Context, cookie string, write bool) (*Session, error) {
	token := validToken(cookie)
	if token == "" {
		return m.scs.load(ctx, "")
	}
	var lock *Lock
	if write && m.locks != nil {
		start := time.Now()
		lctx, cancel := context.WithTimeout(ctx, LockWait)
		release, err := m.locks.lock(lctx, token)
		cancel()
		m.scs.obs.ObserveLockWait(time.Since(start), err != nil)
		if err != nil {
			return nil, err
		}
		lock = &Lock{free: release}
	}
	s, err := m.scs.load(ctx, token)
	if err != nil {
		lock.release()
		return nil, err
	}
	if !s.known && m.mem.wasEvicted(token) {
		s.dropped = fmt.Sprintf("this replica keeps at most %d sessions in memory (-memory-sessions) and evicted yours, one of the least recently used, to make room for a new one", m.mem.max)
	}
	s.lock = lock
	return s, nil
}

// Save stores s under its token (a new one for a new or renewed session)
// and releases its lock.
func (m *MemoryStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	return m.scs.commit(ctx, s)
}

// boundedMemStore is scs's memstore with a bound: memstore keeps every
// session it is given until it expires, and a flood of new sessions would
// take the replica's memory. It indexes the tokens memstore holds, with
// when each was last used, and past the bound drops one of the least
// recently used before it commits a new one.
type boundedMemStore struct {
	ms  *memstore.MemStore
	obs Observer
	max int // sessions at most; past it the least recently used goes

	mu      sync.RWMutex
	index   map[string]*memoryItem
	evicted evictedTokens // guarded by mu

	stop chan struct{}
	once sync.Once
}

type memoryItem struct {
	expires time.Time
	used    atomic.Int64 // Unix nanoseconds of the last load or save
}

func newBoundedMemStore(max int, obs Observer) *boundedMemStore {
	b := &boundedMemStore{
		// Its own cleanup would not tell the index: ours drops from both.
		ms:  memstore.NewWithCleanupInterval(0),
		obs: obs, max: max, index: make(map[string]*memoryItem), stop: make(chan struct{}),
	}
	go b.cleanup()
	return b
}

// Find is memstore's, noting the use.
func (b *boundedMemStore) Find(token string) ([]byte, bool, error) {
	data, found, err := b.ms.Find(token)
	if found {
		b.mu.RLock()
		it := b.index[token]
		b.mu.RUnlock()
		if it != nil {
			it.used.Store(time.Now().UnixNano())
		}
	}
	return data, found, err
}

// Commit makes room for a new token past the bound, then is memstore's.
func (b *boundedMemStore) Commit(token string, data []byte, expiry time.Time) error {
	it := &memoryItem{expires: expiry}
	it.used.Store(time.Now().UnixNano())
	b.mu.Lock()
	_, had := b.index[token]
	evicted := ""
	if !had && len(b.index) >= b.max {
		evicted = b.evictLocked()
	}
	b.index[token] = it
	// Under mu: the index and memstore hold the same tokens.
	if evicted != "" {
		b.ms.Delete(evicted)
	}
	err := b.ms.Commit(token, data, expiry)
	b.mu.Unlock()
	if evicted != "" {
		b.obs.ObserveStore("evict", 0, nil)
	}
	return err
}

// Delete is memstore's.
func (b *boundedMemStore) Delete(token string) error {
	start := time.Now()
	b.mu.Lock()
	delete(b.index, token)
	err := b.ms.Delete(token)
	b.mu.Unlock()
	b.obs.ObserveStore("delete", time.Since(start), err)
	return err
}

func (b *boundedMemStore) len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.index)
}

func (b *boundedMemStore) wasEvicted(token string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.evicted.has(token)
}

// evictLocked drops the least recently used of a few sessions from the
// index, as Redis's allkeys-lru does, and returns its token for memstore to
// drop: a new session is never refused, and a flood of new sessions pushes
// out idle ones before active ones. b.mu is held.
func (b *boundedMemStore) evictLocked() string {
	var oldest string
	var oldestUsed int64
	n := 0
	for token, it := range b.index { // Go starts a range at a random entry
		if u := it.used.Load(); oldest == "" || u < oldestUsed {
			oldest, oldestUsed = token, u
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(b.index, oldest)
	b.evicted.add(oldest)
	return oldest
}

// evictedTokens remembers the last tokens evicted, in a ring.
type evictedTokens struct {
	ring []string
	next int
	set  map[string]struct{}
}

func (e *evictedTokens) add(token string) {
	if e.set == nil {
		e.ring = make([]string, maxEvictedRemembered)
		e.set = make(map[string]struct{}, maxEvictedRemembered)
	}
	delete(e.set, e.ring[e.next])
	e.ring[e.next] = token
	e.set[token] = struct{}{}
	e.next = (e.next + 1) % len(e.ring)
}

func (e *evictedTokens) has(token string) bool {
	_, ok := e.set[token]
	return ok
}

// Len is how many sessions this process holds now.
func (m *MemoryStore) Len() int { return m.mem.len() }

// Ping always answers: the store is this process.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Describe tells what this process holds of s.
func (m *MemoryStore) Describe(_ context.Context, s *Session, replica string) Description {
	d := Description{
		TTL:          time.Until(s.Deadline()),
		ReplicaDeath: memoryKind.Traits.ReplicaDeath(replica),
		RedisOutage:  memoryKind.Traits.RedisOutage,
		KeyChange:    memoryKind.Traits.KeyChange,
		Logout:       logoutDeletesText,
	}
	if b, err := s.encode(); err == nil {
		d.SizeBytes = len(b)
		d.Size = fmt.Sprintf("%d bytes of JSON in %s's memory; the cookie holds only a %d-character token", len(b), replica, tokenLen)
	}
	n := m.mem.len()
	d.Capacity = fmt.Sprintf("Memory sessions are bounded by %s's RAM: it keeps at most %d sessions (-memory-sessions) and holds %d now. "+
		"Past the bound, each new session evicts one of the least recently used, whose browser then finds an empty cart.", replica, m.mem.max, n)
	switch {
	case m.locks == nil:
		d.Lock = lockOffText
	case m.locks.held(s.Token()):
		d.Lock = "held right now by a write in this process (an in-process mutex: memory sessions only ever change here)"
	default:
		d.Lock = "free: an in-process mutex, taken only while a write to this session runs (memory sessions only ever change here)"
	}
	return d
}

// The inspector's words that memory and redis sessions share.
const (
	lockOffText       = "off (-session-lock off): concurrent writes to one cart may overwrite each other"
	keylessText       = "Nothing happens to it: no keys are involved. The cookie holds only a random token, the name of a session the server keeps."
	logoutDeletesText = "Logging out drops the session under its token and issues a new token, so a copy of the old cookie names nothing any more."
)

// Close stops the cleanup. The sessions stay readable until the process
// ends.
func (m *MemoryStore) Close() error {
	m.mem.once.Do(func() { close(m.mem.stop) })
	return nil
}

// cleanup drops expired sessions every memoryCleanup until Close.
func (b *boundedMemStore) cleanup() {
	tick := time.NewTicker(memoryCleanup)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			b.mu.Lock()
			for token, it := range b.index {
				if !now.Before(it.expires) {
					delete(b.index, token)
					b.ms.Delete(token)
				}
			}
			b.mu.Unlock()
		}
	}
}

// memoryLocks is a keyed mutex: a memory session lives in one process and
// so can only be written by that process.
type memoryLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock takes key's lock or fails with ErrLockTimeout when ctx ends; the
// returned func releases it.
func (m *memoryLocks) lock(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	l := m.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()

	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; m.release(key, l) }, nil
	case <-ctx.Done():
		m.release(key, l)
		return nil, ErrLockTimeout
	}
}

func (m *memoryLocks) release(key string, l *keyLock) {
	m.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(m.locks, key)
	}
	m.mu.Unlock()
}

// held reports whether anyone holds or waits for key's lock.
func (m *memoryLocks) held(key string) bool {
	if key == "" {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.locks[key]
	return ok
}
