package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
)

// Login failures allowed per account and client address in one window.
const (
	loginFailures = 5
	loginWindow   = 5 * time.Minute
)

// loginLimiter counts failed logins. Where it keeps its counts is the lesson:
// in Redis every replica sees the same count; in process memory each replica
// counts alone, so round robin multiplies the allowance by the replica count.
type loginLimiter interface {
	Blocked(ctx context.Context, key string) (bool, error)
	Fail(ctx context.Context, key string) error
	Reset(ctx context.Context, key string) error
}

// memoryLimiter is the per-replica limiter of memory mode.
type memoryLimiter struct {
	mu     sync.Mutex
	counts map[string]window
	now    func() time.Time
}

type window struct {
	n     int
	until time.Time
}

func newMemoryLimiter() *memoryLimiter {
	return &memoryLimiter{counts: make(map[string]window), now: time.Now}
}

func (l *memoryLimiter) Blocked(_ context.Context, key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.counts[key]
	return ok && l.now().Before(w.until) && w.n >= loginFailures, nil
}

func (l *memoryLimiter) Fail(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Drop expired windows now and then, so the map does not grow forever.
	if len(l.counts) > 10000 {
		for k, w := range l.counts {
			if !now.Before(w.until) {
				delete(l.counts, k)
			}
		}
	}
	w := l.counts[key]
	if !now.Before(w.until) {
		w = window{until: now.Add(loginWindow)}
	}
	w.n++
	l.counts[key] = w
	return nil
}

func (l *memoryLimiter) Reset(_ context.Context, key string) error {
	l.mu.Lock()
	delete(l.counts, key)
	l.mu.Unlock()
	return nil
}

// redisLimiter is the shared limiter of redis mode: a fixed window counter
// per key that every replica increments.
type redisLimiter struct{ rc *redisclient.Client }

// limitKey hashes the account and address, so neither sits in Redis in clear.
func limitKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "ratelimit:login:" + hex.EncodeToString(sum[:16])
}

func (l redisLimiter) do(ctx context.Context, cmd string, args ...any) (any, error) {
	var v any
	err := l.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		v, err = redis.DoContext(conn, ctx, cmd, args...)
		return err
	})
	if err != nil && err != redis.ErrNil {
		return nil, fmt.Errorf("%w: rate limit: %w", ErrSessionStore, err)
	}
	return v, nil
}

func (l redisLimiter) Blocked(ctx context.Context, key string) (bool, error) {
	n, err := redis.Int(l.do(ctx, "GET", limitKey(key)))
	if err == redis.ErrNil {
		return false, nil
	}
	return n >= loginFailures, err
}

// incrScript increments the counter and starts its window on the first
// failure, atomically, so a counter can never be left without an expiry.
var incrScript = redis.NewScript(1, `local n = redis.call("INCR", KEYS[1]) if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end return n`)

func (l redisLimiter) Fail(ctx context.Context, key string) error {
	err := l.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := incrScript.DoContext(ctx, conn, limitKey(key), loginWindow.Milliseconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: rate limit: %w", ErrSessionStore, err)
	}
	return nil
}

func (l redisLimiter) Reset(ctx context.Context, key string) error {
	_, err := l.do(ctx, "DEL", limitKey(key))
	return err
}
