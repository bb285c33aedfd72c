// Package redisclient is the one place the shop talks to Redis from:
// dialing, the pool, and exchanges bounded by a timeout, and the typed
// services built on them (the login limiter, presence behind /cluster, the
// live board), each with its per-replica twin beside it. main builds one
// Client and hands it to the redis session store and to the services,
// whatever the session store is: Redis as a shared service is not Redis as
// a session store.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// DefaultMaster is the Sentinel master name unless Config says otherwise.
const DefaultMaster = "shop"

// DefaultTimeout bounds every exchange unless Config says otherwise: no
// request waits longer for Redis, whatever state Redis is in.
const DefaultTimeout = time.Second

// Config says where Redis is and how long to wait for it.
type Config struct {
	// Addr is Redis's host:port, unless Sentinels are given.
	Addr string
	// Username and Password are sent with AUTH on every connection the
	// client opens, whoever asked for it; "" sends none (Username is for
	// Redis ACL users, and needs a Password).
	Username, Password string
	// Sentinels are the host:port of sentinels that know the primary of
	// Master: the client asks them when it dials and follows failovers
	// (sentinel.go). Addr is then unused.
	Sentinels []string
	// Master is the name the sentinels monitor; "" is DefaultMaster.
	Master string
	// Timeout bounds each exchange: borrowing a connection (dial or PING
	// included) and the commands sent on it. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Client is a pool of connections to one Redis. It is safe for concurrent
// use. New dials nothing: Redis need not be up when the replica starts.
type Client struct {
	cfg       Config
	pool      *redis.Pool
	sentinels *sentinels // nil without Config.Sentinels
}

// ErrUnavailable wraps every failure to reach Redis or to get an answer in
// time, so that callers can tell an outage from a bug.
var ErrUnavailable = errors.New("redis unavailable")

// Redis answers, but refuses: these wrap ErrUnavailable too (the request
// is an outage to answer 503) and say why, for pages, logs and /readyz.
var (
	// ErrOutOfMemory: Redis reached maxmemory with the noeviction policy
	// and refuses every write (OOM); reads still work.
	ErrOutOfMemory = errors.New("redis is out of memory (maxmemory reached, noeviction) and refuses writes")
	// ErrAuth: Redis refused this client's password, or wants one it was
	// not given (NOAUTH, WRONGPASS).
	ErrAuth = errors.New("redis refused authentication (NOAUTH or WRONGPASS): check -redis-password")
)

// New returns a client for cfg.Addr.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Master == "" {
		cfg.Master = DefaultMaster
	}
	c := &Client{cfg: cfg}
	if len(cfg.Sentinels) > 0 {
		// A quarter of the timeout per sentinel: asking three of them and
		// dialing the primary still fits in one.
		c.sentinels = newSentinels(cfg.Sentinels, cfg.Master, cfg.Timeout/4)
	}
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
	if c.sentinels != nil {
		// The same, plus: no connection to a server that is no longer the
		// primary, idle or not (ROLE instead of PING after idleness).
		c.pool.TestOnBorrowContext = c.sentinels.testOnBorrow
	}
	return c
}

// dial opens one connection, every dial, read and write with its own
// timeout.
func (c *Client) dial(ctx context.Context) (redis.Conn, error) {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(c.cfg.Timeout),
		redis.DialReadTimeout(c.cfg.Timeout),
		redis.DialWriteTimeout(c.cfg.Timeout),
	}
	// Every connection logs in, to whichever Redis it dials: one found
	// through Sentinel as much as a fixed address.
	opts = append(opts, c.authOptions()...)
	if c.sentinels != nil {
		return c.sentinels.dial(ctx, opts...)
	}
	return redis.DialContext(ctx, "tcp", c.cfg.Addr, opts...)
}

// authOptions are the dial options that log a connection in: every
// connection the client opens takes them, to whichever Redis it dials.
func (c *Client) authOptions() []redis.DialOption {
	if c.cfg.Password == "" {
		return nil
	}
	return []redis.DialOption{redis.DialUsername(c.cfg.Username), redis.DialPassword(c.cfg.Password)}
}

