package redisclient

// Finding the Redis primary through Sentinel and following it across
// failovers, for the pool: dial asks a sentinel for the primary, the borrow
// test drops a connection that is no longer on it, and Watch hears the
// sentinels announce a failover. Sentinel's side is FZambia/sentinel, a kept
// client for redigo; this file adds what a pool of connections needs on top.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/FZambia/sentinel"
	"github.com/gomodule/redigo/redis"
)

// ErrNoPrimary is returned while no sentinel names a primary that answers
// as one: during a failover, or with every sentinel unreachable. It is an
// ErrUnavailable like any other outage.
var ErrNoPrimary = fmt.Errorf("%w: no primary known", ErrUnavailable)

// errMoved marks a pooled connection whose server is no longer the primary.
var errMoved = errors.New("redis: connection is not on the primary")

// Failover is one failover this process heard of.
type Failover struct {
	From, To string // addresses of the old and new primary
	At       time.Time
}

// sentinels follows the primary of one master name. Its methods are safe
// for concurrent use.
type sentinels struct {
	master  string
	timeout time.Duration // per exchange with one sentinel
	addrs   []string      // as configured
	client  *sentinel.Sentinel

	mu       sync.Mutex
	primary  string // the address a sentinel named last; "" unknown
	failover Failover
}

// newSentinels asks the sentinels at addrs about master, each exchange with
// one sentinel bounded by timeout.
func newSentinels(addrs []string, master string, timeout time.Duration) *sentinels {
	s := &sentinels{master: master, timeout: timeout, addrs: slices.Clone(addrs)}
	s.client = &sentinel.Sentinel{
		Addrs:      slices.Clone(addrs), // the client reorders its copy
		MasterName: master,
		Dial: func(addr string) (redis.Conn, error) {
			return redis.Dial("tcp", addr,
				redis.DialConnectTimeout(timeout), redis.DialReadTimeout(timeout), redis.DialWriteTimeout(timeout))
		},
	}
	return s
}

// primary is the primary's address as a sentinel last named it, "" when no
// sentinel has answered yet.
func (s *sentinels) primaryAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary
}

// lastFailover is the last failover this process heard of; zero if none.
func (s *sentinels) lastFailover() Failover {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failover
}

// saw records addr as the primary a sentinel named.
func (s *sentinels) saw(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.primary = addr
}

// switched records a failover the sentinels announced.
func (s *sentinels) switched(from, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.primary = to
	s.failover = Failover{From: from, To: to, At: time.Now()}
}

// dial asks a sentinel for the primary, dials it and checks that it is one
// (ROLE): a sentinel may still name a primary that died or that it demoted a
// moment ago. ctx bounds the whole; opts are redigo's, for the connection to
// the primary.
func (s *sentinels) dial(ctx context.Context, opts ...redis.DialOption) (redis.Conn, error) {
	addr, err := s.askPrimary(ctx)
	if err != nil {
		return nil, err
	}
	c, err := redis.DialContext(ctx, "tcp", addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoPrimary, addr, err)
	}
	role, err := roleOf(ctx, c)
	if err != nil || role != "master" {
		c.Close()
		return nil, fmt.Errorf("%w: %s answers ROLE %q (%v)", ErrNoPrimary, addr, role, err)
	}
	return &primaryConn{Conn: c, addr: addr}, nil
}

// askPrimary asks the sentinels, in turn, for the primary's address. The
// client has no context: its exchanges carry timeouts, and ctx cuts the wait
// short.
func (s *sentinels) askPrimary(ctx context.Context) (string, error) {
	type answer struct {
		addr string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		addr, err := s.client.MasterAddr()
		done <- answer{addr, err}
	}()
	select {
	case a := <-done:
		if a.err != nil {
			return "", fmt.Errorf("%w: %w", ErrNoPrimary, a.err)
		}
		s.saw(a.addr)
		return a.addr, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%w: asking the sentinels: %w", ErrNoPrimary, context.Cause(ctx))
	}
}

