package web

// The Redis session store: scs's redisstore (same keys, same commands, same
// pool and timeouts), plus what a write with the session lock needs to cost
// two round trips instead of four. redisstore alone makes a locked write
// SET NX (lock), GET (load), MULTI/SET/PEXPIREAT/EXEC (commit), EVAL
// (unlock): each waits for the one before. Here the lock's SET NX carries
// the GET in the same pipeline, and the commit carries the unlock.

import (
	"context"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
)

// sessionKeyPrefix is redisstore's default prefix: sessions written by
// either store are read by the other.
const sessionKeyPrefix = "scs:session:"

// redisStore is an scs.CtxStore over a redigo pool.
type redisStore struct {
	pool *redis.Pool

	// prefetched holds, per session token, the session read in the same
	// pipeline that took its lock, for the Find that follows at once. A
	// concurrent reader of the same token may take it instead: it is the
	// current value either way, and the writer then reads Redis itself.
	prefetched sync.Map // token → prefetch
	// held maps a session token to the lock this replica holds on it, so
	// that the commit can release the lock in its own pipeline.
	held sync.Map // token → heldLock
}

type prefetch struct {
	b     []byte
	found bool
}

type heldLock struct{ key, value string }

// scs calls the Ctx methods of a CtxStore, which bound each exchange.
var _ scs.CtxStore = (*redisStore)(nil)

func newRedisStore(pool *redis.Pool) *redisStore { return &redisStore{pool: pool} }

// FindCtx returns a session's data; found is false when it does not exist or
// expired (Redis expires it). Borrowing the connection (with its PING) and
// the GET share one StoreTimeout, so a stalled Redis costs a request one
// second, not two.
func (s *redisStore) FindCtx(ctx context.Context, token string) (b []byte, found bool, err error) {
	if p, ok := s.prefetched.LoadAndDelete(token); ok {
		p := p.(prefetch)
		return p.b, p.found, nil
	}
	err = withRedis(ctx, s.pool, func(ctx context.Context, conn redis.Conn) error {
		b, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", sessionKeyPrefix+token))
		return err
	})
	if err == redis.ErrNil {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// CommitCtx writes a session with its expiry, atomically, and releases this
// replica's lock on the session in the same round trip when it holds one.
func (s *redisStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	return withRedis(ctx, s.pool, func(ctx context.Context, conn redis.Conn) error {
		key := sessionKeyPrefix + token
		conn.Send("MULTI")
		conn.Send("SET", key, b)
		conn.Send("PEXPIREAT", key, expiry.UnixMilli())
		h, locked := s.held.Load(token)
		if !locked {
			_, err := redis.DoContext(conn, ctx, "EXEC")
			return err
		}
		conn.Send("EXEC")
		lock := h.(heldLock)
		// Do returns the first error among the pipeline's replies: a failed
		// EXEC leaves the lock held, for the request's own unlock to release.
		if _, err := unlockScript.DoContext(ctx, conn, lock.key, lock.value); err != nil {
			return err
		}
		s.held.CompareAndDelete(token, h)
		return nil
	})
}

// DeleteCtx removes a session.
func (s *redisStore) DeleteCtx(ctx context.Context, token string) error {
	return withRedis(ctx, s.pool, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "DEL", sessionKeyPrefix+token)
		return err
	})
}

// Find, Commit and Delete complete scs.Store; scs calls the Ctx forms.
func (s *redisStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

func (s *redisStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

func (s *redisStore) Delete(token string) error { return s.DeleteCtx(context.Background(), token) }

// All lists every session, as redisstore does (KEYS: for teaching-sized
// data sets, not for production).
func (s *redisStore) All() (map[string][]byte, error) {
	conn := s.pool.Get()
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", sessionKeyPrefix+"*"))
	if err != nil {
		return nil, err
	}
	sessions := make(map[string][]byte, len(keys))
	for _, key := range keys {
		b, err := redis.Bytes(conn.Do("GET", key))
		if err == redis.ErrNil {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, err
		}
		sessions[key[len(sessionKeyPrefix):]] = b
	}
	return sessions, nil
}

// locked records that this replica took the lock on token's session, with
// the session as read in the same pipeline.
func (s *redisStore) locked(token string, lock heldLock, session []byte, found bool) {
	s.held.Store(token, lock)
	s.prefetched.Store(token, prefetch{b: session, found: found})
}

// unlocked forgets token's lock and prefetch; it reports whether the lock
// was still held (the commit did not release it).
func (s *redisStore) unlocked(token string, lock heldLock) bool {
	s.prefetched.Delete(token)
	return s.held.CompareAndDelete(token, lock)
}
