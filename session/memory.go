package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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

// MemoryStore keeps sessions in this process: the stateful choice. A
// session lives and dies with the replica that created it, and so only
// this process can write it: its lock is an in-process mutex.
type MemoryStore struct {
	obs   Observer
	locks *memoryLocks // nil with the lock off

	max     int // sessions at most; past it the least recently used goes
	mu      sync.RWMutex
	items   map[string]memoryItem
	evicted evictedTokens // guarded by mu

	stop chan struct{}
	once sync.Once
}

type memoryItem struct {
	b       []byte // the encoded session, as a shared store would hold it
	expires time.Time
	used    *atomic.Int64 // Unix nanoseconds of the last load or save
}

// NewMemory returns an empty memory store holding at most
// o.MaxMemorySessions sessions. Close stops its cleanup.
func NewMemory(o Options) *MemoryStore {
	max := o.MaxMemorySessions
	if max <= 0 {
		max = DefaultMaxMemorySessions
	}
	m := &MemoryStore{obs: o.observer(), max: max, items: make(map[string]memoryItem), stop: make(chan struct{})}
	if o.Lock {
		m.locks = &memoryLocks{locks: make(map[string]*keyLock)}
	}
	go m.cleanup()
	return m
}

// Kind is Memory.
func (m *MemoryStore) Kind() string { return Memory }

// Load returns the session token names, taking its lock first for a write.
func (m *MemoryStore) Load(ctx context.Context, cookie string, write bool) (*Session, error) {
	token := validToken(cookie)
	if token == "" {
		return newSession(false, ""), nil
	}
	var lock *heldLock
	if write && m.locks != nil {
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, LockWait)
		release, err := m.locks.lock(ctx, token)
		cancel()
		m.obs.ObserveLockWait(time.Since(start), err != nil)
		if err != nil {
			return nil, err
		}
		lock = &heldLock{release: release}
	}
	start := time.Now()
	m.mu.RLock()
	it, found := m.items[token]
	evicted := !found && m.evicted.has(token)
	m.mu.RUnlock()
	found = found && time.Now().Before(it.expires)
	if found {
		it.used.Store(time.Now().UnixNano())
	}
	m.obs.ObserveStore("find", time.Since(start), nil)
	s := open(token, it.b, found)
	if evicted {
		s.dropped = fmt.Sprintf("this replica keeps at most %d sessions in memory (-memory-sessions) and evicted yours, one of the least recently used, to make room for a new one", m.max)
	}
	s.lock = lock
	return s, nil
}

// Save stores s under its token (a new one for a new or renewed session)
// and releases its lock.
func (m *MemoryStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	defer s.Release()
	b, err := s.encode()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("session: encode: %w", err)
	}
	if s.renew && s.token != "" {
		start := time.Now()
		m.mu.Lock()
		delete(m.items, s.token)
		m.mu.Unlock()
		m.obs.ObserveStore("delete", time.Since(start), nil)
		s.token = ""
	}
	if s.token == "" {
		s.token = newToken()
	}
	s.renew = false
	start := time.Now()
	used := new(atomic.Int64)
	used.Store(start.UnixNano())
	m.mu.Lock()
	evicted := false
	if _, ok := m.items[s.token]; !ok && len(m.items) >= m.max {
		m.evictLocked()
		evicted = true
	}
	m.items[s.token] = memoryItem{b: b, expires: s.deadline, used: used}
	m.mu.Unlock()
	if evicted {
		m.obs.ObserveStore("evict", 0, nil)
	}
	m.obs.ObserveStore("commit", time.Since(start), nil)
	s.modified = false
	return s.token, s.deadline, nil
}

// evictLocked drops the least recently used of a few sessions, as Redis's
// allkeys-lru does: a new session is never refused, and a flood of new
// sessions pushes out idle ones before active ones. m.mu is held.
func (m *MemoryStore) evictLocked() {
	var oldest string
	var oldestUsed int64
	n := 0
	for token, it := range m.items { // Go starts a range at a random entry
		if u := it.used.Load(); oldest == "" || u < oldestUsed {
			oldest, oldestUsed = token, u
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(m.items, oldest)
	m.evicted.add(oldest)
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
func (m *MemoryStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.items)
}

// Ping always answers: the store is this process.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Describe tells what this process holds of s.
func (m *MemoryStore) Describe(_ context.Context, s *Session, replica string) Description {
	d := Description{
		TTL:          time.Until(s.deadline),
		ReplicaDeath: ReplicaDeathStory(Memory, replica),
		RedisOutage:  "Nothing happens to it: memory sessions never touch Redis.",
		KeyChange:    keylessText,
		Logout:       logoutDeletesText,
	}
	if b, err := s.encode(); err == nil {
		d.SizeBytes = len(b)
		d.Size = fmt.Sprintf("%d bytes of JSON in %s's memory; the cookie holds only a %d-character token", len(b), replica, tokenLen)
	}
	m.mu.RLock()
	n := len(m.items)
	m.mu.RUnlock()
	d.Capacity = fmt.Sprintf("Memory sessions are bounded by %s's RAM: it keeps at most %d sessions (-memory-sessions) and holds %d now. "+
		"Past the bound, each new session evicts one of the least recently used, whose browser then finds an empty cart.", replica, m.max, n)
	switch {
	case m.locks == nil:
		d.Lock = lockOffText
	case m.locks.held(s.token):
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
	m.once.Do(func() { close(m.stop) })
	return nil
}

// cleanup drops expired sessions every memoryCleanup until Close.
func (m *MemoryStore) cleanup() {
	tick := time.NewTicker(memoryCleanup)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-tick.C:
			m.mu.Lock()
			for token, it := range m.items {
				if !now.Before(it.expires) {
					delete(m.items, token)
				}
			}
			m.mu.Unlock()
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