// testOnBorrow is for redis.Pool.TestOnBorrowContext: it drops a connection
// to a server that is no longer the primary as far as this process knows
// (no round trip), and after idleness asks the server itself (ROLE), which
// also finds a connection that broke meanwhile.
func (s *sentinels) testOnBorrow(ctx context.Context, c redis.Conn, lastUsed time.Time) error {
	pc, ok := c.(*primaryConn)
	if !ok {
		return nil
	}
	if p := s.primaryAddr(); p != "" && p != pc.addr {
		return fmt.Errorf("%w: %s, primary is %s", errMoved, pc.addr, p)
	}
	if time.Since(lastUsed) < time.Second {
		return nil
	}
	role, err := roleOf(ctx, pc.Conn)
	if err != nil {
		return err
	}
	if role != "master" {
		return fmt.Errorf("%w: %s is a %s", errMoved, pc.addr, role)
	}
	return nil
}

func roleOf(ctx context.Context, c redis.Conn) (string, error) {
	v, err := redis.Values(redis.DoContext(c, ctx, "ROLE"))
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("redis: empty ROLE reply")
	}
	return redis.String(v[0], nil)
}

// watch listens to the sentinels' announcements of a new primary
// (+switch-master) until ctx ends, moving to the next sentinel when one
// stops answering. A connection borrowed after the announcement is checked
// against the new primary, so none goes on writing to a demoted one, even
// one that came back still believing it is the primary.
func (s *sentinels) watch(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		// When a sentinel stops answering, the next one is asked: every
		// sentinel announces a failover, so any one will do.
		s.watchOne(ctx, s.addrs[i%len(s.addrs)])
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.timeout):
		}
	}
}

// watchOne subscribes to one sentinel and returns when it stops answering
// or ctx ends.
func (s *sentinels) watchOne(ctx context.Context, addr string) {
	c, err := redis.DialContext(ctx, "tcp", addr, redis.DialConnectTimeout(s.timeout), redis.DialWriteTimeout(s.timeout))
	if err != nil {
		return
	}
	psc := redis.PubSubConn{Conn: c}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	if err := psc.Subscribe("+switch-master"); err != nil {
		return
	}
	// A failover announced while no sentinel was heard is found by asking
	// (askPrimary records the answer).
	s.askPrimary(ctx)
	// A sentinel that stops answering must be noticed: PING it on the
	// subscription and give up when nothing comes back in time.
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.timeout)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if psc.Ping("") != nil {
					return
				}
			}
		}
	}()
	for {
		switch m := psc.ReceiveWithTimeout(3 * s.timeout).(type) {
		case error:
			return
		case redis.Message:
			// "<master> <old ip> <old port> <new ip> <new port>"
			f := strings.Fields(string(m.Data))
			if len(f) == 5 && f[0] == s.master {
				s.switched(f[1]+":"+f[2], f[3]+":"+f[4])
			}
		}
	}
}

// Topology is the Redis tier as one sentinel sees it.
type Topology struct {
	Master    string   // the monitored name
	Primary   string   // address
	Replicas  []Node   // as the sentinel knows them
	Sentinels []string // every sentinel known: this process's list and the ones they report
	Failover  Failover // the last failover this process heard of
}

// Node is one replica.
type Node struct {
	Addr string
	Up   bool // not flagged down or disconnected
}

// topology asks the sentinels for the tier: the primary, its replicas and
// the sentinels they know, bounded by ctx.
func (s *sentinels) topology(ctx context.Context) (Topology, error) {
	type answer struct {
		t   Topology
		err error
	}
	done := make(chan answer, 1)
	go func() {
		t := Topology{Master: s.master, Sentinels: slices.Clone(s.addrs)}
		var err error
		if t.Primary, err = s.client.MasterAddr(); err != nil {
			done <- answer{err: err}
			return
		}
		replicas, err := s.client.Slaves()
		if err != nil {
			done <- answer{err: err}
			return
		}
		for _, r := range replicas {
			t.Replicas = append(t.Replicas, Node{Addr: r.Addr(), Up: r.Available()})
		}
		others, err := s.otherSentinels(ctx)
		if err != nil {
			done <- answer{err: err}
			return
		}
		for _, o := range others {
			if !slices.Contains(t.Sentinels, o) {
				t.Sentinels = append(t.Sentinels, o)
			}
		}
		done <- answer{t: t}
	}()
	select {
	case a := <-done:
		a.t.Failover = s.lastFailover()
		if a.err != nil {
			return a.t, fmt.Errorf("redis: sentinel topology: %w", a.err)
		}
		return a.t, nil
	case <-ctx.Done():
		return Topology{}, fmt.Errorf("redis: sentinel topology: %w", context.Cause(ctx))
	}
}

