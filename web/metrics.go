package web

// Instrumentation that does not depend on how metrics are exported: the
// session store and lock wrappers, the order counter and the per-second
// counter behind /metrics/live. They report to *metrics, which
// metrics_prom.go implements over a per-Server Prometheus registry.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// instrument makes the session backend report to m: every store operation
// is timed and its errors counted, and lock waits are timed. It wraps the
// scs store and the locker once; a Sessions handed to a second Server
// reports to the newest one.
func (s *Sessions) instrument(m *metrics) {
	if st, ok := s.manager.Store.(*timedStore); ok {
		st.m.Store(m)
	} else {
		ts := &timedStore{inner: s.manager.Store}
		ts.m.Store(m)
		s.manager.Store = ts
	}
	switch l := s.locks.(type) {
	case noLocks:
		// -session-lock off: there is no wait to time.
	case *timedLocker:
		l.m.Store(m)
	default:
		tl := &timedLocker{inner: l}
		tl.m.Store(m)
		s.locks = tl
	}
	if s.pool != nil {
		m.watchPool(s.pool)
	}
}

// timedStore is an scs store that times every call to the store it wraps.
// It implements scs.CtxStore so that scs passes the request's context
// through, and the iteration interfaces so that nothing that lists sessions
// loses that ability by being wrapped.
type timedStore struct {
	inner scs.Store
	m     atomic.Pointer[metrics]
}

func (t *timedStore) observe(op string, start time.Time, err error) {
	t.m.Load().observeStore(op, time.Since(start), err)
}

func (t *timedStore) Find(token string) ([]byte, bool, error) {
	return t.FindCtx(context.Background(), token)
}

func (t *timedStore) Commit(token string, b []byte, expiry time.Time) error {
	return t.CommitCtx(context.Background(), token, b, expiry)
}

func (t *timedStore) Delete(token string) error {
	return t.DeleteCtx(context.Background(), token)
}

func (t *timedStore) FindCtx(ctx context.Context, token string) (b []byte, found bool, err error) {
	start := time.Now()
	if cs, ok := t.inner.(scs.CtxStore); ok {
		b, found, err = cs.FindCtx(ctx, token)
	} else {
		b, found, err = t.inner.Find(token)
	}
	t.observe("find", start, err)
	return b, found, err
}

func (t *timedStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) (err error) {
	start := time.Now()
	if cs, ok := t.inner.(scs.CtxStore); ok {
		err = cs.CommitCtx(ctx, token, b, expiry)
	} else {
		err = t.inner.Commit(token, b, expiry)
	}
	t.observe("commit", start, err)
	return err
}

func (t *timedStore) DeleteCtx(ctx context.Context, token string) (err error) {
	start := time.Now()
	if cs, ok := t.inner.(scs.CtxStore); ok {
		err = cs.DeleteCtx(ctx, token)
	} else {
		err = t.inner.Delete(token)
	}
	t.observe("delete", start, err)
	return err
}

// errNotIterable: the wrapped store cannot list its sessions.
var errNotIterable = errors.New("sessions: the store cannot list its sessions")

// All lists every session when the wrapped store can (memstore and
// redisstore can); it is not timed, being no part of serving a request.
func (t *timedStore) All() (map[string][]byte, error) {
	return t.AllCtx(context.Background())
}

func (t *timedStore) AllCtx(ctx context.Context) (map[string][]byte, error) {
	switch st := t.inner.(type) {
	case scs.IterableCtxStore:
		return st.AllCtx(ctx)
	case scs.IterableStore:
		return st.All()
	}
	return nil, errNotIterable
}

// timedLocker times the wait for a session's lock.
type timedLocker struct {
	inner locker
	m     atomic.Pointer[metrics]
}

func (t *timedLocker) Lock(ctx context.Context, key string) (func(), error) {
	start := time.Now()
	unlock, err := t.inner.Lock(ctx, key)
	t.m.Load().observeLockWait(time.Since(start), errors.Is(err, errLockTimeout))
	return unlock, err
}

