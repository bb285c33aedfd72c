package session

// The Redis store: the session in a shared Redis, where every replica reads
// and writes it. A write with the lock costs two round trips, not four: the
// lock's SET NX carries the session's GET in one pipeline, and the commit
// carries the unlock in another (scs's redisstore alone would make it
// SET NX, GET, MULTI/SET/PEXPIREAT/EXEC, EVAL, each waiting for the one
// before). A durable write (WaitReplicas) takes a third: the unlock waits
// for WAIT's answer, so that a refused write is undone under the lock.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
)

// KeyPrefix is where sessions live in Redis: scs redisstore's default, so
// sessions written by the shop before this package read the same.
const KeyPrefix = "scs:session:"

// LockPrefix + token is a session's lock key.
const LockPrefix = "lock:session:"

// RedisStore keeps sessions in Redis: the stateless choice.
type RedisStore struct {
	rc    *redisclient.Client
	obs   Observer
	lock  bool
	wait  int        // replicas a commit waits for (WAIT); 0 acknowledges at once
	stale staleLocks // lock values a stall may have left behind (stale.go)
}

// NewRedis returns a store over rc. Redis need not be up yet: requests
// fail fast (ErrUnavailable) until it is.
func NewRedis(rc *redisclient.Client, o Options) *RedisStore {
	return &RedisStore{rc: rc, obs: o.observer(), lock: o.Lock, wait: o.WaitReplicas}
}

// Kind is Redis.
func (r *RedisStore) Kind() string { return Redis }

// unlockScript deletes a lock only if it still holds our value, so a holder
// never frees a lock that expired and was taken by someone else.
var unlockScript = redis.NewScript(1, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Load reads the session; for a write with the lock on, the read rides in
// the lock's pipeline.
func (r *RedisStore) Load(ctx context.Context, cookie string, write bool) (*Session, error) {
	token, _ := splitCookie(cookie)
	token = validToken(token)
	if token == "" {
		return newSession(false, ""), nil
	}
	if write && r.lock {
		return r.loadLocked(ctx, token)
	}
	return r.find(ctx, token)
}

// find reads the session with one GET.
func (r *RedisStore) find(ctx context.Context, token string) (*Session, error) {
	start := time.Now()
	var b []byte
	err := r.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		b, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", KeyPrefix+token))
		return err
	})
	found := err == nil
	if errors.Is(err, redis.ErrNil) {
		err = nil
	}
	r.obs.ObserveStore("find", time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("%w: find: %w", ErrUnavailable, err)
	}
	return opened(token, b, found), nil
}

// opened is open for the Redis store, which keeps the bytes it read: what
// a write that WAIT refuses puts back.
func opened(token string, b []byte, found bool) *Session {
	s := open(token, b, found)
	if s.known {
		s.prior = b
	}
	return s
}

