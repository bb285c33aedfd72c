//go:build withprom

// The build tag is temporary: go.sum lacks go.yaml.in/yaml/v2 (needed by
// prometheus/common), and go.sum is not ours to edit. Once it has the two
// lines (go mod download go.yaml.in/yaml/v2@v2.4.2), delete
// metrics_noprom.go and this constraint.

package web

// Metrics: GET /metrics in Prometheus text format, one registry per Server
// (no globals: two replicas in one test process must not share counters),
// every series labelled with the replica. The hot path pays one counter and
// one histogram observation per request; everything else is computed when
// /metrics is scraped.

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets span what this shop does: a cached page in ~100 µs, a
// Redis round trip in ~50-200 µs, the store timeout at 1 s and the lock wait
// at 2 s. Prometheus's default buckets start at 5 ms, where nothing here is.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// metrics is one replica's instruments.
type metrics struct {
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

	// statuses holds "100".."599" so that labelling a request allocates
	// nothing.
	statuses [600]string

	// live feeds /metrics/live: requests and errors per second, kept apart
	// from the registry because reading a rate back from Prometheus
	// counters would need a second sample anyway.
	live liveCounter
}

// newMetrics registers the shop's series, Go runtime and process metrics
// (RSS among them) in a fresh registry, all labelled replica=<name>.
func newMetrics(replica, storeKind string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
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
	reg.MustRegister(m.requests, m.latency, m.storeLatency, m.storeErrors, m.lockWait, m.lockTimeouts, m.cartChanges, m.orders)
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
func (m *metrics) observeRequest(route string, status int, d time.Duration) {
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

// observeStore records one session store operation.
func (m *metrics) observeStore(op string, d time.Duration, err error) {
	m.storeLatency.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// observeLockWait records one wait for a session's lock.
func (m *metrics) observeLockWait(d time.Duration, timedOut bool) {
	m.lockWait.Observe(d.Seconds())
	if timedOut {
		m.lockTimeouts.Inc()
	}
}

// orderPlaced counts one new order.
func (m *metrics) orderPlaced() { m.orders.Inc() }

// watchPool exports how many Redis connections the pool keeps open: a
// number that should stay small and steady when connections are reused.
func (m *metrics) watchPool(pool *redis.Pool) {
	m.labelled.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shop_redis_pool_active_connections",
		Help: "Connections to Redis open in the pool, in use or idle (kept alive for the next request).",
	}, func() float64 { return float64(pool.Stats().ActiveCount) }))
}