// countingDB counts orders as the database reports them placed, so that an
// idempotent replay of a checkout is not counted twice.
type countingDB struct {
	Store
	m *metrics
}

func (db countingDB) PlaceOrder(ctx context.Context, o store.NewOrder) (store.Order, bool, error) {
	order, created, err := db.Store.PlaceOrder(ctx, o)
	if err == nil && created {
		db.m.orderPlaced()
	}
	return order, created, err
}

// liveBuckets is how many one-second buckets liveCounter keeps: enough for
// the 5-second window /metrics/live shows plus the second in progress.
const liveBuckets = 8

// liveCounter counts requests and 5xx errors per wall-clock second in a
// small ring, so /metrics/live can show a rate without a background
// goroutine or a second scrape.
type liveCounter struct {
	buckets [liveBuckets]struct {
		sec            atomic.Int64
		requests, errs atomic.Int64
	}
	total, totalErrs atomic.Int64
	// published is the second this replica last published its counters
	// to Redis.
	published atomic.Int64
}

func (l *liveCounter) add(now time.Time, isErr bool) {
	sec := now.Unix()
	b := &l.buckets[sec%liveBuckets]
	// The first request of a new second recycles the bucket. Two requests
	// racing across the boundary may lose a count: acceptable for a
	// projector, and it keeps the hot path to a few atomic adds.
	if old := b.sec.Load(); old != sec && b.sec.CompareAndSwap(old, sec) {
		b.requests.Store(0)
		b.errs.Store(0)
	}
	b.requests.Add(1)
	l.total.Add(1)
	if isErr {
		b.errs.Add(1)
		l.totalErrs.Add(1)
	}
}

// liveRate is what one replica reports to /metrics/live.
type liveRate struct {
	Replica       string  `json:"replica"`
	Store         string  `json:"store"`
	RequestsPerS  float64 `json:"rps"`
	ErrorsPerS    float64 `json:"eps"`
	Requests      int64   `json:"requests"`
	Errors        int64   `json:"errors"`
	UnixTimestamp int64   `json:"at"`
}

// liveWindow is the span /metrics/live averages over, in whole seconds.
const liveWindow = 5

// rate averages the last liveWindow complete seconds before now.
func (l *liveCounter) rate(now time.Time) (rps, eps float64, total, errs int64) {
	sec := now.Unix()
	for s := sec - liveWindow; s < sec; s++ {
		b := &l.buckets[s%liveBuckets]
		if b.sec.Load() == s {
			rps += float64(b.requests.Load())
			eps += float64(b.errs.Load())
		}
	}
	return rps / liveWindow, eps / liveWindow, l.total.Load(), l.totalErrs.Load()
}

// liveKeyPrefix names each replica's published live counters in Redis, so
// that /metrics/live on any replica shows them all; liveTTL lets a replica
// that stopped (or went quiet) drop off the page by itself.
const (
	liveKeyPrefix = "live:replica:"
	liveTTL       = 5 * time.Second
)

// observe records one finished request and, in redis mode, publishes this
// replica's live counters at most once a second. Publishing rides on
// traffic instead of a ticker so that the Server needs no goroutine to
// stop; a replica with no traffic has nothing to show anyway.
func (s *Server) observe(route string, status int, d time.Duration) {
	now := time.Now()
	s.metrics.observeRequest(route, status, d)
	if s.sessions.pool == nil {
		return
	}
	sec := now.Unix()
	if last := s.metrics.live.published.Load(); last != sec && s.metrics.live.published.CompareAndSwap(last, sec) {
		go s.publishLive(now)
	}
}

// publishLive writes this replica's rates to Redis with a short TTL.
func (s *Server) publishLive(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	b, err := json.Marshal(s.liveRate(now))
	if err != nil {
		return
	}
	conn, err := s.sessions.pool.GetContext(ctx)
	if err != nil {
		return // the live page shows this replica as gone: true enough
	}
	defer conn.Close()
	redis.DoContext(conn, ctx, "SET", liveKeyPrefix+s.cfg.Replica, b, "PX", liveTTL.Milliseconds())
}