// loadLocked takes the session's lock, retrying with backoff for at most
// LockWait, and returns the session read in the same round trip.
func (r *RedisStore) loadLocked(ctx context.Context, token string) (*Session, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, LockWait)
	defer cancel()
	key := LockPrefix + token
	value := randomHex(16)
	backoff := 2 * time.Millisecond
	for {
		try := time.Now()
		b, found, ok, err := r.tryLock(ctx, token, key, value)
		if err != nil {
			// The SET may land even though we saw an error (a client-side
			// timeout while Redis was stalled, which applies it when it
			// wakes): the next lock attempt on this key releases it, or that
			// write would wait until the lock expires.
			r.stale.remember(key, value)
			// The wait's own deadline cut this attempt short: a busy lock,
			// not an outage. The deadline, not ctx.Err(): the connection's
			// read deadline can fire a moment before the context's timer.
			if deadline, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(deadline) {
				r.obs.ObserveLockWait(time.Since(start), true)
				return nil, ErrLockTimeout
			}
			r.obs.ObserveLockWait(time.Since(start), false)
			return nil, fmt.Errorf("%w: lock: %w", ErrUnavailable, err)
		}
		if ok {
			r.obs.ObserveLockWait(time.Since(start), false)
			r.obs.ObserveStore("find", time.Since(try), nil)
			s := opened(token, b, found)
			s.lock = &heldLock{key: key, value: value, release: func() { r.unlock(key, value) }}
			return s, nil
		}
		select {
		case <-ctx.Done():
			r.obs.ObserveLockWait(time.Since(start), true)
			return nil, ErrLockTimeout
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// tryLock sends SET NX and the session's GET in one pipeline, after the
// release of any lock on key that an earlier failed exchange may have left
// behind. One attempt may take the client's timeout, however long the lock
// wait is: a stalled Redis is an outage to answer in a second, not a busy
// lock.
func (r *RedisStore) tryLock(ctx context.Context, token, key, value string) (b []byte, found, ok bool, err error) {
	stale := r.stale.values(key)
	err = r.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		if len(stale) > 0 {
			releaseStaleScript.Send(conn, redis.Args{key}.AddFlat(stale)...)
		}
		conn.Send("SET", key, value, "NX", "PX", lockTTL.Milliseconds())
		conn.Send("GET", KeyPrefix+token)
		if err := conn.Flush(); err != nil {
			return err
		}
		if len(stale) > 0 {
			deleted, err := redis.String(redis.ReceiveContext(conn, ctx))
			if err != nil && !errors.Is(err, redis.ErrNil) {
				return err
			}
			r.stale.released(key, stale, deleted)
		}
		set, setErr := redis.ReceiveContext(conn, ctx)
		var getErr error
		b, getErr = redis.Bytes(redis.ReceiveContext(conn, ctx))
		found = getErr == nil
		if errors.Is(getErr, redis.ErrNil) {
			getErr = nil
		}
		if err := errors.Join(setErr, getErr); err != nil {
			return err
		}
		ok = set != nil // nil: NX found someone else's lock
		return nil
	})
	return b, found, ok, err
}

// unlock releases a lock this replica took. When Redis does not answer,
// the release may never have run: the next lock attempt on key sends it
// again.
func (r *RedisStore) unlock(key, value string) {
	// A fresh context: the request's may be done, and the lock must go anyway.
	err := r.rc.Do(context.Background(), func(ctx context.Context, conn redis.Conn) error {
		_, err := unlockScript.DoContext(ctx, conn, key, value)
		return err
	})
	if err != nil {
		r.stale.remember(key, value)
	}
}

// Save writes the session with its expiry, atomically; in the same round
// trip it drops the old token of a renewed session and releases the lock
// the session holds. With WaitReplicas the commit is commitDurable's
// instead.
func (r *RedisStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	defer s.Release() // when the commit did not release it
	s.ver++
	b, err := s.encode()
	if err != nil {
		s.ver--
		return "", time.Time{}, fmt.Errorf("session: encode: %w", err)
	}
	s.size = len(b)
	priorKey := "" // the key the session had in Redis, if it had one
	if s.token != "" {
		priorKey = KeyPrefix + s.token
	}
	old := ""
	if s.renew {
		old = s.token
		s.token = ""
	}
	if s.token == "" {
		s.token = newToken()
	}
	start := time.Now()
	if r.wait > 0 {
		err = r.commitDurable(ctx, s, old, priorKey, b)
	} else {
		err = r.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
			if old != "" {
				conn.Send("DEL", KeyPrefix+old)
			}
			// The value and its expiry in one command, atomic by itself (PXAT,
			// Redis 6.2): one command where MULTI/SET/PEXPIREAT/EXEC were four.
			conn.Send("SET", KeyPrefix+s.token, b, "PXAT", s.deadline.UnixMilli())
			if s.lock == nil || s.lock.key == "" {
				_, err := redis.DoContext(conn, ctx, "")
				return err
			}
			// Do returns the first error among the pipeline's replies: a failed
			// SET leaves the lock held, for Release to free.
			if _, err := unlockScript.DoContext(ctx, conn, s.lock.key, s.lock.value); err != nil {
				return err
			}
			s.lock = nil
			return nil
		})
	}
	r.obs.ObserveStore("commit", time.Since(start), err)
	if err != nil {
		if old != "" {
			s.token = old // nothing changed: the old token still names the session
		}
		s.ver--
		return "", time.Time{}, fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	s.renew, s.modified = false, false
	s.prior = b // what Redis holds now, should this request write again
	return s.token, s.deadline, nil
}

