package bench

// Background jobs: what queueing each order's receipt job in the order's
// own transaction (-jobs queue, River) costs a checkout against a goroutine
// started after it (-jobs memory, today's checkout plus nothing durable),
// and how long a shopper waits from checkout to a ready receipt, on SQLite
// and on PostgreSQL.

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// jobKinds are measured in this order: memory is the baseline.
var jobKinds = []string{"memory", "queue"}

// goalQueueVsMemory: enqueueing in the order's transaction may cost a
// checkout at most 10% of its throughput (issue 20).
const goalQueueVsMemory = 0.90

// jobsOrderBudget caps the throughput rounds' orders per cluster, leaving
// seeded stock for the receipt samples after them.
const jobsOrderBudget = 1200

// JobsMeasurement is checkout and receipt on one database with one -jobs.
type JobsMeasurement struct {
	Database string // sqlite or postgres
	Jobs     string // memory or queue
	Workers  int
	// Throughput is orders per second in the closed model (median round),
	// with CheckoutP50/P99 the POST /checkout latency there.
	Throughput               float64
	CheckoutP50, CheckoutP99 time.Duration
	// ReadyP50/P99: from sending POST /checkout to the first 200 of GET
	// /orders/{id}/receipt, one shopper at a time, polling every 5 ms.
	ReadyP50, ReadyP99 time.Duration
	Samples            int
	Success            float64 // checkouts placed or refused for stock, over attempts
	Errors             []string
}

// jobsBench measures each database's two clusters (memory, queue), taking
// turns round by round, one database after the other.
func jobsBench(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) ([]JobsMeasurement, error) {
	var out []JobsMeasurement
	samples, dbs := 100, databases
	if o.Short {
		// A smoke test of the path: SQLite only, which needs no server.
		samples, dbs = 5, databases[:1]
	}
	for _, db := range dbs {
		clusters, err := startClusters(ctx, jobKinds, func(kind string) (cluster.Options, string) {
			// Sticky: a shopper's checkout and its receipt polls meet one
			// replica, where a memory job's result is.
			return cluster.Options{Replicas: 3, Store: "cookie", LB: "sticky", Binary: bin,
				Dir: filepath.Join(dir, "jobs-"+db+"-"+kind), Database: db,
				Env: []string{"SHOP_LOG_LEVEL=warn", "SHOP_JOBS=" + kind}}, db + " " + kind + "-jobs"
		})
		if err != nil {
			return out, err
		}
		runs := make([]*checkoutRun, len(jobKinds))
		for i, kind := range jobKinds {
			runs[i] = newCheckoutRun(clusters[kind].URL())
		}
		round := o.Duration / time.Duration(o.Rounds)
		for range o.Rounds {
			for _, r := range runs {
				r.round(ctx, o.Workers, round, jobsOrderBudget/int64(o.Rounds))
			}
		}
		ready := make([][]time.Duration, len(jobKinds))
		var errs [2][]string
		for range samples {
			for i, kind := range jobKinds {
				d, err := checkoutToReceipt(ctx, clusters[kind].URL(), runs[i])
				if err != nil {
					errs[i] = append(errs[i], err.Error())
					continue
				}
				ready[i] = append(ready[i], d)
			}
		}
		for i, kind := range jobKinds {
			dm := runs[i].measurement(db, o.Workers)
			m := JobsMeasurement{Database: db, Jobs: kind, Workers: o.Workers, Throughput: dm.Throughput,
				CheckoutP50: dm.P50, CheckoutP99: dm.P99, Success: dm.Success, Errors: append(dm.Errors, compact(errs[i])...),
				Samples: len(ready[i])}
			if n := len(ready[i]); n > 0 {
				slices.Sort(ready[i])
				m.ReadyP50, m.ReadyP99 = ready[i][n/2], ready[i][n*99/100]
			}
			logf("bench: jobs %-6s on %-8s %6.0f orders/s  checkout p50 %v p99 %v  receipt ready p50 %v p99 %v (%d)",
				kind, db, m.Throughput, m.CheckoutP50, m.CheckoutP99, m.ReadyP50, m.ReadyP99, m.Samples)
			out = append(out, m)
		}
		clusters.Close()
	}
	return out, nil
}

func compact(s []string) []string {
	slices.Sort(s)
	s = slices.Compact(s)
	return s[:min(len(s), 5)]
}

