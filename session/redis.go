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
	"maps"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
)

// KeyPrefix is where sessions live in Redis: scs redisstore's default, so
// sessions written by the shop before this package read the same.
const KeyPrefix = "scs:session:"

// LockPrefix + token is a session's lock key.
const LockPrefix = "lock:session:"

// redisKind is the redis store as it registers itself.
var redisKind = Kind{
	Name: Redis,
	Traits: Traits{
		Place: InShared, Where: "Redis", Locks: true, NeedsRedis: true, Cacheable: true,
		ReplicaDeath: func(replica string) string {
			return fmt.Sprintf(
				"The session lives in Redis, not in %[1]s. If %[1]s died, nginx would send your next request to another replica, which reads the same session "+
					"from Redis: nothing is lost, and only the ribbon's name changes. The replicas are stateless and interchangeable. "+
					"The risk moved rather than vanished: if Redis died, every replica would lose every session at once.", replica)
		},
		RedisOutage: "While Redis is down no replica can read or change the session: the cart is unavailable (503) until Redis answers again. " +
			"A Redis restarted from its append-only file brings the session back; a Redis that lost its data lost every session at once.",
		KeyChange: keylessText,
	},
	Open: func(d Deps) (Store, error) {
		if d.Redis == nil {
			return nil, errors.New("session: the redis store needs a Redis")
		}
		if d.Cache != nil {
			return NewCachedRedis(d.Redis, d.Options, *d.Cache), nil
		}
		return NewRedis(d.Redis, d.Options), nil
	},
}

// RedisStore keeps sessions in Redis: the stateless choice. scs manages
// them. With the lock off and no WAIT, its store is scs's redisstore as
// it comes (sessionManager.Store = redisstore.New(pool)); otherwise it is
// redisBackend below, an scs.CtxStore over the same pool and the same keys
// that adds the lock, WAIT and the near-cache's reads.
type RedisStore struct {
	scs  *scsSessions
	rc   *redisclient.Client
	obs  Observer
	lock bool
	own  *redisBackend // nil when redisstore is the store
}

// NewRedis returns a store over rc. Redis need not be up yet: requests
// fail fast (ErrUnavailable) until it is.
func NewRedis(rc *redisclient.Client, o Options) *RedisStore {
	return newRedis(rc, o, !o.Lock && o.WaitReplicas == 0)
}

// newRedis returns the store, on redisstore when plain.
func newRedis(rc *redisclient.Client, o Options, plain bool) *RedisStore {
	r := &RedisStore{rc: rc, obs: o.observer(), lock: o.Lock}
	if plain {
		r.scs = newSCS(redisstore.New(rc.Pool()), r.obs)
	} else {
		r.own = &redisBackend{rc: rc, wait: o.WaitReplicas}
		r.scs = newSCS(r.own, r.obs)
		r.own.codec = r.scs.codec
	}
	r.scs.classify = redisclient.Classify
	return r
}

// Kind is Redis.
func (r *RedisStore) Kind() string { return Redis }