// errNotDurable: fewer replicas than asked confirmed a write in time. The
// write was taken back from the primary (undoScript), so the refusal is
// true: the session is as it was.
var errNotDurable = errors.New("not confirmed by enough Redis replicas")

// commitDurable writes the session, whose new token (if any) is set, whose
// renewed token was old and whose key before the write was priorKey ("" for
// a new session), and acknowledges it only once WAIT confirms
// the replicas asked for. Two round trips where the plain commit has one:
// DEL old, SET and WAIT in the first; the unlock in the second, after the
// answer, because a refused write is undone while the lock still keeps
// every other writer of the session out: a 503 must mean that nothing
// happened, or the shopper's retry applies the write twice.
func (r *RedisStore) commitDurable(ctx context.Context, s *Session, old, priorKey string, b []byte) error {
	key := KeyPrefix + s.token
	var acked int
	var wait time.Duration
	err := r.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		if old != "" {
			conn.Send("DEL", KeyPrefix+old)
		}
		conn.Send("SET", key, b, "PXAT", s.deadline.UnixMilli())
		wait = waitTime(ctx)
		conn.Send("WAIT", r.wait, wait.Milliseconds())
		replies, err := redis.Values(redis.DoContext(conn, ctx, ""))
		if err != nil {
			return err
		}
		n := len(replies)
		for _, reply := range replies[:n-1] {
			if e, ok := reply.(redis.Error); ok {
				return e // a READONLY or OOM, say: nothing was written
			}
		}
		acked, err = redis.Int(replies[n-1], nil)
		if err != nil {
			return fmt.Errorf("WAIT: %w", err)
		}
		return nil
	})
	if err != nil {
		// No answer, or a refusal: Save's Release frees the lock. Without
		// an answer the SET may have landed; undoing it would cost another
		// timeout against a Redis that is not answering.
		return err
	}
	if acked >= r.wait {
		s.Release()
		return nil
	}
	refused := fmt.Errorf("%w: %d of %d within %d ms", errNotDurable, acked, r.wait, wait.Milliseconds())
	if err := r.undo(ctx, s, key, priorKey, b); err != nil {
		return fmt.Errorf("%w, and taking the write back failed, so %w all the same: %w", refused, ErrMaybeApplied, err)
	}
	return refused
}

// undoScript takes back a write that WAIT did not confirm, and releases
// the session's lock, in one step. KEYS: the key the write set, the key the
// session had before (the same, or a renewed session's old one), and the
// lock when there is one. ARGV: the bytes written, the bytes before ("" when
// the session is new), their expiry (Unix ms), and the lock's value. The
// write is taken back only if the key still holds it: a writer that came
// after (without the lock, or past an expired one) is never overwritten. It
// returns 1 when the write was taken back.
var undoScript = redis.NewScript(-1, `
local undone = 0
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("DEL", KEYS[1])
	if ARGV[2] ~= "" then
		redis.call("SET", KEYS[2], ARGV[2], "PXAT", ARGV[3])
	end
	undone = 1
end
if KEYS[3] and redis.call("GET", KEYS[3]) == ARGV[4] then
	redis.call("DEL", KEYS[3])
end
return undone`)

// errUndoSuperseded: the key no longer held the refused write when the
// undo came, so the undo left it alone.
var errUndoSuperseded = errors.New("the session was written again before the undo")

// undo takes back s's refused write of b under key, restoring the bytes s
// was loaded with under priorKey (the same key, or a renewed session's old
// one, which the write deleted; "" for a new session, whose key just goes),
// and releases s's lock. Like unlock, it does not stop when the request
// does: a request that gave up must not leave its write behind.
func (r *RedisStore) undo(ctx context.Context, s *Session, key, priorKey string, b []byte) error {
	prior := s.prior
	if priorKey == "" {
		priorKey, prior = key, nil
	} else if prior == nil {
		// Every write loads through find or loadLocked, which keep the
		// bytes: this would be a session from somewhere else.
		return errors.New("the session's previous bytes are unknown")
	}
	args := redis.Args{2, key, priorKey}
	locked := s.lock != nil && s.lock.key != ""
	if locked {
		args = redis.Args{3, key, priorKey, s.lock.key}
	}
	args = args.Add(b, prior, s.deadline.UnixMilli())
	if locked {
		args = args.Add(s.lock.value)
	}
	var undone int
	err := r.rc.Do(context.WithoutCancel(ctx), func(ctx context.Context, conn redis.Conn) (err error) {
		undone, err = redis.Int(undoScript.DoContext(ctx, conn, args...))
		return err
	})
	if err != nil {
		return err // the lock, if still held, goes with Save's Release
	}
	if locked {
		s.lock = nil
	}
	if undone == 0 {
		return errUndoSuperseded
	}
	return nil
}

