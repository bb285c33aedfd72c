package session

// The near-cache store: the Redis store with a copy of recent sessions in
// this replica, for reads. It is state in the replica again, so it is built
// not to lie: Redis tells it of every change (tracking.go), it serves
// nothing while it cannot hear Redis, and a browser's cookie carries the
// version of its last write so that no replica answers it with less, even
// before the invalidation arrives.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/statelab/shop/internal/redisclient"
)

// DefaultCacheBytes is the near-cache's default bound: some twenty thousand
// sessions of a few hundred bytes, and a small part of a replica's memory.
const DefaultCacheBytes = 8 << 20

// The near-cache's events, as CacheObserver hears them.
const (
	CacheHit          = "hit"          // a read served from this replica
	CacheMiss         = "miss"         // a read that went to Redis (and filled)
	CacheStale        = "stale"        // a copy older than the cookie's version: Redis
	CacheBypass       = "bypass"       // invalidation down: Redis, nothing cached
	CacheInvalidation = "invalidation" // Redis dropped a copy this replica held
	CacheFlush        = "flush"        // everything dropped: connection lost, or FLUSHALL
	// CacheWrite marks a session loaded for a write: never from the cache.
	CacheWrite = "write"
)

// CacheObserver counts the near-cache's events: metrics listen here. The
// store's Options.Observer is asked for it; without it nobody listens.
type CacheObserver interface {
	ObserveNearCache(event string)
}

type noCacheObserver struct{}

func (noCacheObserver) ObserveNearCache(string) {}

// CacheOptions configure the near-cache.
type CacheOptions struct {
	// MaxBytes bounds the copies (encoded size, key and bookkeeping); zero
	// means DefaultCacheBytes.
	MaxBytes int64
	// NoInvalidation switches invalidation off, for teaching only: copies
	// are then served until evicted or outdated by the browser's own
	// version, and other clients' reads go stale.
	NoInvalidation bool
	// OnConnected, when set, is told the invalidation connection's client
	// id each time it subscribes (tests kill it with CLIENT KILL).
	OnConnected func(id int64)
}

// CachedRedisStore is a RedisStore whose reads go through a near-cache.
type CachedRedisStore struct {
	*RedisStore
	cache  *nearCache
	cobs   CacheObserver
	noInv  bool
	cancel context.CancelFunc
	done   chan struct{}
}

