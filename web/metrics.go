package web

// Metrics: GET /metrics in Prometheus text format, one registry per Server
// (no globals: two replicas in one test process must not share counters),
// every series labelled with the replica. The hot path pays one counter and
// one histogram observation per request; everything else is computed when
// /metrics is scraped.
//
// Also here: the session store's Observer (the store times its own work and
// reports it), the order counter, and the per-second counter behind
// /metrics/live.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// latencyBuckets span what this shop does: a cached page in ~100 µs, a
// Redis round trip in ~50-200 µs, the store timeout at 1 s and the lock wait
// at 2 s. Prometheus's default buckets start at 5 ms, where nothing here is.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// Metrics is one replica's instruments. It is the session store's
// Observer: main builds it and hands it to both the store and the Server.
type Metrics struct {
	reg *prometheus.Registry
	// labelled registers in reg with replica=<name> on every series.
	labelled prometheus.Registerer

	requests     *prometheus.CounterVec   // route, status
	latency      *prometheus.HistogramVec // route
	storeLatency *prometheus.HistogramVec // store, op
	storeErrors  *prometheus.CounterVec   // store, op
	lockWait     prometheus.Histogram
	lockTimeouts prometheus.Counter
	cartChanges  *prometheus.CounterVec // op
	orders       prometheus.Counter
	// nearCache counts the near-cache's events (session.CacheHit, ...),
	// each series made once so that counting a hit looks nothing up.
	nearCache map[string]prometheus.Counter

	// statuses holds "100".."599" so that labelling a request allocates
	// nothing.
	statuses [600]string

	// live feeds /metrics/live: requests and errors per second, kept apart
	// from the registry because reading a rate back from Prometheus
	// counters would need a second sample anyway.
	live liveCounter
}

// NewMetrics registers the shop's series, Go runtime and process metrics
// (RSS among them) in a fresh registry, all labelled replica=<name>; the
// session store's series also store=<storeKind>.
func NewMetrics(replica, storeKind string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	for i := 100; i < len(m.statuses); i++ {
		m.statuses[i] = strconv.Itoa(i)
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"replica": replica}, m.reg)
	m.labelled = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_http_requests_total",
		Help: "HTTP requests served, by route pattern and status.",
	}, []string{"route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shop_http_request_duration_seconds",
		Help:    "Time from the request reaching the replica to the response written, by route pattern.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	m.storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "shop_session_store_duration_seconds",
		Help:        "Session store operations (find, commit, delete), successful or not.",
		Buckets:     latencyBuckets,
		ConstLabels: prometheus.Labels{"store": storeKind},
	}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "shop_session_store_errors_total",
		Help:        "Session store operations that failed.",
		ConstLabels: prometheus.Labels{"store": storeKind},
	}, []string{"op"})
	m.lockWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "shop_session_lock_wait_seconds",
		Help:        "Time a write waited for its session's lock, timeouts included.",
		Buckets:     latencyBuckets,
		ConstLabels: prometheus.Labels{"store": storeKind},
	})
	m.lockTimeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "shop_session_lock_timeouts_total",
		Help:        "Writes that gave up waiting for their session's lock (answered 503).",
		ConstLabels: prometheus.Labels{"store": storeKind},
	})
	m.cartChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_cart_changes_total",
		Help: "Successful cart changes: op=add (POST /cart/items) or op=set (POST /cart/items/{product_id}).",
	}, []string{"op"})
	m.orders = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shop_orders_total",
		Help: "Orders placed (an idempotent replay of a checkout is not counted again).",
	})
	nearCache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_session_near_cache_total",
		Help: "The near-cache of redis sessions (-session-cache on): event=hit (read served here), miss (read from Redis, then cached), " +
			"stale (the copy was older than the cookie's version), bypass (invalidation down: Redis only), invalidation (Redis dropped a copy), flush (all dropped).",
		ConstLabels: prometheus.Labels{"store": storeKind},
	}, []string{"event"})
	m.nearCache = make(map[string]prometheus.Counter)
	for _, e := range []string{session.CacheHit, session.CacheMiss, session.CacheStale, session.CacheBypass, session.CacheInvalidation, session.CacheFlush} {
		m.nearCache[e] = nearCache.WithLabelValues(e)
	}
	reg.MustRegister(m.requests, m.latency, m.storeLatency, m.storeErrors, m.lockWait, m.lockTimeouts, m.cartChanges, m.orders, nearCache)
	// Pre-create the zero series people look for, so a dashboard shows 0
	// rather than "no data" before the first cart or order.
	m.cartChanges.WithLabelValues("add")
	m.cartChanges.WithLabelValues("set")
	for _, op := range []string{"find", "commit", "delete"} {
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

// observeRequest counts one finished request. route is the ServeMux
// pattern ("GET /products/{slug}"), never the path, so the number of series
// stays bounded whatever URLs clients invent.
func (m *Metrics) observeRequest(route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched" // 405s and the like: the mux found no pattern
	}
	if status == 0 {
		status = http.StatusOK
	}
	st := "other"
	if status >= 100 && status < len(m.statuses) {
		st = m.statuses[status]
	}
	m.requests.WithLabelValues(route, st).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
	m.live.add(time.Now(), status >= 500)
	if status == http.StatusSeeOther {
		switch route {
		case "POST /cart/items":
			m.cartChanges.WithLabelValues("add").Inc()
		case "POST /cart/items/{product_id}":
			m.cartChanges.WithLabelValues("set").Inc()
		}
	}
}