// unlockScript deletes a lock only if it still holds our value, so a holder
// never frees a lock that expired and was taken by someone else.
var unlockScript = redis.NewScript(1, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// redisRequest is what the redis store knows of one session in one
// request, beside scs's data. It is the context scs loads the session
// with, so that it travels to redisBackend without a context of its own.
type redisRequest struct {
	context.Context

	token string // the token the session was loaded under; "" for a new one
	prior []byte // the bytes read: what a write WAIT refuses puts back
	size  int    // bytes Redis holds for the session, when read or written

	attempt *Lock    // a lock to try in the same round trip as the GET
	lock    *Lock    // the lock the session holds, for the commit to carry
	olds    []string // tokens a renewal dropped: deleted with the commit

	// The near-cache's part (cached.go).
	hit    *cached // a current copy: no round trip
	fill   bool    // decode what Redis answers, for the cache
	filled *cached // what it answered, decoded
	src    string  // where the session was found
	ticket handoffTicket
}

type redisRequestKey struct{}

// Value makes the request findable in the context scs passes on.
func (q *redisRequest) Value(key any) any {
	if key == (redisRequestKey{}) {
		return q
	}
	return q.Context.Value(key)
}

func (q *redisRequest) cookieBytes() int    { return 0 }
func (q *redisRequest) fits(*Session) error { return nil }
func (q *redisRequest) source() string      { return q.src }
func requestOf(ctx context.Context) *redisRequest {
	q, _ := ctx.Value(redisRequestKey{}).(*redisRequest)
	return q
}

// Load reads the session; for a write with the lock on, the read rides in
// the lock's pipeline.
func (r *RedisStore) Load(ctx context.Context, cookie string, write bool) (*Session, error) {
	token, _ := splitCookie(cookie)
	token = validToken(token)
	if token != "" && write && r.lock {
		return r.loadLocked(ctx, token)
	}
	return r.find(ctx, token, &redisRequest{})
}

// find has scs load the session, q travelling with it.
func (r *RedisStore) find(ctx context.Context, token string, q *redisRequest) (*Session, error) {
	q.Context = ctx
	s, err := r.scs.load(q, token)
	if err != nil {
		return nil, err
	}
	s.state = q
	return s, nil
}

// errLockBusy: the lock's SET NX found another holder.
var errLockBusy = errors.New("session lock busy")

// loadLocked takes the session's lock, retrying with backoff for at most
// LockWait, and returns the session read in the same round trip.
func (r *RedisStore) loadLocked(ctx context.Context, token string) (*Session, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, LockWait)
	defer cancel()
	key := LockPrefix + token
	value := randomHex(16)
	backoff := 2 * time.Millisecond
	for {
		q := &redisRequest{attempt: &Lock{key: key, value: value, free: func() { r.unlock(key, value) }}}
		s, err := r.find(wctx, token, q)
		switch {
		case err == nil:
			r.obs.ObserveLockWait(time.Since(start), false)
			s.lock, q.lock = q.attempt, q.attempt
			return s, nil
		case !errors.Is(err, errLockBusy):
			// The wait's own deadline cut this attempt short: a busy lock,
			// not an outage. The deadline, not ctx.Err(): the connection's
			// read deadline can fire a moment before the context's timer.
			if deadline, _ := wctx.Deadline(); wctx.Err() != nil || !time.Now().Before(deadline) {
				r.obs.ObserveLockWait(time.Since(start), true)
				return nil, ErrLockTimeout
			}
			r.obs.ObserveLockWait(time.Since(start), false)
			return nil, err
		}
		select {
		case <-wctx.Done():
			r.obs.ObserveLockWait(time.Since(start), true)
			return nil, ErrLockTimeout
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
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
	if err != nil && r.own != nil {
		r.own.stale.remember(key, value)
	}
}

// Save writes the session with its expiry, atomically; in the same round
// trip it drops the old token of a renewed session and releases the lock
// the session holds. With WaitReplicas the commit is commitDurable's
// instead.
func (r *RedisStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	ver := s.Version()
	s.put(keyVer, ver+1)
	token, expires, err := r.scs.commit(ctx, s)
	if err != nil {
		s.put(keyVer, ver)
		return "", time.Time{}, err
	}
	return token, expires, nil
}

// redisBackend is our scs.CtxStore over the shop's Redis client: the keys
// and bytes of redisstore, plus what redisstore cannot do. A lock attempt
// rides with the GET (two round trips for a locked write, where
// redisstore and a separate lock would take four), a renewal's DEL and the
// unlock ride with the commit, a commit can wait for replicas (WAIT), and
// the near-cache's reads are answered from this replica.
type redisBackend struct {
	rc    *redisclient.Client
	codec *codec
	wait  int        // replicas a commit waits for (WAIT); 0 acknowledges at once
	stale staleLocks // lock values a stall may have left behind (stale.go)
}

// FindCtx reads a session: from the near-cache's copy, with a lock
// attempt, or with one GET.
func (b *redisBackend) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	q := requestOf(ctx)
	if q == nil {
		q = &redisRequest{}
	}
	q.token = token
	if q.hit != nil {
		q.size = q.hit.size
		return b.codec.handoff(&q.ticket, q.hit.deadline, maps.Clone(q.hit.vals)), true, nil
	}
	var data []byte
	var found bool
	if l := q.attempt; l != nil {
		var ok bool
		var err error
		data, found, ok, err = b.tryLock(ctx, token, l.key, l.value)
		if err != nil {
			// The SET may land even though we saw an error (a client-side
			// timeout while Redis was stalled, which applies it when it
			// wakes): the next lock attempt on this key releases it, or that
			// write would wait until the lock expires.
			b.stale.remember(l.key, l.value)
			return nil, false, err
		}
		if !ok {
			return nil, false, errLockBusy
		}
	} else {
		err := b.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
			data, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", KeyPrefix+token))
			return err
		})
		found = err == nil
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return nil, false, err
		}
	}
	if !found {
		return nil, false, nil
	}
	q.prior, q.size = data, len(data)
	if q.fill {
		deadline, m, err := decode(data)
		if err != nil {
			return data, true, nil // scs's decode says so
		}
		ver, _ := m[keyVer].(int64)
		q.filled = &cached{deadline: deadline, vals: m, ver: ver, size: len(data)}
		return b.codec.handoff(&q.ticket, deadline, maps.Clone(m)), true, nil
	}
	return data, true, nil
}

