package redisclient

// Login limits: how many attempts a client may make per account, and across
// accounts, in a window. Where the counts live is the lesson: in Redis every
// replica sees the same count (SharedLimiter); in process memory each
// replica counts alone (LocalLimiter), so round robin multiplies the
// allowance by the replica count. SharedLimiter falls back to counting per
// replica while Redis is away, says so in the log and in Describe, and
// keeps logins working.
//
// An attempt is reserved before its password is checked, in one atomic
// step: checking first and counting after (check-then-act) let a burst of
// parallel guesses all pass the check before any of them was counted. The
// client's count is checked before the account's is touched, so a client
// past its limit creates no key at all: the keys a flood creates are
// bounded by the client's allowance, not by the flood.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/state"
)

// Default login limits.
const (
	// DefaultPerAccount is how many failed attempts one client may make on
	// one account in a window.
	DefaultPerAccount = 5
	// DefaultPerClient is how many failed attempts one client may make
	// across all accounts in a window (logins and registrations of a taken
	// address alike).
	DefaultPerClient = 20
	// DefaultWindow is how long an attempt is remembered.
	DefaultWindow = 5 * time.Minute
)

// Limits are the allowances of a limiter.
type Limits struct {
	PerAccount int
	PerClient  int
	Window     time.Duration
}

// withDefaults fills the zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.PerAccount <= 0 {
		l.PerAccount = DefaultPerAccount
	}
	if l.PerClient <= 0 {
		l.PerClient = DefaultPerClient
	}
	if l.Window <= 0 {
		l.Window = DefaultWindow
	}
	return l
}

// Verdict is what Reserve decided.
type Verdict struct {
	// Allowed: the attempt is counted and may be checked.
	Allowed bool
	// ByClient says which limit refused it: the client's across accounts
	// (true) or the one for this account (false).
	ByClient bool
	// RetryAfter is how long the refusal lasts at most (the window).
	RetryAfter time.Duration
}

// limiterKind is the Description kind of a login limiter.
const limiterKind = "rate-limits"

// LocalLimiter counts attempts in this process's memory: each replica
// alone. The zero value is not usable; use NewLocalLimiter.
type LocalLimiter struct {
	limits Limits
	now    func() time.Time

	mu     sync.Mutex
	counts map[string]window
	swept  time.Time // the last sweep of expired windows
}

type window struct {
	n     int
	until time.Time
}

// NewLocalLimiter returns a limiter that counts in this replica's memory.
func NewLocalLimiter(l Limits) *LocalLimiter {
	return &LocalLimiter{limits: l.withDefaults(), now: time.Now, counts: make(map[string]window)}
}

// Reserve counts one attempt by client on account ("" counts it against the
// client only) and reports whether it is within both allowances; an attempt
// past either must not be checked at all, and is counted nowhere.
func (l *LocalLimiter) Reserve(_ context.Context, client, account string) (Verdict, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	refused := Verdict{RetryAfter: l.limits.Window}
	c := l.current(clientKey(client), now)
	if c.n >= l.limits.PerClient {
		refused.ByClient = true
		return refused, nil
	}
	if account != "" {
		a := l.current(accountKey(client, account), now)
		if a.n >= l.limits.PerAccount {
			return refused, nil
		}
		a.n++
		l.counts[accountKey(client, account)] = a
	}
	c.n++
	l.counts[clientKey(client)] = c
	return Verdict{Allowed: true}, nil
}

// Release gives back an attempt that was reserved but never checked (no
// hasher was free, the database did not answer): it counts against nobody.
func (l *LocalLimiter) Release(_ context.Context, client, account string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decrement(clientKey(client))
	if account != "" {
		l.decrement(accountKey(client, account))
	}
	return nil
}

// Succeeded forgets the account's failed attempts after a successful login
// and gives the client its attempt back: only failures count.
func (l *LocalLimiter) Succeeded(_ context.Context, client, account string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decrement(clientKey(client))
	delete(l.counts, accountKey(client, account))
	return nil
}

// Check says whether client may still make an attempt across accounts,
// counting nothing.
func (l *LocalLimiter) Check(_ context.Context, client string) (Verdict, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits.verdict(l.current(clientKey(client), l.now()).n), nil
}

// verdict is Check's answer for a client that made n attempts.
func (l Limits) verdict(n int) Verdict {
	if n < l.PerClient {
		return Verdict{Allowed: true}
	}
	return Verdict{ByClient: true, RetryAfter: l.Window}
}