// NewCachedRedis returns the Redis store over rc with a near-cache in front
// of its reads; it keeps an invalidation connection to Redis, dialed
// through rc, until Close.
func NewCachedRedis(rc *redisclient.Client, o Options, co CacheOptions) *CachedRedisStore {
	if co.MaxBytes <= 0 {
		co.MaxBytes = DefaultCacheBytes
	}
	obs, ok := o.Observer.(CacheObserver)
	if !ok {
		obs = noCacheObserver{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &CachedRedisStore{
		// Never redisstore itself: the cache's reads go through our store.
		RedisStore: newRedis(rc, o, false),
		cache:      newNearCache(co.MaxBytes),
		cobs:       obs,
		noInv:      co.NoInvalidation,
		cancel:     cancel,
		done:       make(chan struct{}),
	}
	if co.NoInvalidation {
		c.cache.setLive(true)
		close(c.done)
		return c
	}
	t := &tracker{dial: rc.Dial, primary: rc.Addr, cache: c.cache, obs: obs, connected: co.OnConnected}
	go func() {
		defer close(c.done)
		t.run(ctx)
	}()
	return c
}

// Load serves a read from the near-cache when its copy is current, and
// every write from Redis under the lock.
func (c *CachedRedisStore) Load(ctx context.Context, cookie string, write bool) (*Session, error) {
	token, minVer := splitCookie(cookie)
	token = validToken(token)
	if token == "" || write {
		s, err := c.RedisStore.Load(ctx, cookie, write)
		if s != nil && token != "" {
			s.state.(*redisRequest).src = CacheWrite
		}
		return s, err
	}
	key := KeyPrefix + token
	start := time.Now()
	e, found := c.cache.get(key, minVer, start)
	q := &redisRequest{}
	switch found {
	case lookupHit:
		c.cobs.ObserveNearCache(CacheHit)
		q.hit, q.src = &e, CacheHit
		return c.find(ctx, token, q)
	case lookupBypass:
		q.src = CacheBypass
	case lookupStale:
		q.src = CacheStale
	default:
		q.src = CacheMiss
	}
	c.cobs.ObserveNearCache(q.src)
	var ticket uint64
	if q.src != CacheBypass {
		ticket = c.cache.beginFill(key)
		q.fill = true
	}
	s, err := c.find(ctx, token, q)
	c.cache.endFill(key, ticket, q.filled)
	return s, err
}

// copy is what the near-cache keeps of a session just written whole.
func (s *Session) copy() *cached {
	size := 0
	if q, ok := s.state.(*redisRequest); ok {
		size = q.size
	}
	return &cached{deadline: s.Deadline(), vals: s.values(), ver: s.Version(), size: size}
}

// Save writes to Redis (under the lock the session holds) and refreshes
// the copy. The cookie names the new version, so that the browser's next
// read, on any replica, gets at least what it was just told.
func (c *CachedRedisStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	oldKey := ""
	if token := s.Token(); token != "" {
		oldKey = KeyPrefix + token
	}
	var ticket uint64
	refresh := false
	switch {
	case oldKey == "":
	case s.renew || !c.lock || c.noInv:
		// A renewal drops the old token; without the lock, which of two
		// writes landed last is unknown; without invalidation there is
		// nothing to tell our write's message from another's.
		c.cache.drop(oldKey)
	default:
		ticket, refresh = c.cache.beginWrite(oldKey), true
	}
	token, expires, err := c.RedisStore.Save(ctx, s)
	key := KeyPrefix + token
	switch {
	case err != nil:
		if refresh {
			c.cache.endWrite(oldKey, ticket, nil)
		}
		return "", time.Time{}, err
	case refresh:
		c.cache.endWrite(key, ticket, s.copy())
	case key != oldKey || c.noInv:
		// A token only this replica knows yet (new or renewed), or the
		// teaching mode that trusts its copies.
		c.cache.install(key, s.copy())
	}
	return token + versionSep + strconv.FormatInt(s.Version(), 10), expires, nil
}

// Describe is the Redis store's account, plus the near-cache's.
func (c *CachedRedisStore) Describe(ctx context.Context, s *Session, replica string) Description {
	d := c.RedisStore.Describe(ctx, s, replica)
	entries, bytes, live := c.cache.stats()
	inv := "Redis tells every replica of each change to a session (CLIENT TRACKING, broadcast on " + KeyPrefix + "), and the copy is dropped."
	switch {
	case c.noInv:
		inv = "Invalidation is switched off (teaching mode): copies are served until evicted, so another browser's change can stay invisible here."
	case !live:
		inv = "The invalidation connection to Redis is down: the cache is empty and bypassed."
	}
	d.NearCache = fmt.Sprintf("%s %s It holds %d sessions in %d bytes.", answeredFrom(s, replica), inv, entries, bytes)
	return d
}

// answeredFrom says, for the inspector, where a read's answer came from.
func answeredFrom(s *Session, replica string) string {
	if !s.known {
		return "There is no session in Redis for this request: nothing to cache."
	}
	switch s.NearCache() {
	case CacheHit:
		return fmt.Sprintf("This answer came from %s's near-cache (version %d), without asking Redis.", replica, s.Version())
	case CacheMiss:
		return fmt.Sprintf("This answer came from Redis (%s's near-cache had no copy); version %d is cached now.", replica, s.Version())
	case CacheStale:
		return "This answer came from Redis: the near-cache's copy was older than the version your cookie names."
	case CacheBypass:
		return "This answer came from Redis: the invalidation connection is down, so the near-cache serves nothing until it is back."
	default:
		return "This answer came from Redis: a write always reads and writes Redis under the lock."
	}
}

// Close stops the invalidation connection.
func (c *CachedRedisStore) Close() error {
	c.cancel()
	<-c.done
	return c.RedisStore.Close()
}

// CacheStats is the near-cache's size and state, for tests and pages.
func (c *CachedRedisStore) CacheStats() (entries int, bytes int64, live bool) {
	return c.cache.stats()
}