func (s *Server) liveRate(now time.Time) liveRate {
	rps, eps, total, errs := s.metrics.live.rate(now)
	return liveRate{Replica: s.cfg.Replica, Store: s.sessions.Kind(), RequestsPerS: rps, ErrorsPerS: eps,
		Requests: total, Errors: errs, UnixTimestamp: now.Unix()}
}

// liveRates reads every replica's published counters (redis mode). This
// replica's own row is always fresh, whatever Redis holds for it.
func (s *Server) liveRates(ctx context.Context, now time.Time) ([]liveRate, error) {
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	conn, err := s.sessions.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var keys []string
	cursor := "0"
	for {
		reply, err := redis.Values(redis.DoContext(conn, ctx, "SCAN", cursor, "MATCH", liveKeyPrefix+"*", "COUNT", 1000))
		if err != nil {
			return nil, err
		}
		var batch []string
		if _, err := redis.Scan(reply, &cursor, &batch); err != nil {
			return nil, err
		}
		keys = append(keys, batch...)
		if cursor == "0" {
			break
		}
	}
	rates := []liveRate{s.liveRate(now)}
	if len(keys) == 0 {
		return rates, nil
	}
	vals, err := redis.ByteSlices(redis.DoContext(conn, ctx, "MGET", redis.Args{}.AddFlat(keys)...))
	if err != nil {
		return nil, err
	}
	for _, v := range vals {
		var lr liveRate
		if v == nil || json.Unmarshal(v, &lr) != nil || lr.Replica == s.cfg.Replica {
			continue
		}
		rates = append(rates, lr)
	}
	return rates, nil
}

// liveRefresh is how often /metrics/live reloads itself.
const liveRefresh = 2

// handleLive is /metrics/live: requests and errors per second per replica,
// server-rendered, reloading itself, for a workshop's projector.
func (s *Server) handleLive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		v := templates.LiveView{Replica: s.cfg.Replica, Store: s.sessions.Kind(), Refresh: strconv.Itoa(liveRefresh),
			Window: liveWindow, Generated: now.UTC().Format("15:04:05")}
		rates := []liveRate{s.liveRate(now)}
		if s.sessions.pool == nil {
			v.Note = "In memory mode the replicas share nothing, so each shows its own; reload to land on another."
		} else if all, err := s.liveRates(r.Context(), now); err != nil {
			v.Note = "Redis is not answering, so the other replicas' numbers cannot be read."
		} else {
			rates, v.AllReplicas = all, true
		}
		slices.SortFunc(rates, func(a, b liveRate) int { return strings.Compare(a.Replica, b.Replica) })
		var total, totalErr float64
		for _, lr := range rates {
			row := templates.LiveRow{Replica: lr.Replica, ColorClass: replicaColorClass(lr.Replica), This: lr.Replica == s.cfg.Replica,
				RPS: lr.RequestsPerS, RPSText: strconv.FormatFloat(lr.RequestsPerS, 'f', 1, 64), EPSText: strconv.FormatFloat(lr.ErrorsPerS, 'f', 1, 64),
				Requests: lr.Requests, Errors: lr.Errors}
			if !row.This {
				row.Age = (time.Duration(now.Unix()-lr.UnixTimestamp) * time.Second).String()
			}
			total += lr.RequestsPerS
			totalErr += lr.ErrorsPerS
			v.MaxRPS = max(v.MaxRPS, lr.RequestsPerS)
			v.Rows = append(v.Rows, row)
		}
		v.MaxRPS = max(v.MaxRPS, 1)
		v.TotalRPS = strconv.FormatFloat(total, 'f', 1, 64)
		v.TotalEPS = strconv.FormatFloat(totalErr, 'f', 1, 64)
		w.Header().Set("Cache-Control", "no-store")
		s.render(w, r, http.StatusOK, templates.LivePage(v))
	})
}