// Describe says where the counts live: in this replica, lost with it.
func (l *LocalLimiter) Describe(context.Context) state.Description {
	l.mu.Lock()
	// One count per client and account with an open window: what a kill
	// -9 would forget (a client's count across accounts comes with them).
	now, n := l.now(), 0
	for k, w := range l.counts {
		if now.Before(w.until) && strings.HasPrefix(k, accountPrefix) {
			n++
		}
	}
	l.mu.Unlock()
	return state.Description{Kind: limiterKind, Lives: state.Replica, HeldHere: n, LostIfKilled: true,
		Note: fmt.Sprintf("Each replica counts login attempts alone (%d per account and %d per client in %s each): "+
			"round robin multiplies the allowance by the replicas, and a restart forgets the counts.",
			l.limits.PerAccount, l.limits.PerClient, l.limits.Window)}
}

// current returns key's live window; l.mu held.
func (l *LocalLimiter) current(key string, now time.Time) window {
	w := l.counts[key]
	if !now.Before(w.until) {
		w = window{until: now.Add(l.limits.Window)}
	}
	return w
}

func (l *LocalLimiter) decrement(key string) {
	if w, ok := l.counts[key]; ok && w.n > 0 {
		w.n--
		l.counts[key] = w
	}
}

// sweep drops expired windows now and then, so the map does not grow
// forever; at most once a minute, or a flood of distinct emails (10000 live
// windows) would make every attempt scan them all under the lock. l.mu held.
func (l *LocalLimiter) sweep(now time.Time) {
	if len(l.counts) <= 10000 || now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, w := range l.counts {
		if !now.Before(w.until) {
			delete(l.counts, k)
		}
	}
}

// clientKey and accountKey hash what they count, so that no address or
// email sits in Redis (or a heap dump) in clear.
func clientKey(client string) string { return "ratelimit:client:" + hashed(client) }

// accountPrefix starts every account key.
const accountPrefix = "ratelimit:login:"

func accountKey(client, account string) string {
	return accountPrefix + hashed(account+"|"+client)
}

func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// SharedLimiter counts attempts in Redis, a fixed window per key that every
// replica increments. While Redis is away it counts in a LocalLimiter of
// its own, logs the change both ways, and Describe says so.
type SharedLimiter struct {
	c      *Client
	limits Limits
	local  *LocalLimiter
	log    *slog.Logger

	mu        sync.Mutex
	away      bool      // Redis did not answer the last exchange
	retryAt   time.Time // before this, do not wait for Redis again
	awayCause string
}

// retryShared is how long the limiter counts locally after Redis failed
// before it asks Redis again: a stalled Redis costs one timeout per this
// period, not one per login.
const retryShared = time.Second

// NewSharedLimiter returns a limiter whose counts live in Redis, falling
// back to a per-replica count, logged to log, while Redis is away.
func NewSharedLimiter(c *Client, l Limits, log *slog.Logger) *SharedLimiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l = l.withDefaults()
	return &SharedLimiter{c: c, limits: l, local: NewLocalLimiter(l), log: log}
}

// reserveScript checks the client's count, then the account's, and counts
// the attempt against both only when both allow it, atomically: Redis runs
// it as one step, so parallel attempts on every replica get distinct
// counts. A counter's window starts with its first attempt, in the same
// step, so no counter is ever left without an expiry. It returns 0
// (allowed), 1 (refused by the client's limit) or 2 (by the account's).
var reserveScript = redis.NewScript(-1, `
local c = tonumber(redis.call("GET", KEYS[1]) or "0")
if c >= tonumber(ARGV[2]) then return 1 end
if #KEYS > 1 then
  local a = tonumber(redis.call("GET", KEYS[2]) or "0")
  if a >= tonumber(ARGV[3]) then return 2 end
  if redis.call("INCR", KEYS[2]) == 1 then redis.call("PEXPIRE", KEYS[2], ARGV[1]) end
end
if redis.call("INCR", KEYS[1]) == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return 0`)

// releaseScript gives an attempt back to each key that still counts it;
// DECR keeps the key's expiry.
var releaseScript = redis.NewScript(-1, `
for _, k in ipairs(KEYS) do
  if tonumber(redis.call("GET", k) or "0") > 0 then redis.call("DECR", k) end
end
return 0`)

// succeedScript forgets the account's count (KEYS[2]) and gives the
// client's (KEYS[1]) its attempt back, in one step.
var succeedScript = redis.NewScript(2, `
redis.call("DEL", KEYS[2])
if tonumber(redis.call("GET", KEYS[1]) or "0") > 0 then redis.call("DECR", KEYS[1]) end
return 0`)

