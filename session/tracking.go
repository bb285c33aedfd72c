package session

// Invalidation: Redis's client-side caching support, in broadcast mode, on
// a connection of its own. The connection asks Redis to tell it about every
// change to a key under KeyPrefix (CLIENT TRACKING on BCAST PREFIX), sent
// to itself (REDIRECT to its own id: redigo speaks RESP2, where only a
// connection subscribed to __redis__:invalidate can receive them), then
// subscribes. Until the subscription is confirmed, and from the moment the
// connection fails, the cache serves nothing and holds nothing.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// invalidationChannel is where Redis publishes invalidations in RESP2.
const invalidationChannel = "__redis__:invalidate"

const (
	// trackingPing is how often the invalidation connection proves it is
	// alive; trackingDeadAfter without any answer counts it as lost (a
	// Redis that stalls or a link that drops silently).
	trackingPing      = 500 * time.Millisecond
	trackingDeadAfter = 3 * trackingPing
	// trackingRetry bounds the wait between reconnection attempts.
	trackingRetry = 2 * time.Second
)

// tracker keeps the invalidation connection up and applies what arrives.
type tracker struct {
	dial func(ctx context.Context) (redis.Conn, error)
	// primary is where the client says the primary is now: with Sentinel,
	// a failover changes it, and the connection must follow, since a
	// demoted primary hears of no write.
	primary func() string
	cache   *nearCache
	obs     CacheObserver
	// connected is told each time a subscription is confirmed, with the
	// connection's client id (tests kill it).
	connected func(id int64)
}

// run keeps the connection until ctx ends, reconnecting with backoff.
func (t *tracker) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		subscribed, _ := t.session(ctx)
		t.cache.setLive(false)
		if subscribed {
			t.obs.ObserveNearCache(CacheFlush)
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, trackingRetry)
	}
}

// session runs one connection: set up, subscribe, then apply messages until
// it fails. subscribed reports whether it got as far as serving.
func (t *tracker) session(ctx context.Context) (subscribed bool, err error) {
	conn, err := t.dial(ctx)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	dialed := t.primary()

	// Only a primary sees every write.
	role, err := redis.Values(redis.DoContext(conn, ctx, "ROLE"))
	if err != nil {
		return false, err
	}
	if len(role) == 0 || string(asBytes(role[0])) != "master" {
		return false, errors.New("session: the invalidation connection reached a Redis that is not the primary")
	}
	id, err := redis.Int64(redis.DoContext(conn, ctx, "CLIENT", "ID"))
	if err != nil {
		return false, err
	}
	if _, err := redis.DoContext(conn, ctx, "CLIENT", "TRACKING", "on", "REDIRECT", id, "BCAST", "PREFIX", KeyPrefix); err != nil {
		return false, fmt.Errorf("session: client tracking: %w", err)
	}
	if err := conn.Send("SUBSCRIBE", invalidationChannel); err != nil {
		return false, err
	}
	if err := conn.Flush(); err != nil {
		return false, err
	}

	// Pings from their own goroutine: redigo allows one writer beside the
	// one reader. Any reply, pong or message, proves the link.
	pingDone := make(chan struct{})
	defer close(pingDone)
	go func() {
		tick := time.NewTicker(trackingPing)
		defer tick.Stop()
		for {
			select {
			case <-pingDone:
				return
			case <-tick.C:
				if t.primary() != dialed || conn.Send("PING") != nil || conn.Flush() != nil {
					conn.Close()
					return
				}
			}
		}
	}()

	for {
		reply, err := redis.ReceiveWithTimeout(conn, trackingDeadAfter)
		if err != nil {
			return subscribed, err
		}
		kind, payload, err := pubsubReply(reply)
		if err != nil {
			return subscribed, err
		}
		switch kind {
		case "subscribe":
			subscribed = true
			t.cache.setLive(true)
			if t.connected != nil {
				t.connected(id)
			}
		case "message":
			t.apply(payload)
		}
	}
}

// apply drops what an invalidation names; nil names everything (FLUSHALL,
// FLUSHDB, or Redis running out of tracking table).
func (t *tracker) apply(keys []any) {
	if keys == nil {
		t.cache.flush()
		t.obs.ObserveNearCache(CacheFlush)
		return
	}
	for _, k := range keys {
		key, ok := k.([]byte)
		if !ok {
			continue
		}
		if t.cache.invalidate(string(key)) {
			t.obs.ObserveNearCache(CacheInvalidation)
		}
	}
}

func asBytes(v any) []byte {
	b, _ := v.([]byte)
	return b
}

// pubsubReply takes apart a RESP2 push on a subscribed connection: its kind
// ("subscribe", "message", "pong") and, for a message, the invalidated keys
// (nil for all). redigo's PubSubConn cannot: an invalidation's payload is
// an array, not a string.
func pubsubReply(reply any) (kind string, keys []any, err error) {
	parts, ok := reply.([]any)
	if !ok || len(parts) == 0 {
		if s, ok := reply.(string); ok && s == "PONG" {
			return "pong", nil, nil
		}
		return "", nil, fmt.Errorf("session: unexpected reply %v on the invalidation connection", reply)
	}
	k, ok := parts[0].([]byte)
	if !ok {
		return "", nil, errors.New("session: malformed push on the invalidation connection")
	}
	kind = string(k)
	if kind == "message" && len(parts) == 3 {
		keys, _ = parts[2].([]any)
		if parts[2] != nil && keys == nil {
			// A single key sent as a string (older servers).
			if b, ok := parts[2].([]byte); ok {
				keys = []any{b}
			}
		}
	}
	return kind, keys, nil
}
