// Package redisclient is the one place the shop talks to Redis from:
// dialing, the pool, and exchanges bounded by a timeout. main builds one
// Client and hands it to every Redis user (the redis session store, the
// login limiter, presence behind /cluster, live metrics), whatever the
// session store is: Redis as a shared service is not Redis as a session
// store.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// DefaultTimeout bounds every exchange unless Config says otherwise: no
// request waits longer for Redis, whatever state Redis is in.
const DefaultTimeout = time.Second

// Config says where Redis is and how long to wait for it.
type Config struct {
	// Addr is Redis's host:port.
	Addr string
	// Timeout bounds each exchange: borrowing a connection (dial or PING
	// included) and the commands sent on it. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Client is a pool of connections to one Redis. It is safe for concurrent
// use. New dials nothing: Redis need not be up when the replica starts.
type Client struct {
	cfg  Config
	pool *redis.Pool
}

// ErrUnavailable wraps every failure to reach Redis or to get an answer in
// time, so that callers can tell an outage from a bug.
var ErrUnavailable = errors.New("redis unavailable")

// New returns a client for cfg.Addr.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{cfg: cfg}
	c.pool = &redis.Pool{
		MaxIdle:     64,
		IdleTimeout: 4 * time.Minute,
		// Wait stays false: a borrower never queues for a free connection,
		// it dials one, so the pool cannot hold a request past the timeout.
		DialContext: c.dial,
		// A connection that sat idle may point at a Redis that restarted
		// since: test it. A busy connection is not tested, which saves a
		// round trip on the hot path; if it broke, its request fails once
		// and it is dropped. The PING shares the borrower's deadline, so
		// borrowing and the command that follows fit in one Timeout.
		TestOnBorrowContext: func(ctx context.Context, conn redis.Conn, lastUsed time.Time) error {
			if time.Since(lastUsed) < time.Second {
				return nil
			}
			_, err := redis.DoContext(conn, ctx, "PING")
			return err
		},
	}
	return c
}

// dial opens one connection, every dial, read and write with its own
// timeout.
func (c *Client) dial(ctx context.Context) (redis.Conn, error) {
	return redis.DialContext(ctx, "tcp", c.cfg.Addr,
		redis.DialConnectTimeout(c.cfg.Timeout),
		redis.DialReadTimeout(c.cfg.Timeout),
		redis.DialWriteTimeout(c.cfg.Timeout))
}

// Addr is where the client connects, for logs and pages.
func (c *Client) Addr() string { return c.cfg.Addr }

// Timeout is the bound on each exchange.
func (c *Client) Timeout() time.Duration { return c.cfg.Timeout }

// Do runs fn on a pooled connection; borrowing it and the whole exchange
// share one Timeout (and end earlier with ctx). fn should use the context
// it is given (redis.DoContext, redis.ReceiveContext). A failure is
// wrapped in ErrUnavailable unless it is a reply from Redis itself
// (redis.Error) or redis.ErrNil, which fn's caller handles.
func (c *Client) Do(ctx context.Context, fn func(ctx context.Context, conn redis.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	err = fn(ctx, conn)
	var reply redis.Error
	if err == nil || errors.Is(err, redis.ErrNil) || errors.As(err, &reply) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Ping reports whether Redis answers within the timeout.
func (c *Client) Ping(ctx context.Context) error {
	err := c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "PING")
		return err
	})
	if err != nil {
		return fmt.Errorf("redis %s: ping: %w", c.cfg.Addr, err)
	}
	return nil
}

// Dial opens a connection of the caller's own, outside the pool, for one
// that holds it for long (the near-cache's invalidation subscription). It
// reaches Redis the way the pool does, with the same timeouts; the caller
// closes it.
func (c *Client) Dial(ctx context.Context) (redis.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, nil
}

// ActiveConns is how many connections the pool holds open, in use or idle.
func (c *Client) ActiveConns() int { return c.pool.Stats().ActiveCount }

// Close closes the pool's idle connections; connections in use close when
// they are returned.
func (c *Client) Close() error { return c.pool.Close() }
