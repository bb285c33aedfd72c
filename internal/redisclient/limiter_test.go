package redisclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/state"
)

// limiter is what both limiters do.
type limiter interface {
	Reserve(ctx context.Context, client, account string) (redisclient.Verdict, error)
	Release(ctx context.Context, client, account string) error
	Succeeded(ctx context.Context, client, account string) error
	Check(ctx context.Context, client string) (redisclient.Verdict, error)
	Describe(ctx context.Context) state.Description
}

// limiters returns a fresh shared limiter over a Redis of the test's own and
// a local one.
func limiters(t *testing.T, l redisclient.Limits) (map[string]limiter, *testenv.Redis) {
	rs := testenv.StartRedis(t)
	rc := redisclient.New(redisclient.Config{Addr: rs.Addr()})
	t.Cleanup(func() { rc.Close() })
	return map[string]limiter{
		"shared": redisclient.NewSharedLimiter(rc, l, nil),
		"local":  redisclient.NewLocalLimiter(l),
	}, rs
}

// TestLimiterPerClientAcrossAccounts: one client gets 20 failed attempts
// across 20 accounts, the 21st is refused by the client's limit, another
// client is not; an account's own limit is 5; an attempt given back or a
// success counts against no one.
func TestLimiterPerClientAcrossAccounts(t *testing.T) {
	ls, _ := limiters(t, redisclient.Limits{})
	for name, l := range ls {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			for i := range redisclient.DefaultPerClient {
				if v, err := l.Reserve(ctx, "10.0.0.1", fmt.Sprintf("user%d@example.com", i)); err != nil || !v.Allowed {
					t.Fatalf("attempt %d: %+v, %v; want allowed", i+1, v, err)
				}
			}
			v, err := l.Reserve(ctx, "10.0.0.1", "one-more@example.com")
			if err != nil || v.Allowed || !v.ByClient || v.RetryAfter != redisclient.DefaultWindow {
				t.Errorf("attempt 21 across accounts: %+v, %v; want refused by the client's limit for the window", v, err)
			}
			if v, _ := l.Check(ctx, "10.0.0.1"); v.Allowed {
				t.Error("Check allows a client past its limit")
			}
			if v, _ := l.Check(ctx, "10.0.0.2"); !v.Allowed {
				t.Error("Check refuses a fresh client")
			}

			// Per account: 5, then refused, and not by the client's limit.
			for i := range redisclient.DefaultPerAccount {
				if v, _ := l.Reserve(ctx, "10.0.0.2", "victim@example.com"); !v.Allowed {
					t.Fatalf("account attempt %d refused", i+1)
				}
			}
			if v, _ := l.Reserve(ctx, "10.0.0.2", "victim@example.com"); v.Allowed || v.ByClient {
				t.Errorf("account attempt 6: %+v; want refused by the account's limit", v)
			}
			// Given back (never checked): the account has room again.
			if err := l.Release(ctx, "10.0.0.2", "victim@example.com"); err != nil {
				t.Fatal(err)
			}
			if v, _ := l.Reserve(ctx, "10.0.0.2", "victim@example.com"); !v.Allowed {
				t.Error("an attempt given back still counts against the account")
			}
			// A success forgets the account's count and gives the client its
			// attempt back: the client keeps its 4 failed ones.
			if err := l.Succeeded(ctx, "10.0.0.2", "victim@example.com"); err != nil {
				t.Fatal(err)
			}
			for i := range redisclient.DefaultPerAccount {
				if v, _ := l.Reserve(ctx, "10.0.0.2", "victim@example.com"); !v.Allowed {
					t.Fatalf("after a success, attempt %d refused", i+1)
				}
			}
			for i := range redisclient.DefaultPerClient - 2*redisclient.DefaultPerAccount + 1 {
				if v, _ := l.Reserve(ctx, "10.0.0.2", fmt.Sprintf("other%d@example.com", i)); !v.Allowed {
					t.Fatalf("client attempt %d refused: a success or a given-back attempt was counted", i+1)
				}
			}
			if v, _ := l.Reserve(ctx, "10.0.0.2", "last@example.com"); v.Allowed {
				t.Error("the client's 21st failed attempt is allowed")
			}
		})
	}
}

// TestLimiterBoundsKeys: 600 attempts from one client on 600 accounts leave
// at most the client's allowance of keys in Redis, not 600 (issue 22,
// item 5).
func TestLimiterBoundsKeys(t *testing.T) {
	ls, rs := limiters(t, redisclient.Limits{})
	l := ls["shared"]
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 100 {
				if _, err := l.Reserve(t.Context(), "10.0.0.9", fmt.Sprintf("flood%d-%d@example.com", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	conn, err := redis.Dial("tcp", rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", "ratelimit:*"))
	if err != nil {
		t.Fatal(err)
	}
	if want := redisclient.DefaultPerClient + 1; len(keys) > want {
		t.Errorf("600 attempts from one client left %d keys in Redis; want at most %d", len(keys), want)
	}
	for _, k := range keys {
		if ttl, _ := redis.Int(conn.Do("PTTL", k)); ttl <= 0 {
			t.Errorf("key %s has no expiry (PTTL %d)", k, ttl)
		}
	}
}

// TestSharedLimiterFallsBack: with Redis away the shared limiter counts per
// replica instead of failing, says so in the log and in Describe, and
// shares again once Redis answers (issue 22, item 6).
func TestSharedLimiterFallsBack(t *testing.T) {
	rs := testenv.StartRedis(t)
	rc := redisclient.New(redisclient.Config{Addr: rs.Addr()})
	t.Cleanup(func() { rc.Close() })
	var logs testenv.Buffer
	l := redisclient.NewSharedLimiter(rc, redisclient.Limits{}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := t.Context()
	if d := l.Describe(t.Context()); d.Kind != "rate-limits" || d.Lives != state.Shared {
		t.Errorf("Describe with Redis up: %+v; want rate-limits living shared", d)
	}
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range redisclient.DefaultPerAccount {
		if v, err := l.Reserve(ctx, "10.0.0.1", "ada@example.com"); err != nil || !v.Allowed {
			t.Fatalf("attempt %d with Redis away: %+v, %v; want counted per replica", i+1, v, err)
		}
	}
	if v, err := l.Reserve(ctx, "10.0.0.1", "ada@example.com"); err != nil || v.Allowed {
		t.Errorf("attempt 6 with Redis away: %+v, %v; the per-replica count must still limit", v, err)
	}
	if err := l.Succeeded(ctx, "10.0.0.1", "ada@example.com"); err != nil {
		t.Errorf("a success with Redis away: %v", err)
	}
	d := l.Describe(t.Context())
	if d.Lives != state.Replica || !d.LostIfKilled || !strings.Contains(d.Note, "Redis is unavailable") {
		t.Errorf("Describe with Redis away: %+v; want it to say this replica counts alone because Redis is unavailable", d)
	}
	if got := logs.String(); strings.Count(got, "counting login attempts per replica") != 1 {
		t.Errorf("the log should say once that the limit went per replica:\n%s", got)
	}

	if err := rs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Describe(t.Context()).Lives != state.Shared {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after Redis came back the limiter still counts per replica: %+v", l.Describe(t.Context()))
		}
		l.Check(ctx, "10.0.0.1")
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "Redis answers again") {
		t.Errorf("the log does not say the limit is shared again:\n%s", logs.String())
	}
}
