package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gomodule/redigo/redis"
)

// Session store kinds, as the -session-store flag names them.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

const (
	// StoreTimeout bounds every call to the session store: no request waits
	// longer than this for Redis, whatever state Redis is in.
	StoreTimeout = time.Second
	// LockWait is how long a write waits for its session's lock before it
	// answers 503 with Retry-After.
	LockWait = 2 * time.Second
	// lockTTL is how long a lock lives in Redis if its holder dies holding it.
	lockTTL = 5 * time.Second
	// sessionLifetime is how long a session lives after it was created.
	sessionLifetime = 24 * time.Hour
)

// Sessions is the session backend: an scs session manager over memory or
// Redis, plus the per-session write lock.
type Sessions struct {
	kind    string
	manager *scs.SessionManager
	locks   locker
	pool    *redis.Pool // nil in memory mode
}

// NewMemorySessions keeps sessions in this process: the stateful choice. A
// session lives and dies with the replica that created it.
func NewMemorySessions(lock bool) *Sessions {
	mem := memstore.NewWithCleanupInterval(time.Minute)
	s := &Sessions{kind: StoreMemory, manager: newManager(mem), locks: noLocks{}}
	if lock {
		s.locks = newMemoryLocks()
	}
	return s
}

// NewRedisSessions keeps sessions in Redis at addr: the stateless choice.
// Redis need not be up yet; requests fail fast (503) until it is.
func NewRedisSessions(addr string, lock bool) *Sessions {
	pool := NewRedisPool(addr)
	store := newRedisStore(pool)
	s := &Sessions{kind: StoreRedis, manager: newManager(store), pool: pool, locks: noLocks{}}
	if lock {
		s.locks = redisLocks{pool: pool, store: store}
	}
	return s
}

// NewRedisPool returns a pool whose every operation is bounded by
// StoreTimeout. redisstore calls Pool.Get without a context, so the pool must
// never wait for a free connection (Wait stays false) and every dial, read and
// write carries its own timeout.
func NewRedisPool(addr string) *redis.Pool {
	return &redis.Pool{
		MaxIdle:     64,
		IdleTimeout: 4 * time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr,
				redis.DialConnectTimeout(StoreTimeout),
				redis.DialReadTimeout(StoreTimeout),
				redis.DialWriteTimeout(StoreTimeout))
		},
		// A connection that sat idle may point at a Redis that restarted since:
		// test it. A busy connection is not tested, which saves a round trip on
		// the hot path; if it broke, its request fails once and it is dropped.
		// The PING shares the borrower's deadline (GetContext), so borrowing
		// and the command that follows fit in one StoreTimeout together.
		TestOnBorrowContext: func(ctx context.Context, c redis.Conn, lastUsed time.Time) error {
			if time.Since(lastUsed) < time.Second {
				return nil
			}
			_, err := redis.DoContext(c, ctx, "PING")
			return err
		},
	}
}

func newManager(store scs.Store) *scs.SessionManager {
	m := scs.New()
	m.Store = store
	m.Lifetime = sessionLifetime
	// IdleTimeout stays 0: with it, scs rewrites the session on every GET.
	m.Codec = jsonCodec{}
	m.Cookie.Name = "session"
	return m
}

// Kind is "memory" or "redis".
func (s *Sessions) Kind() string { return s.kind }

// Pool is the Redis pool, or nil in memory mode.
func (s *Sessions) Pool() *redis.Pool { return s.pool }

// Ping reports whether the session store answers.
func (s *Sessions) Ping(ctx context.Context) error {
	if s.pool == nil {
		return nil
	}
	err := withRedis(ctx, s.pool, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "PING")
		return err
	})
	if err != nil {
		return fmt.Errorf("sessions: ping: %w", err)
	}
	return nil
}

// withRedis runs fn on a pooled connection, the borrowing and the whole
// exchange bounded by StoreTimeout: no caller waits longer for Redis.
func withRedis(ctx context.Context, pool *redis.Pool, fn func(context.Context, redis.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(ctx, conn)
}

// Close releases the backend's resources.
func (s *Sessions) Close() error {
	// The memstore's cleanup goroutine is left running: StopCleanup races
	// with the goroutine's own start in scs v2.9.0, and the goroutine is
	// harmless (a ticker a minute) for the life of the process.
	if s.pool != nil {
		return s.pool.Close()
	}
	return nil
}

// jsonCodec stores a session as readable, versioned JSON instead of scs's
// default gob: `redis-cli GET scs:session:<token>` shows a student the whole
// session, and no Go type name is baked into stored bytes. Values are strings
// or json.RawMessage (the cart); anything else is a programming error.
type jsonCodec struct{}

const sessionEncoding = 1

type storedSession struct {
	V        int                        `json:"v"`
	Deadline time.Time                  `json:"deadline"`
	Values   map[string]json.RawMessage `json:"values"`
}

// errBadSessionData marks a stored session that cannot be decoded: the
// request goes on with a fresh session rather than failing.
var errBadSessionData = errors.New("sessions: undecodable session data")

func (jsonCodec) Encode(deadline time.Time, values map[string]any) ([]byte, error) {
	st := storedSession{V: sessionEncoding, Deadline: deadline, Values: make(map[string]json.RawMessage, len(values))}
	for k, v := range values {
		switch v := v.(type) {
		case string:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			st.Values[k] = b
		case json.RawMessage:
			st.Values[k] = v
		default:
			return nil, fmt.Errorf("sessions: value %q has type %T; only string and json.RawMessage are stored", k, v)
		}
	}
	return json.Marshal(st)
}

func (jsonCodec) Decode(b []byte) (time.Time, map[string]any, error) {
	var st storedSession
	if err := json.Unmarshal(b, &st); err != nil || st.V != sessionEncoding {
		return time.Time{}, nil, errBadSessionData
	}
	values := make(map[string]any, len(st.Values))
	for k, raw := range st.Values {
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return time.Time{}, nil, errBadSessionData
			}
			values[k] = s
			continue
		}
		values[k] = raw
	}
	return st.Deadline, values, nil
}

