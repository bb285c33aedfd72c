package web

// The small interfaces web declares for what the replicas may share: login
// limits, presence, the live board and the Redis tier. main hands each one
// over; the Redis-backed ones and their per-replica twins live in
// internal/redisclient.

import (
	"context"
	"time"

	"github.com/statelab/shop/internal/redisclient"
)

// LoginLimiter counts login and registration attempts per client, per
// account and across accounts (redisclient.SharedLimiter in Redis, shared by
// every replica, or redisclient.LocalLimiter per replica). An attempt is
// reserved before its password is checked; one that is never checked is
// released, and a success forgets the account's failures.
type LoginLimiter interface {
	// Reserve counts one attempt by client on account ("" for none) and
	// says whether it may be checked; a refused attempt is counted nowhere.
	Reserve(ctx context.Context, client, account string) (redisclient.Verdict, error)
	// Release gives back an attempt that was reserved but never checked.
	Release(ctx context.Context, client, account string) error
	// Succeeded forgets the account's failed attempts after a login.
	Succeeded(ctx context.Context, client, account string) error
	// Check says whether client may still make an attempt across
	// accounts, counting nothing.
	Check(ctx context.Context, client string) (redisclient.Verdict, error)
	// StateHolder: the limiter says where its counts live, for /state.
	StateHolder
}

// Presence is where replicas announce themselves for /cluster
// (redisclient.Presence in Redis, or redisclient.LocalPresence: this replica
// alone).
type Presence interface {
	// Shared reports whether other replicas read these announcements.
	Shared() bool
	Announce(ctx context.Context, a redisclient.Announcement) error
	Withdraw(ctx context.Context, name string) error
	Members(ctx context.Context) ([]redisclient.Member, error)
}

// LiveBoard is where replicas publish their request rates for
// /metrics/live (redisclient.Board in Redis, or redisclient.LocalBoard).
type LiveBoard interface {
	// Shared reports whether other replicas read this board.
	Shared() bool
	Publish(ctx context.Context, r redisclient.Rate) error
	Rates(ctx context.Context, now time.Time) ([]redisclient.Rate, error)
}

// SentinelView is the Redis tier behind Sentinel as /cluster and the ribbon
// show it (a *redisclient.Client that finds its primary through Sentinel).
type SentinelView interface {
	// Addr is the primary as a sentinel last named it.
	Addr() string
	Master() string
	Sentinels() []string
	LastFailover() redisclient.Failover
	Topology(ctx context.Context) (t redisclient.Topology, ok bool, err error)
}
