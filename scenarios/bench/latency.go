package bench

// The price of externalised state, turned up: the same pages with sessions
// in memory and in Redis while the network to Redis grows longer (a proxy
// adds latency to every exchange), and what waiting for a replica (WAIT 1)
// adds to a session write.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/session"
)

// RedisDelays are the distances to Redis the latency table compares.
var RedisDelays = []time.Duration{0, time.Millisecond, 5 * time.Millisecond}

// LatencyRow is one page under one store with Redis Delay away.
type LatencyRow struct {
	Delay time.Duration
	Measurement
}

// RunLatency measures catalog, cart and add with every session store kind
// while Redis is 0, 1 and 5 ms away (`bench -only latency`), and prints a
// Markdown table. The redis cluster talks to Redis through the harness's
// proxy at every delay, 0 included, so the columns differ by the delay
// alone. The other clusters keep sessions without Redis: their rows are the
// baseline, taken in the same rounds.
func RunLatency(ctx context.Context, o Options, w io.Writer) ([]LatencyRow, error) {
	o = o.withDefaults()
	logf := startLog(w, describeMachine())
	dir, bin, cleanup, err := benchDirAndBinary(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	type side struct {
		store    string
		c        *cluster.Cluster
		shoppers []shopper
		slug     string
	}
	var sides []*side
	var redisSide *side
	// Every store kind, so that a new one joins the table by itself.
	for _, store := range session.Kinds() {
		env := []string{"SHOP_LOG_LEVEL=warn"}
		if store == session.Cookie {
			// One key for the three replicas, made for this run.
			env = append(env, "SHOP_SESSION_KEYS="+randomKey())
		}
		c, err := cluster.Start(ctx, cluster.Options{Replicas: 3, Store: store, LB: "sticky", Binary: bin,
			Dir: filepath.Join(dir, store), RedisProxy: store == session.Redis, Env: env})
		if err != nil {
			return nil, fmt.Errorf("bench: start %s cluster: %w", store, err)
		}
		defer c.Close()
		s := &side{store: store, c: c}
		if s.shoppers, err = warmShoppers(ctx, c.URL(), o.Shoppers); err != nil {
			return nil, fmt.Errorf("bench: warm %s sessions: %w", store, err)
		}
		if s.slug, err = productSlug(ctx, c.URL()); err != nil {
			return nil, err
		}
		sides = append(sides, s)
		if store == session.Redis {
			redisSide = s
		}
	}
	if redisSide == nil {
		return nil, fmt.Errorf("bench: no %s store kind to delay", session.Redis)
	}

	var jobs []job
	for _, page := range []string{PageCatalog, PageCart, PageAdd} {
		for _, s := range sides {
			jobs = append(jobs, job{c: s.c, ts: targets(s.c.URL(), page, s.shoppers, s.slug), page: page, store: s.store})
		}
	}
	rows, err := measureDelays(ctx, o, jobs, func(d time.Duration) error {
		logf("bench: Redis %s away", d)
		return redisSide.c.DelayRedis(d)
	})
	if err != nil {
		return rows, err
	}
	if err := redisSide.c.DelayRedis(0); err != nil {
		return rows, err
	}
	fmt.Fprint(w, LatencyMarkdown(rows, o))
	return rows, failedRows(rows)
}

// measureDelays measures every job at every delay in RedisDelays. The
// shared machine's load comes in bursts, so the delays take turns round by
// round (0, 1, 5 ms, 0, 1, 5 ms, ...) as the jobs do within a delay: a burst
// then hits every column, not one. Throughput is the median round;
// latencies pool every request of the open model.
func measureDelays(ctx context.Context, o Options, jobs []job, setDelay func(time.Duration) error) ([]LatencyRow, error) {
	round := o.Duration / time.Duration(o.Rounds)
	type cell struct {
		closed, open vegeta.Metrics
		throughputs  []float64
	}
	cells := make([][]cell, len(RedisDelays))
	for i := range cells {
		cells[i] = make([]cell, len(jobs))
	}
	for _, j := range jobs {
		// Open connections and fill the replicas' pools first.
		attack(ctx, j.ts, 0, o.Workers, max(round/2, 100*time.Millisecond), nil)
	}
	for range o.Rounds {
		for di, d := range RedisDelays {
			if err := setDelay(d); err != nil {
				return nil, err
			}
			for ji, j := range jobs {
				c := &cells[di][ji]
				var m vegeta.Metrics
				attack(ctx, j.ts, 0, o.Workers, round, func(r *vegeta.Result) { m.Add(r); c.closed.Add(r) })
				m.Close()
				c.throughputs = append(c.throughputs, m.Throughput)
				attack(ctx, j.ts, o.Rate, 0, round, func(r *vegeta.Result) { c.open.Add(r) })
			}
		}
	}
	var rows []LatencyRow
	for di, d := range RedisDelays {
		for ji, j := range jobs {
			c := &cells[di][ji]
			c.closed.Close()
			c.open.Close()
			slices.Sort(c.throughputs)
			total := float64(c.closed.Requests + c.open.Requests)
			m := Measurement{Page: j.page, Store: j.store, Workers: o.Workers, Throughput: c.throughputs[len(c.throughputs)/2],
				Rate: o.Rate, OpenP50: c.open.Latencies.P50, OpenP99: c.open.Latencies.P99,
				ClosedP50: c.closed.Latencies.P50, ClosedP99: c.closed.Latencies.P99,
				Errors: append(slices.Clone(c.closed.Errors), c.open.Errors...)}
			if total > 0 {
				m.Success = (c.closed.Success*float64(c.closed.Requests) + c.open.Success*float64(c.open.Requests)) / total
			}
			slices.Sort(m.Errors)
			m.Errors = slices.Compact(m.Errors)
			rows = append(rows, LatencyRow{Delay: d, Measurement: m})
		}
	}
	return rows, nil
}

// LatencyMarkdown is the table for docs/benchmarks.md.
func LatencyMarkdown(rows []LatencyRow, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Open model at %d requests/s for latency, closed model with %d clients for throughput; %d rounds of %s per cell and model, the delays taking turns round by round.\n\n",
		o.Rate, o.Workers, o.Rounds, o.Duration/time.Duration(o.Rounds))
	header := []string{"page", "store", "Redis away", "p50", "p99", "throughput (req/s)"}
	var table [][]string
	for _, r := range rows {
		away := r.Delay.String()
		if r.Store != session.Redis {
			away = "(no Redis)"
		}
		table = append(table, []string{r.Page, r.Store, away, ms(r.OpenP50), ms(r.OpenP99), fmt.Sprintf("%.0f", r.Throughput)})
	}
	mdTable(&b, header, table)
	return b.String()
}