// errLockTimeout: another request held the session's lock for all of LockWait.
var errLockTimeout = errors.New("sessions: lock wait timed out")

// locker serializes writes to one session.
type locker interface {
	// Lock takes the lock for key or fails when ctx ends; the returned func
	// releases it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// noLocks is -session-lock off: the lost-update anomaly on display.
type noLocks struct{}

func (noLocks) Lock(context.Context, string) (func(), error) { return func() {}, nil }

// memoryLocks is a keyed mutex for memory mode, where a session lives in one
// process and so can only be written by that process.
type memoryLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func newMemoryLocks() *memoryLocks { return &memoryLocks{locks: make(map[string]*keyLock)} }

func (m *memoryLocks) Lock(ctx context.Context, key string) (func(), error) {
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
		return nil, errLockTimeout
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

// redisLocks is a lock per session in Redis, shared by every replica:
// SET NX PX with a random token, released by compare-and-delete so a holder
// never frees a lock that expired and was taken by someone else.
//
// The lock's SET NX carries the session's GET in the same round trip, and
// the commit releases the lock in its own (see redisStore): a locked write
// costs two round trips, not four.
type redisLocks struct {
	pool  *redis.Pool
	store *redisStore
}

var unlockScript = redis.NewScript(1, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func (l redisLocks) Lock(ctx context.Context, session string) (func(), error) {
	key := "lock:session:" + session
	token := randomToken(16)
	backoff := 2 * time.Millisecond
	for {
		ok, err := l.tryLock(ctx, session, key, token)
		if err != nil {
			// The SET may have landed even though we saw an error (a client-side
			// timeout after Redis applied it): release it, or the next write
			// stalls until the lock expires.
			go l.unlock(key, token) // bounded by its own StoreTimeout; the request need not wait
			if ctx.Err() != nil {
				return nil, errLockTimeout
			}
			return nil, fmt.Errorf("%w: lock: %w", ErrSessionStore, err)
		}
		if ok {
			held := heldLock{key: key, value: token}
			return func() {
				if l.store.unlocked(session, held) {
					l.unlock(key, token)
				}
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, errLockTimeout
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// tryLock sends SET NX and the session's GET in one pipeline; when the lock
// is taken, the session it read is handed to the store for the load that
// follows.
func (l redisLocks) tryLock(ctx context.Context, session, key, token string) (ok bool, err error) {
	// One attempt may take StoreTimeout, however long the lock wait is: a
	// stalled Redis is an outage to answer in a second, not a busy lock.
	err = withRedis(ctx, l.pool, func(ctx context.Context, conn redis.Conn) error {
		ok, err = l.tryLockOn(ctx, conn, session, key, token)
		return err
	})
	return ok, err
}

func (l redisLocks) tryLockOn(ctx context.Context, conn redis.Conn, session, key, token string) (bool, error) {
	conn.Send("SET", key, token, "NX", "PX", lockTTL.Milliseconds())
	conn.Send("GET", sessionKeyPrefix+session)
	if err := conn.Flush(); err != nil {
		return false, err
	}
	set, setErr := redis.ReceiveContext(conn, ctx)
	b, err := redis.Bytes(redis.ReceiveContext(conn, ctx))
	found := err == nil
	if errors.Is(err, redis.ErrNil) {
		err = nil
	}
	if err = errors.Join(setErr, err); err != nil {
		return false, err
	}
	if set == nil {
		return false, nil // NX: someone else holds it
	}
	l.store.locked(session, heldLock{key: key, value: token}, b, found)
	return true, nil
}

func (l redisLocks) unlock(key, token string) {
	// A fresh context: the request's may be done, and the lock must go anyway.
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return // the lock expires by itself after lockTTL
	}
	defer conn.Close()
	unlockScript.DoContext(ctx, conn, key, token)
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