// Reserve counts one attempt by client on account ("" counts it against the
// client only) and reports whether it is within both allowances. While
// Redis is away it counts per replica instead; it returns no error.
func (l *SharedLimiter) Reserve(ctx context.Context, client, account string) (Verdict, error) {
	if l.useLocal() {
		return l.local.Reserve(ctx, client, account)
	}
	keys := []any{2, clientKey(client), accountKey(client, account)}
	if account == "" {
		keys = []any{1, clientKey(client)}
	}
	var n int
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		args := append(keys, l.limits.Window.Milliseconds(), l.limits.PerClient, l.limits.PerAccount)
		n, err = redis.Int(reserveScript.DoContext(ctx, conn, args...))
		return err
	})
	if l.answered(ctx, err) {
		return l.local.Reserve(ctx, client, account)
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("login limit: %w", err)
	}
	if n == 0 {
		return Verdict{Allowed: true}, nil
	}
	return Verdict{ByClient: n == 1, RetryAfter: l.limits.Window}, nil
}

// Release gives back an attempt that was reserved but never checked: it
// counts against nobody.
func (l *SharedLimiter) Release(ctx context.Context, client, account string) error {
	keys := []any{2, clientKey(client), accountKey(client, account)}
	if account == "" {
		keys = []any{1, clientKey(client)}
	}
	return l.exchange(ctx, func() error { return l.local.Release(ctx, client, account) },
		func(ctx context.Context, conn redis.Conn) error {
			_, err := releaseScript.DoContext(ctx, conn, keys...)
			return err
		})
}

// Succeeded forgets the account's failed attempts after a successful login
// and gives the client its attempt back: only failures count.
func (l *SharedLimiter) Succeeded(ctx context.Context, client, account string) error {
	return l.exchange(ctx, func() error { return l.local.Succeeded(ctx, client, account) },
		func(ctx context.Context, conn redis.Conn) error {
			_, err := succeedScript.DoContext(ctx, conn, clientKey(client), accountKey(client, account))
			return err
		})
}

// Check says whether client may still make an attempt across accounts,
// counting nothing.
func (l *SharedLimiter) Check(ctx context.Context, client string) (Verdict, error) {
	if l.useLocal() {
		return l.local.Check(ctx, client)
	}
	var n int
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		n, err = redis.Int(redis.DoContext(conn, ctx, "GET", clientKey(client)))
		if errors.Is(err, redis.ErrNil) {
			return nil
		}
		return err
	})
	if l.answered(ctx, err) {
		return l.local.Check(ctx, client)
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("login limit: %w", err)
	}
	return l.limits.verdict(n), nil
}

// exchange runs fn on Redis, or local while Redis is away.
func (l *SharedLimiter) exchange(ctx context.Context, local func() error, fn func(context.Context, redis.Conn) error) error {
	if l.useLocal() {
		return local()
	}
	err := l.c.Do(ctx, fn)
	if l.answered(ctx, err) {
		return local()
	}
	if err != nil {
		return fmt.Errorf("login limit: %w", err)
	}
	return nil
}

// useLocal reports whether Redis failed so recently that the attempt should
// not wait for it again.
func (l *SharedLimiter) useLocal() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.away && time.Now().Before(l.retryAt)
}

// answered records how Redis answered err and reports whether the limiter
// must count locally: Redis is unavailable. A request that ended by itself
// says nothing about Redis.
func (l *SharedLimiter) answered(ctx context.Context, err error) (fallBack bool) {
	if ctx.Err() != nil && err != nil {
		return false
	}
	unavailable := errors.Is(err, ErrUnavailable)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case unavailable && !l.away:
		l.away, l.awayCause = true, err.Error()
		l.log.Warn("login limit: Redis is unavailable; counting login attempts per replica until it answers",
			"err", err, "per_account", l.limits.PerAccount, "per_client", l.limits.PerClient)
	case !unavailable && l.away:
		l.away = false
		l.log.Info("login limit: Redis answers again; login attempts are counted across replicas")
	}
	if unavailable {
		l.retryAt = time.Now().Add(retryShared)
	}
	return unavailable
}

// Describe says where the counts live now: in Redis, shared by every
// replica, or, while Redis is away, in this replica alone.
func (l *SharedLimiter) Describe(ctx context.Context) state.Description {
	l.mu.Lock()
	away, cause := l.away, l.awayCause
	l.mu.Unlock()
	if away {
		d := l.local.Describe(ctx)
		d.Note = fmt.Sprintf("Redis is unavailable (%s), so this replica counts login attempts alone until it answers: "+
			"round robin multiplies the allowance (%d per account and %d per client in %s) by the replicas.",
			cause, l.limits.PerAccount, l.limits.PerClient, l.limits.Window)
		return d
	}
	return state.Description{Kind: limiterKind, Lives: state.Shared,
		Note: fmt.Sprintf("Login attempts are counted in Redis, shared by every replica: %d per account and %d per client in %s.",
			l.limits.PerAccount, l.limits.PerClient, l.limits.Window)}
}