// handleMetrics serves the registry in Prometheus text format.
func (s *Server) handleMetrics() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})
}

// slogPrinter lets promhttp report gathering errors through our logger.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Error("metrics", "err", v) }

// ObserveStore records one session store operation.
func (m *Metrics) ObserveStore(op string, d time.Duration, err error) {
	m.storeLatency.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// ObserveNearCache counts one near-cache event.
func (m *Metrics) ObserveNearCache(event string) {
	if c, ok := m.nearCache[event]; ok {
		c.Inc()
	}
}

// ObserveLockWait records one wait for a session's lock.
func (m *Metrics) ObserveLockWait(d time.Duration, timedOut bool) {
	m.lockWait.Observe(d.Seconds())
	if timedOut {
		m.lockTimeouts.Inc()
	}
}

// orderPlaced counts one new order.
func (m *Metrics) orderPlaced() { m.orders.Inc() }

// WatchRedisPool exports how many Redis connections the shared client keeps
// open (active reports it): a number that should stay small and steady when
// connections are reused. main calls it when there is a Redis.
func (m *Metrics) WatchRedisPool(active func() int) {
	m.labelled.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shop_redis_pool_active_connections",
		Help: "Connections to Redis open in the pool, in use or idle (kept alive for the next request).",
	}, func() float64 { return float64(active()) }))
}