// tryLock sends SET NX and the session's GET in one pipeline, after the
// release of any lock on key that an earlier failed exchange may have left
// behind. One attempt may take the client's timeout, however long the lock
// wait is: a stalled Redis is an outage to answer in a second, not a busy
// lock.
func (b *redisBackend) tryLock(ctx context.Context, token, key, value string) (data []byte, found, ok bool, err error) {
	stale := b.stale.values(key)
	err = b.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		if len(stale) > 0 {
			releaseStaleScript.Send(conn, redis.Args{key}.AddFlat(stale)...)
		}
		conn.Send("SET", key, value, "NX", "PX", lockTTL.Milliseconds())
		conn.Send("GET", KeyPrefix+token)
		if err := conn.Flush(); err != nil {
			return err
		}
		// Receive returns an error reply as the error: each is checked.
		if len(stale) > 0 {
			deleted, err := redis.String(redis.ReceiveContext(conn, ctx))
			if err != nil && !errors.Is(err, redis.ErrNil) {
				return err
			}
			b.stale.released(key, stale, deleted)
		}
		set, setErr := redis.ReceiveContext(conn, ctx)
		var getErr error
		data, getErr = redis.Bytes(redis.ReceiveContext(conn, ctx))
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
	return data, found, ok, err
}

// CommitCtx writes the session and its expiry in one command (SET PXAT:
// one where redisstore's MULTI/SET/PEXPIREAT/EXEC is four), with a
// renewal's DEL and the unlock in the same round trip. Every reply is
// checked: a refused SET (OOM, READONLY, NOAUTH) is an error, never an
// acknowledged write. With WaitReplicas the commit is commitDurable's.
func (b *redisBackend) CommitCtx(ctx context.Context, token string, data []byte, expiry time.Time) error {
	q := requestOf(ctx)
	if q == nil {
		q = &redisRequest{}
	}
	if b.wait > 0 {
		if err := b.commitDurable(ctx, q, token, data, expiry); err != nil {
			return err
		}
	} else {
		err := b.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
			for _, old := range q.olds {
				conn.Send("DEL", KeyPrefix+old)
			}
			conn.Send("SET", KeyPrefix+token, data, "PXAT", expiry.UnixMilli())
			if !q.lock.held() || q.lock.key == "" {
				_, err := redisclient.Flush(ctx, conn)
				return err
			}
			// Do returns the first error among the pipeline's replies: a
			// failed SET leaves the lock for Release to free.
			if _, err := unlockScript.DoContext(ctx, conn, q.lock.key, q.lock.value); err != nil {
				return err
			}
			q.lock.carried()
			return nil
		})
		if err != nil {
			return err
		}
	}
	q.token, q.prior, q.size, q.olds = token, data, len(data), nil
	return nil
}

// DeleteCtx drops a session. A renewal's delete waits for the commit that
// follows it and rides in its round trip: should the commit fail, the old
// token still names the session.
func (b *redisBackend) DeleteCtx(ctx context.Context, token string) error {
	if q := requestOf(ctx); q != nil {
		q.olds = append(q.olds, token)
		return nil
	}
	return b.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "DEL", KeyPrefix+token)
		return err
	})
}

// Find, Commit and Delete are scs.Store's, for callers without a context.
func (b *redisBackend) Find(token string) ([]byte, bool, error) {
	return b.FindCtx(context.Background(), token)
}

func (b *redisBackend) Commit(token string, data []byte, expiry time.Time) error {
	return b.CommitCtx(context.Background(), token, data, expiry)
}

func (b *redisBackend) Delete(token string) error { return b.DeleteCtx(context.Background(), token) }

// errNotDurable: fewer replicas than asked confirmed a write in time. The
// write was taken back from the primary (undoScript), so the refusal is
// true: the session is as it was.
var errNotDurable = errors.New("not confirmed by enough Redis replicas")