// checkoutToReceipt places one order (one unit of a product in stock) and
// polls its receipt until it is ready.
func checkoutToReceipt(ctx context.Context, base string, r *checkoutRun) (time.Duration, error) {
	s := newCheckoutShopper(base)
	product := 0
	for range products {
		p := int(r.next.Add(1)%products) + 1
		if _, out := r.soldOut.Load(p); !out {
			product = p
			break
		}
	}
	if product == 0 {
		return 0, fmt.Errorf("sold out")
	}
	if status, err := post(ctx, s, base+"/cart/items", url.Values{"product_id": {strconv.Itoa(product)}, "quantity": {"1"}}); err != nil || status != http.StatusSeeOther {
		r.soldOut.Store(product, true)
		return 0, fmt.Errorf("add to cart: %d %v", status, err)
	}
	form := url.Values{"name": {"Bench"}, "email": {"bench@example.com"}, "address": {"1 Load Street"}, "idempotency_key": {rand.Text()}}
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/checkout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.Do(req)
	if err != nil {
		return 0, fmt.Errorf("checkout: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/orders/") {
		return 0, fmt.Errorf("checkout: %d", resp.StatusCode)
	}
	deadline := start.Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+loc+"/receipt", nil)
		resp, err := s.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return time.Since(start), nil
			case http.StatusAccepted:
			default:
				return 0, fmt.Errorf("receipt: %d", resp.StatusCode)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("receipt: not ready after 30 s")
}

// jobsGoal compares queue with memory checkout throughput on each database.
func jobsGoal(ms []JobsMeasurement) (Goal, bool) {
	find := func(db, kind string) (JobsMeasurement, bool) {
		for _, m := range ms {
			if m.Database == db && m.Jobs == kind {
				return m, true
			}
		}
		return JobsMeasurement{}, false
	}
	g := Goal{Name: "checkout with its receipt job queued in the order's transaction (-jobs queue) vs -jobs memory, max throughput", Target: "≥ 90%", Met: true}
	var parts []string
	for _, db := range databases {
		mem, ok1 := find(db, "memory")
		q, ok2 := find(db, "queue")
		if !ok1 || !ok2 || mem.Throughput == 0 {
			continue
		}
		x := q.Throughput / mem.Throughput
		parts = append(parts, fmt.Sprintf("%s %.0f%% (%.0f of %.0f orders/s)", db, x*100, q.Throughput, mem.Throughput))
		if x < goalQueueVsMemory {
			g.Met = false
			g.Why += fmt.Sprintf("%s short by %.0f points; ", db, (goalQueueVsMemory-x)*100)
		}
	}
	if len(parts) == 0 {
		return Goal{}, false
	}
	g.Measured = strings.Join(parts, ", ")
	g.Why = strings.TrimSuffix(g.Why, "; ")
	return g, true
}

// jobsRows is the jobs table.
func jobsRows(measured []JobsMeasurement) (header []string, rows [][]string) {
	header = []string{"database", "jobs", "checkouts/s (clients)", "checkout p50 / p99", "checkout → receipt ready p50 / p99 (samples)", "ok"}
	for _, m := range measured {
		rows = append(rows, []string{m.Database, m.Jobs, fmt.Sprintf("%.0f (%d)", m.Throughput, m.Workers),
			ms(m.CheckoutP50) + " / " + ms(m.CheckoutP99), fmt.Sprintf("%s / %s (%d)", ms(m.ReadyP50), ms(m.ReadyP99), m.Samples),
			fmt.Sprintf("%.1f%%", m.Success*100)})
	}
	return header, rows
}

// RunJobs runs only the jobs table (`bench -only jobs`): checkout
// throughput with -jobs memory and queue, and checkout → receipt ready, on
// SQLite and PostgreSQL. It writes no report; it fails when a request
// failed.
func RunJobs(ctx context.Context, o Options, w io.Writer) ([]JobsMeasurement, error) {
	ms, err := runPart(ctx, o, w, jobsBench)
	h, rows := jobsRows(ms)
	g, ok := jobsGoal(ms)
	var failed []string
	for _, m := range ms {
		if m.Success < 1 || len(m.Errors) > 0 {
			failed = append(failed, fmt.Sprintf("%s jobs on %s: %.3f%% succeeded: %s", m.Jobs, m.Database, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	return ms, finishPart(w, h, rows, g, ok, err, failed)
}