// watchLive exports the event streams' numbers, read from the hub when
// /metrics is scraped.
func (m *Metrics) watchLive(l Live) {
	m.labelled.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_live_streams",
			Help: "Event streams (GET /events) open on this replica.",
		}, func() float64 { return float64(l.Stats().Open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_live_streams_refused_total",
			Help: "Event streams refused with 503 because the replica held -live-max-streams.",
		}, func() float64 { return float64(l.Stats().Refused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_live_streams_dropped_total",
			Help: "Event streams dropped because their client did not read (its buffer was full).",
		}, func() float64 { return float64(l.Stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_live_events_delivered_total",
			Help: "Events handed to this replica's streams.",
		}, func() float64 { return float64(l.Stats().Delivered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_live_events_delayed_total",
			Help: "Events Redis did not take before their request was answered: they waited in this replica's memory (lost if it died first).",
		}, func() float64 { return float64(l.Stats().Delayed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_live_events_lost_total",
			Help: "Events this replica gave up publishing (Redis away so long that its bounded queue overflowed, or still away when the replica stopped).",
		}, func() float64 { return float64(l.Stats().Lost) }),
	)
}

// countingDB counts orders as the database reports them placed, so that an
// idempotent replay of a checkout is not counted twice.
type countingDB struct {
	Store
	m *Metrics
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
	// to the live board.
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

// observe records one finished request and, with a shared live board,
// publishes this replica's live counters at most once a second. Publishing
// rides on traffic, so the numbers are fresh while requests come; an idle
// replica publishes from its announcer (publishLiveIdle), or /metrics/live
// would call a living replica gone.
func (s *Server) observe(route string, status int, d time.Duration) {
	now := time.Now()
	s.metrics.observeRequest(route, status, d)
	if !s.board.Shared() {
		return
	}
	sec := now.Unix()
	if last := s.metrics.live.published.Load(); last != sec && s.metrics.live.published.CompareAndSwap(last, sec) {
		go s.publishLive(now)
	}
}

// publishLiveIdle publishes unless traffic already did this second.
func (s *Server) publishLiveIdle(now time.Time) {
	if !s.board.Shared() {
		return
	}
	sec := now.Unix()
	if last := s.metrics.live.published.Load(); last != sec && s.metrics.live.published.CompareAndSwap(last, sec) {
		s.publishLive(now)
	}
}

// publishLive writes this replica's rates to the live board.
func (s *Server) publishLive(now time.Time) {
	// An error leaves the live page showing this replica as gone: true enough.
	s.board.Publish(context.Background(), s.liveRate(now))
}

func (s *Server) liveRate(now time.Time) redisclient.Rate {
	rps, eps, total, errs := s.metrics.live.rate(now)
	return redisclient.Rate{Replica: s.cfg.Replica, Store: s.sessions.Kind(), RequestsPerS: rps, ErrorsPerS: eps,
		Requests: total, Errors: errs, UnixTimestamp: now.Unix()}
}

// liveRates reads every replica's published counters. This replica's own
// row is always fresh, whatever the board holds for it.
func (s *Server) liveRates(ctx context.Context, now time.Time) ([]redisclient.Rate, error) {
	published, err := s.board.Rates(ctx, now)
	if err != nil {
		return nil, err
	}
	rates := []redisclient.Rate{s.liveRate(now)}
	for _, r := range published {
		if r.Replica != s.cfg.Replica {
			rates = append(rates, r)
		}
	}
	return rates, nil
}

// handleLiveJSON is this replica's own live counters, for the other
// replicas' /metrics/live when they share no Redis (Config.Peers).
func (s *Server) handleLiveJSON() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(s.liveRate(time.Now()))
	})
}

// peerTimeout bounds asking a peer for its counters: a dead replica must
// not hold up the board, which reloads every liveRefresh seconds.
const peerTimeout = 500 * time.Millisecond

// peerRates asks every other peer for its counters, all at once. A peer
// that does not answer is a row with no numbers: it is gone, or hung.
func (s *Server) peerRates(ctx context.Context, now time.Time) []redisclient.Rate {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	var others []Peer
	for _, p := range s.cfg.Peers {
		if p.Name != s.cfg.Replica {
			others = append(others, p)
		}
	}
	rates := make([]redisclient.Rate, len(others))
	var wg sync.WaitGroup
	for i, p := range others {
		wg.Go(func() {
			// No answer: stamped long ago, so the row reads as gone.
			rates[i] = redisclient.Rate{Replica: p.Name, UnixTimestamp: now.Add(-redisclient.LiveGone).Unix()}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+"/metrics/live.json", nil)
			if err != nil {
				return
			}
			resp, err := s.peers.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var lr redisclient.Rate
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&lr) == nil {
				lr.Replica = p.Name
				rates[i] = lr
			}
		})
	}
	wg.Wait()
	return append([]redisclient.Rate{s.liveRate(now)}, rates...)
}

// liveRefresh is how often /metrics/live changes: the seconds between two
// updates its stream sends (or, without JavaScript, between reloads).
const liveRefresh = 2