// otherSentinels asks the sentinels, in turn, which other sentinels they
// know. FZambia/sentinel v1.1.1's SentinelAddrs cannot answer this (it
// passes a []string to redis.Strings), hence the query of our own.
func (s *sentinels) otherSentinels(ctx context.Context) ([]string, error) {
	var errs []error
	for _, addr := range s.addrs {
		c, err := redis.DialContext(ctx, "tcp", addr,
			redis.DialConnectTimeout(s.timeout), redis.DialReadTimeout(s.timeout), redis.DialWriteTimeout(s.timeout))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rows, err := redis.Values(redis.DoContext(c, ctx, "SENTINEL", "SENTINELS", s.master))
		c.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var addrs []string
		for _, row := range rows {
			m, err := redis.StringMap(row, nil)
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, m["ip"]+":"+m["port"])
		}
		return addrs, nil
	}
	return nil, errors.Join(errs...)
}

// close closes the connections to the sentinels; watch ends with its ctx.
func (s *sentinels) close() error { return s.client.Close() }

// primaryConn is a connection to the server that was the primary when it
// was dialed. A READONLY reply means that server was demoted since: the
// connection then reports an error, so the pool closes it instead of lending
// it again.
type primaryConn struct {
	redis.Conn
	addr    string
	demoted bool // set by the one goroutine that holds the connection
}

var (
	_ redis.ConnWithContext = (*primaryConn)(nil)
	_ redis.ConnWithTimeout = (*primaryConn)(nil)
)

// The redis.Conn methods below pass every call through, noting READONLY
// replies; Err reports a demoted server as a broken connection.

func (c *primaryConn) Err() error {
	if c.demoted {
		return fmt.Errorf("%w: %s answered READONLY", errMoved, c.addr)
	}
	return c.Conn.Err()
}

// check notes a READONLY error, returned as the error or, for a pipeline
// read with Do(""), as one of the replies.
func (c *primaryConn) check(reply any, err error) (any, error) {
	if err != nil && isReadOnly(err) {
		c.demoted = true
	}
	if replies, ok := reply.([]any); ok {
		for _, r := range replies {
			if e, ok := r.(redis.Error); ok && isReadOnly(e) {
				c.demoted = true
			}
		}
	}
	return reply, err
}

func isReadOnly(err error) bool { return strings.HasPrefix(err.Error(), "READONLY") }

func (c *primaryConn) Do(cmd string, args ...any) (any, error) {
	return c.check(c.Conn.Do(cmd, args...))
}

func (c *primaryConn) DoContext(ctx context.Context, cmd string, args ...any) (any, error) {
	return c.check(redis.DoContext(c.Conn, ctx, cmd, args...))
}

func (c *primaryConn) DoWithTimeout(timeout time.Duration, cmd string, args ...any) (any, error) {
	return c.check(redis.DoWithTimeout(c.Conn, timeout, cmd, args...))
}

func (c *primaryConn) Receive() (any, error) { return c.check(c.Conn.Receive()) }

func (c *primaryConn) ReceiveContext(ctx context.Context) (any, error) {
	return c.check(redis.ReceiveContext(c.Conn, ctx))
}

func (c *primaryConn) ReceiveWithTimeout(timeout time.Duration) (any, error) {
	return c.check(redis.ReceiveWithTimeout(c.Conn, timeout))
}