// waitTime is how long WAIT may block: half of what is left of ctx, so
// that its reply (a refusal, most of all) has as long again to come back
// on a loaded machine, at most maxWait, and at least 1 ms (WAIT 0 would
// block forever).
func waitTime(ctx context.Context) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		return maxWait
	}
	return min(maxWait, max(time.Millisecond, time.Until(deadline)/2))
}

// maxWait bounds WAIT however long the store timeout is: a replica that
// has not confirmed a write on loopback or in a data centre in half a
// second is not coming back in time for a shopper.
const maxWait = 500 * time.Millisecond

// Ping reports whether Redis answers and accepts writes: a Redis that
// refuses them (out of memory, read-only) cannot keep a cart.
func (r *RedisStore) Ping(ctx context.Context) error {
	if err := r.rc.Writable(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Describe asks Redis what it will do with the session and its lock.
func (r *RedisStore) Describe(ctx context.Context, s *Session, replica string) Description {
	d := Description{
		TTL:          time.Until(s.deadline),
		ReplicaDeath: ReplicaDeathStory(Redis, replica),
		RedisOutage: "While Redis is down no replica can read or change the session: the cart is unavailable (503) until Redis answers again. " +
			"A Redis restarted from its append-only file brings the session back; a Redis that lost its data lost every session at once.",
		KeyChange: keylessText,
		Logout:    logoutDeletesText,
	}
	d.Capacity = "Redis keeps sessions up to its maxmemory, shared by every replica. Past it, with the noeviction policy, Redis refuses writes: " +
		"carts can be read but not changed (503, and /readyz says Redis is out of memory) until sessions expire or Redis gets room."
	if b, err := s.encode(); err == nil {
		d.SizeBytes = len(b)
		d.Size = fmt.Sprintf("%d bytes of JSON in Redis under scs:session:<token>; the cookie holds only a %d-character token", len(b), tokenLen)
	}
	if s.token != "" {
		// What Redis itself will do, which is what matters to every replica.
		if ms, err := r.pttl(ctx, KeyPrefix+s.token); err == nil && ms > 0 {
			d.TTL = time.Duration(ms) * time.Millisecond
		}
	}
	switch {
	case !r.lock:
		d.Lock = lockOffText
	case s.token == "":
		d.Lock = "none: no session yet"
	default:
		ms, err := r.pttl(ctx, LockPrefix+s.token)
		switch {
		case err != nil:
			d.Lock = "unknown: Redis did not answer"
		case ms == -2:
			d.Lock = "free: no lock:session:<token> key in Redis; a write takes it for at most 5 s"
		default:
			d.Lock = fmt.Sprintf("held: lock:session:<token> exists in Redis and expires in %d ms unless its holder releases it first", ms)
		}
		if r.rc.Sentinel() {
			d.Lock += ". With Sentinel the lock is a SET NX key on the primary, copied to the replica asynchronously: " +
				"if the primary dies, the promoted replica may not have it, and for a moment two replicas can both hold the lock on this session"
		}
	}
	return d
}

// pttl is PTTL key: milliseconds to live, -1 without expiry, -2 absent.
func (r *RedisStore) pttl(ctx context.Context, key string) (ms int64, err error) {
	err = r.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		ms, err = redis.Int64(redis.DoContext(conn, ctx, "PTTL", key))
		return err
	})
	return ms, err
}

// Close does nothing: the Redis client belongs to main, which closes it.
func (r *RedisStore) Close() error { return nil }