// handleLive is /metrics/live: requests and errors per second per replica,
// server-rendered, for a workshop's projector; static/metrics-live.js keeps
// it current from /metrics/live/stream.
func (s *Server) handleLive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := s.liveView(r.Context(), time.Now())
		w.Header().Set("Cache-Control", "no-store")
		s.render(w, r, http.StatusOK, templates.LivePage(v))
	})
}

// handleLiveStream is /metrics/live/stream: the live page's content,
// rendered every liveRefresh seconds, as server-sent events ("live", the
// HTML as a JSON string, each with an id). A projector or two watch it, so
// it is served on the request's own goroutine; it ends at the start of a
// drain with a retry: hint, like GET /events.
func (s *Server) handleLiveStream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			drained(w)
			return
		}
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{})
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		t := time.NewTicker(liveRefresh * time.Second)
		defer t.Stop()
		var html strings.Builder
		for now := time.Now(); ; now = <-t.C {
			if s.draining.Load() {
				rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
				w.Write([]byte("retry: 1000\n\n"))
				rc.Flush()
				return
			}
			html.Reset()
			if err := templates.LiveMain(s.liveView(r.Context(), now)).Render(r.Context(), &html); err != nil {
				return
			}
			data, _ := json.Marshal(html.String())
			rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
			if _, err := fmt.Fprintf(w, "id: %d\nevent: live\ndata: %s\n\n", now.Unix(), data); err != nil || rc.Flush() != nil {
				return
			}
			if r.Context().Err() != nil {
				return
			}
		}
	})
}

// liveView is the live page as of now.
func (s *Server) liveView(ctx context.Context, now time.Time) templates.LiveView {
	v := templates.LiveView{Replica: s.cfg.Replica, Store: s.sessions.Kind(), Refresh: strconv.Itoa(liveRefresh),
		Window: liveWindow, Generated: now.UTC().Format("15:04:05")}
	rates := []redisclient.Rate{s.liveRate(now)}
	if !s.board.Shared() && len(s.cfg.Peers) > 0 {
		rates, v.AllReplicas, v.FromPeers = s.peerRates(ctx, now), true, true
	} else if !s.board.Shared() {
		v.Note = "These replicas share no Redis and were given no list of each other (-peers), so each shows its own; reload to land on another."
	} else if all, err := s.liveRates(ctx, now); err != nil {
		v.Note = "Redis is not answering, so the other replicas' numbers cannot be read."
	} else {
		rates, v.AllReplicas = all, true
	}
	slices.SortFunc(rates, func(a, b redisclient.Rate) int { return strings.Compare(a.Replica, b.Replica) })
	var total, totalErr float64
	for _, lr := range rates {
		row := templates.LiveRow{Replica: lr.Replica, ColorClass: replicaColorClass(lr.Replica), This: lr.Replica == s.cfg.Replica,
			RPS: lr.RequestsPerS, RPSText: strconv.FormatFloat(lr.RequestsPerS, 'f', 1, 64), EPSText: strconv.FormatFloat(lr.ErrorsPerS, 'f', 1, 64),
			Requests: lr.Requests, Errors: lr.Errors}
		if !row.This {
			age := time.Duration(now.Unix()-lr.UnixTimestamp) * time.Second
			row.Age = age.String()
			if age > redisclient.LiveTTL {
				// Its last numbers are history: show the row, count nothing.
				row.Gone = true
				if v.FromPeers {
					row.Age = "it did not answer within " + peerTimeout.String()
				} else {
					row.Age = "nothing heard for " + row.Age
				}
				row.RPS, row.RPSText, row.EPSText = 0, "gone", "–"
				v.Rows = append(v.Rows, row)
				continue
			}
		}
		total += lr.RequestsPerS
		totalErr += lr.ErrorsPerS
		v.MaxRPS = max(v.MaxRPS, lr.RequestsPerS)
		v.Rows = append(v.Rows, row)
	}
	v.MaxRPS = max(v.MaxRPS, 1)
	v.TotalRPS = strconv.FormatFloat(total, 'f', 1, 64)
	v.TotalEPS = strconv.FormatFloat(totalErr, 'f', 1, 64)
	return v
}
