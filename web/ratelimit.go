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
	"github.com/statelab/shop/state"
)

// Login attempts allowed per account and client address in one window.
const (
	loginFailures = 5
	loginWindow   = 5 * time.Minute
)

// loginLimiter counts login attempts. Where it keeps its counts is the
// lesson: in Redis every replica sees the same count; in process memory each
// replica counts alone, so round robin multiplies the allowance by the
// replica count.
//
// An attempt is reserved before its password is checked, in one atomic step:
// checking first and counting after (check-then-act) let a burst of parallel
// guesses all pass the check before any of them was counted.
type loginLimiter interface {
	// Reserve counts one attempt for key and reports whether it is within
	// the allowance; an attempt past it must not be checked at all.
	Reserve(ctx context.Context, key string) (allowed bool, err error)
	// Reset forgets key's attempts after a successful login.
	Reset(ctx context.Context, key string) error
	// describe says where the counts live, for /state.
	describe(ctx context.Context) state.Description
}

// memoryLimiter is the per-replica limiter of memory mode.
type memoryLimiter struct {
	mu     sync.Mutex
	counts map[string]window
	swept  time.Time // the last sweep of expired windows
	now    func() time.Time
}

type window struct {
	n     int
	until time.Time
}

func newMemoryLimiter() *memoryLimiter {
	return &memoryLimiter{counts: make(map[string]window), now: time.Now}
}

func (l *memoryLimiter) Reserve(_ context.Context, key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Drop expired windows now and then, so the map does not grow forever;
	// at most once a minute, or a flood of distinct emails (10000 live
	// windows) would make every attempt scan them all under the lock.
	if len(l.counts) > 10000 && now.Sub(l.swept) >= time.Minute {
		l.swept = now
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
	if w.n >= loginFailures {
		return false, nil
	}
	w.n++
	l.counts[key] = w
	return true, nil
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

// reserveScript counts the attempt and starts its window on the first one,
// atomically, so a counter can never be left without an expiry; Redis runs
// it as one step, so parallel attempts on every replica get distinct counts.
var reserveScript = redis.NewScript(1, `local n = redis.call("INCR", KEYS[1]) if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end return n`)

func (l redisLimiter) Reserve(ctx context.Context, key string) (bool, error) {
	var n int
	err := l.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		n, err = redis.Int(reserveScript.DoContext(ctx, conn, limitKey(key), loginWindow.Milliseconds()))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%w: rate limit: %w", ErrSessionStore, err)
	}
	return n <= loginFailures, nil
}

func (l redisLimiter) Reset(ctx context.Context, key string) error {
	err := l.rc.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "DEL", limitKey(key))
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: rate limit: %w", ErrSessionStore, err)
	}
	return nil
}

// describe is the login limiter's account of itself for /state: a memory
// limiter's open windows die with the replica, and with them the count
// that kept a guesser out; Redis's counts are every replica's.
func (l *memoryLimiter) describe(context.Context) state.Description {
	l.mu.Lock()
	now, n := l.now(), 0
	for _, w := range l.counts {
		if now.Before(w.until) {
			n++
		}
	}
	l.mu.Unlock()
	return state.Description{Kind: "rate-limits", Lives: state.Replica, HeldHere: n, LostIfKilled: true,
		Note: "Login attempts are counted in this replica's memory: each replica counts alone, and a kill -9 forgets every count, so a guesser starts over."}
}

func (redisLimiter) describe(context.Context) state.Description {
	return state.Description{Kind: "rate-limits", Lives: state.Shared,
		Note: "Login attempts are counted in Redis, one count per client and account for every replica: a kill -9 here forgets nothing."}
}