// ParseAddr reads -redis-addr: host:port, or the URL form
// redis://[[user]:password@]host:port (port 6379 when left out).
func ParseAddr(s string) (Config, error) {
	if !strings.Contains(s, "://") {
		return Config{Addr: s}, checkHostPort(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's error repeats the URL, password included: say less.
		return Config{}, errors.New("not a URL")
	}
	if u.Scheme != "redis" {
		return Config{}, fmt.Errorf("scheme %q: want redis://", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, errors.New("want no path, database or query after host:port")
	}
	cfg := Config{Addr: u.Host}
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
		if cfg.Password == "" {
			// redis://secret@host reads as a user name: Redis's own tools
			// take it as the password.
			cfg.Username, cfg.Password = "", cfg.Username
		}
	}
	return cfg, checkHostPort(cfg.Addr)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || port == "" {
		return errors.New("want host:port")
	}
	_, err = net.LookupPort("tcp", port)
	return err
}

// Addr is where the client connects, for logs and pages: with Sentinel the
// primary as a sentinel last named it ("" before any answered).
func (c *Client) Addr() string {
	if c.sentinels != nil {
		return c.sentinels.primaryAddr()
	}
	return c.cfg.Addr
}

// Sentinel reports whether the client finds the primary through Sentinel.
func (c *Client) Sentinel() bool { return c.sentinels != nil }

// Master is the name the sentinels monitor the primary under.
func (c *Client) Master() string { return c.cfg.Master }

// Sentinels are the sentinels the client was given; nil without Sentinel.
func (c *Client) Sentinels() []string { return slices.Clone(c.cfg.Sentinels) }

// LastFailover is the last failover the client heard the sentinels
// announce; zero without Sentinel or before any.
func (c *Client) LastFailover() Failover {
	if c.sentinels == nil {
		return Failover{}
	}
	return c.sentinels.lastFailover()
}

// Watch follows the primary until ctx ends: it listens to the sentinels'
// failover announcements, so that no borrowed connection stays on a
// demoted primary. Without Sentinel it returns at once. main runs it for
// the life of the replica.
func (c *Client) Watch(ctx context.Context) {
	if c.sentinels != nil {
		c.sentinels.watch(ctx)
	}
}

// Topology asks the sentinels for the tier: the primary, its replicas, the
// sentinels and the last failover this client heard of. ok is false
// without Sentinel.
func (c *Client) Topology(ctx context.Context) (t Topology, ok bool, err error) {
	if c.sentinels == nil {
		return Topology{}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	t, err = c.sentinels.topology(ctx)
	return t, true, err
}

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
		return fmt.Errorf("%w: %w", ErrUnavailable, named(err))
	}
	defer conn.Close()
	err = fn(ctx, conn)
	if why := refusal(err); why != nil {
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, why, err)
	}
	var reply redis.Error
	if err == nil || errors.Is(err, redis.ErrNil) || (errors.As(err, &reply) && !outageReply(reply)) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// refusal names a reply by which Redis refuses every write or every
// command, whatever the command: nil for any other error.
func refusal(err error) error {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return nil
	}
	switch msg := string(reply); {
	case strings.HasPrefix(msg, "OOM "):
		return ErrOutOfMemory
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"),
		strings.HasPrefix(msg, "ERR AUTH"), strings.HasPrefix(msg, "ERR invalid password"):
		return ErrAuth
	}
	return nil
}

// named adds the refusal's name to err when it has one.
func named(err error) error {
	if why := refusal(err); why != nil {
		return fmt.Errorf("%w: %w", why, err)
	}
	return err
}

// outageReply reports whether Redis refused a command because of its own
// state rather than the command's: a demoted primary (READONLY), a server
// still loading its data (LOADING), a replica cut off from its primary
// (MASTERDOWN). Those are outages, to be answered 503, not bugs.
func outageReply(err redis.Error) bool {
	for _, prefix := range []string{"READONLY", "LOADING", "MASTERDOWN"} {
		if strings.HasPrefix(string(err), prefix) {
			return true
		}
	}
	return false
}

// Ping reports whether Redis answers within the timeout.
func (c *Client) Ping(ctx context.Context) error {
	err := c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "PING")
		return err
	})
	if err != nil {
		return fmt.Errorf("redis %s: ping: %w", c.describe(), err)
	}
	return nil
}

// probeKey is the key Writable's probe names; the probe never creates it.
const probeKey = "statelab:probe:writable"

// Writable reports whether Redis answers and accepts writes: a SET ... XX
// on a key that does not exist writes nothing, but Redis refuses it like
// any write when it is out of memory (OOM) or a read-only replica, and
// like any command when it wants a password (NOAUTH). Readiness asks
// this: a store that refuses writes cannot serve.
func (c *Client) Writable(ctx context.Context) error {
	err := c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "SET", probeKey, "", "XX")
		if errors.Is(err, redis.ErrNil) {
			return nil // XX found no key: written nothing, refused nothing
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("redis %s: write probe: %w", c.describe(), err)
	}
	return nil
}

// describe names where the client connects, for errors and logs.
func (c *Client) describe() string {
	if c.sentinels != nil {
		return fmt.Sprintf("primary of %s via sentinels %s", c.cfg.Master, strings.Join(c.cfg.Sentinels, ","))
	}
	return c.cfg.Addr
}

// ActiveConns is how many connections the pool holds open, in use or idle.
func (c *Client) ActiveConns() int { return c.pool.Stats().ActiveCount }

// Close closes the pool's idle connections; connections in use close when
// they are returned.
func (c *Client) Close() error {
	err := c.pool.Close()
	if c.sentinels != nil {
		err = errors.Join(err, c.sentinels.close())
	}
	return err
}