// RunWait measures what WAIT 1 costs a session write (`bench -only wait`):
// one Redis primary and replica under Sentinel, shop1..3 acknowledging
// writes at once and shop4 after WAIT 1, the add page requested from each
// replica directly in alternating rounds.
func RunWait(ctx context.Context, o Options, w io.Writer) ([]Measurement, error) {
	o = o.withDefaults()
	startLog(w, describeMachine())
	dir, bin, cleanup, err := benchDirAndBinary(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	c, err := cluster.Start(ctx, cluster.Options{Replicas: 1, Store: "redis", Sentinel: true, Binary: bin,
		Dir: filepath.Join(dir, "sentinel"), Env: []string{"SHOP_LOG_LEVEL=warn"}})
	if err != nil {
		return nil, fmt.Errorf("bench: start sentinel cluster: %w", err)
	}
	defer c.Close()
	waiting, err := c.AddReplica(ctx, "SHOP_REDIS_WAIT_REPLICAS=1")
	if err != nil {
		return nil, err
	}
	var jobs []job
	for _, r := range []*cluster.Replica{c.Replicas()[0], waiting} {
		shoppers, err := warmShoppers(ctx, r.URL(), o.Shoppers)
		if err != nil {
			return nil, fmt.Errorf("bench: warm sessions on %s: %w", r.Name(), err)
		}
		store := "redis, wait 0"
		if r == waiting {
			store = "redis, wait 1"
		}
		jobs = append(jobs, job{c: c, ts: targets(r.URL(), PageAdd, shoppers, ""), page: PageAdd, store: store})
	}
	results := measureGroup(ctx, o, jobs, true)
	var b strings.Builder
	header := []string{"page", "acknowledged", "p50", "p99", "throughput (req/s)"}
	var table [][]string
	for _, m := range results {
		table = append(table, []string{m.Page, m.Store, ms(m.OpenP50), ms(m.OpenP99), fmt.Sprintf("%.0f", m.Throughput)})
	}
	mdTable(&b, header, table)
	fmt.Fprint(w, b.String())
	var rows []LatencyRow
	for _, m := range results {
		rows = append(rows, LatencyRow{Measurement: m})
	}
	return results, failedRows(rows)
}

// randomKey is a fresh secret for -session-keys.
func randomKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// failedRows is an error naming the cells where a request failed.
func failedRows(rows []LatencyRow) error {
	var failed []string
	for _, r := range rows {
		if r.Success < 1 {
			failed = append(failed, fmt.Sprintf("%s %s at %s: %.3f%% succeeded: %s", r.Page, r.Store, r.Delay, r.Success*100, strings.Join(r.Errors, "; ")))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: failed requests: %s", strings.Join(failed, "; "))
	}
	return nil
}