// commitDurable writes the session under its token, whose renewed
// tokens were q.olds and whose key before the write was q.token's ("" for
// a new session), and acknowledges it only once WAIT confirms the replicas
// asked for. Two round trips where the plain commit has one: DEL old, SET
// and WAIT in the first; the unlock in the second, after the answer,
// because a refused write is undone while the lock still keeps every other
// writer of the session out: a 503 must mean that nothing happened, or the
// shopper's retry applies the write twice.
func (b *redisBackend) commitDurable(ctx context.Context, q *redisRequest, token string, data []byte, expiry time.Time) error {
	key := KeyPrefix + token
	priorKey := ""
	if q.token != "" {
		priorKey = KeyPrefix + q.token
	}
	var acked int
	var wait time.Duration
	err := b.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		for _, old := range q.olds {
			conn.Send("DEL", KeyPrefix+old)
		}
		conn.Send("SET", key, data, "PXAT", expiry.UnixMilli())
		wait = waitTime(ctx)
		conn.Send("WAIT", b.wait, wait.Milliseconds())
		replies, err := redisclient.Flush(ctx, conn)
		if err != nil {
			return err // a READONLY or OOM, say: nothing was written
		}
		acked, err = redis.Int(replies[len(replies)-1], nil)
		if err != nil {
			return fmt.Errorf("WAIT: %w", err)
		}
		return nil
	})
	if err != nil {
		// No answer, or a refusal: the lock goes with the session's
		// Release. Without an answer the SET may have landed; undoing it
		// would cost another timeout against a Redis that is not answering.
		return err
	}
	if acked >= b.wait {
		return nil // the lock goes with the session's Release
	}
	refused := fmt.Errorf("%w: %d of %d within %d ms", errNotDurable, acked, b.wait, wait.Milliseconds())
	if err := b.undo(ctx, q, key, priorKey, data, expiry); err != nil {
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

// undo takes back the refused write of data under key, restoring the
// bytes the session was loaded with under priorKey (the same key, or a
// renewed session's old one, which the write deleted; "" for a new
// session, whose key just goes), and releases the session's lock. Like
// unlock, it does not stop when the request does: a request that gave up
// must not leave its write behind.
func (b *redisBackend) undo(ctx context.Context, q *redisRequest, key, priorKey string, data []byte, expiry time.Time) error {
	prior := q.prior
	if priorKey == "" {
		priorKey, prior = key, nil
	} else if prior == nil {
		// Every write loads through FindCtx, which keeps the bytes: this
		// would be a session from somewhere else.
		return errors.New("the session's previous bytes are unknown")
	}
	args := redis.Args{2, key, priorKey}
	locked := q.lock.held() && q.lock.key != ""
	if locked {
		args = redis.Args{3, key, priorKey, q.lock.key}
	}
	args = args.Add(data, prior, expiry.UnixMilli())
	if locked {
		args = args.Add(q.lock.value)
	}
	var undone int
	err := b.rc.Do(context.WithoutCancel(ctx), func(ctx context.Context, conn redis.Conn) (err error) {
		undone, err = redis.Int(undoScript.DoContext(ctx, conn, args...))
		return err
	})
	if err != nil {
		return err // the lock, if still held, goes with the session's Release
	}
	if locked {
		q.lock.carried()
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
		TTL:          time.Until(s.Deadline()),
		ReplicaDeath: redisKind.Traits.ReplicaDeath(replica),
		RedisOutage:  redisKind.Traits.RedisOutage,
		KeyChange:    redisKind.Traits.KeyChange,
		Logout:       logoutDeletesText,
	}
	d.Capacity = "Redis keeps sessions up to its maxmemory, shared by every replica. Past it, with the noeviction policy, Redis refuses writes: " +
		"carts can be read but not changed (503, and /readyz says Redis is out of memory) until sessions expire or Redis gets room."
	if b, err := s.encode(); err == nil {
		d.SizeBytes = len(b)
		d.Size = fmt.Sprintf("%d bytes of JSON in Redis under scs:session:<token>; the cookie holds only a %d-character token", len(b), tokenLen)
	}
	if token := s.Token(); token != "" {
		// What Redis itself will do, which is what matters to every replica.
		if ms, err := r.pttl(ctx, KeyPrefix+token); err == nil && ms > 0 {
			d.TTL = time.Duration(ms) * time.Millisecond
		}
	}
	switch {
	case !r.lock:
		d.Lock = lockOffText
	case s.Token() == "":
		d.Lock = "none: no session yet"
	default:
		ms, err := r.pttl(ctx, LockPrefix+s.Token())
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
