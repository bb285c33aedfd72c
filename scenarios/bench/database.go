package bench

// The database choice: the same three-replica redis cluster over one SQLite
// file and over one PostgreSQL, side by side. The catalog is cached in each
// replica, so it should not care; a checkout writes an order and its lines
// and decrements stock in one transaction, so it shows what the database
// costs.

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// PageCheckout is a checkout: add one unit to a cart, then POST /checkout;
// only the checkout is timed.
const PageCheckout = "checkout"

// databases are measured in this order.
var databases = []string{cluster.DatabaseSQLite, cluster.DatabasePostgres}

// orderBudget caps the orders of one database's run, shared equally by its
// rounds: the seeded stock (at least 100 of each of 24 products, which the
// checkouts take in turn) must last, or they would measure "out of stock"
// pages.
const orderBudget = 2000

// DatabaseMeasurement is one page on one database, in the closed model.
type DatabaseMeasurement struct {
	Database   string // sqlite or postgres
	Page       string // catalog or checkout
	Workers    int
	Throughput float64 // successful requests (checkout: orders) per second, the median round
	P50, P99   time.Duration
	Success    float64 // catalog: 2xx; checkout: orders and out-of-stock refusals over attempts
	Requests   int
	Errors     []string
}

// databaseBench starts one cluster per database and measures the catalog
// and checkout on each, taking turns round by round.
func databaseBench(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) ([]DatabaseMeasurement, error) {
	clusters := map[string]*cluster.Cluster{}
	defer func() {
		for _, c := range clusters {
			c.Close()
		}
	}()
	var jobs []job
	for _, db := range databases {
		c, err := cluster.Start(ctx, cluster.Options{Replicas: 3, Store: "redis", LB: "sticky", Binary: bin,
			Dir: filepath.Join(dir, "db-"+db), Database: db, Env: []string{"SHOP_LOG_LEVEL=warn"}})
		if err != nil {
			return nil, fmt.Errorf("bench: start the %s cluster: %w", db, err)
		}
		clusters[db] = c
		shoppers, err := warmShoppers(ctx, c.URL(), o.Shoppers)
		if err != nil {
			return nil, fmt.Errorf("bench: warm sessions (%s): %w", db, err)
		}
		jobs = append(jobs, job{c: c, ts: targets(c.URL(), PageCatalog, shoppers, ""), page: PageCatalog, store: db})
	}

	var out []DatabaseMeasurement
	for _, m := range measureGroup(ctx, o, jobs, false) {
		out = append(out, DatabaseMeasurement{Database: m.Store, Page: PageCatalog, Workers: m.Workers,
			Throughput: m.Throughput, P50: m.ClosedP50, P99: m.ClosedP99, Success: m.Success, Errors: m.Errors})
	}

	runs := make([]*checkoutRun, len(databases))
	for i, db := range databases {
		runs[i] = newCheckoutRun(clusters[db].URL())
	}
	round := o.Duration / time.Duration(o.Rounds)
	for range o.Rounds {
		for _, r := range runs {
			r.round(ctx, o.Workers, round, orderBudget/int64(o.Rounds))
		}
	}
	for i, db := range databases {
		out = append(out, runs[i].measurement(db, o.Workers))
	}
	for _, m := range out {
		logf("bench: %-8s on %-8s %7.0f req/s  p50 %v p99 %v  success %.1f%%", m.Page, m.Database, m.Throughput, m.P50, m.P99, m.Success*100)
	}
	return out, nil
}

// checkoutRun is the checkouts on one cluster over all rounds.
type checkoutRun struct {
	base     string
	soldOut  sync.Map // product id → true once a checkout was refused for it
	next     atomic.Int64
	mu       sync.Mutex
	took     []time.Duration // every successful checkout
	rates    []float64       // orders per second, per round
	attempts int
	refused  int // out of stock: a right answer, not an order
	errors   []string
}

func newCheckoutRun(base string) *checkoutRun { return &checkoutRun{base: base} }

// round runs workers shoppers back to back for d, each adding one unit and
// checking out, until d is over or the round has placed budget orders.
func (r *checkoutRun) round(ctx context.Context, workers int, d time.Duration, budget int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var orders atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			s := newCheckoutShopper(r.base)
			for ctx.Err() == nil && orders.Load() < budget {
				if r.checkout(ctx, s) {
					orders.Add(1)
				} else {
					s = newCheckoutShopper(r.base) // a fresh cart
				}
			}
		})
	}
	wg.Wait()
	if n := orders.Load(); n > 0 {
		r.mu.Lock()
		r.rates = append(r.rates, float64(n)/time.Since(start).Seconds())
		r.mu.Unlock()
	}
}

// checkout adds a product that is not sold out and checks out; it reports
// whether an order was placed.
func (r *checkoutRun) checkout(ctx context.Context, s *http.Client) bool {
	product := 0
	for range products {
		p := int(r.next.Add(1)%products) + 1
		if _, out := r.soldOut.Load(p); !out {
			product = p
			break
		}
	}
	if product == 0 {
		return false
	}
	add := url.Values{"product_id": {strconv.Itoa(product)}, "quantity": {"1"}}
	switch status, err := post(ctx, s, r.base+"/cart/items", add); {
	case err == nil && status == http.StatusUnprocessableEntity: // sold out
		r.refuse(ctx, product)
		return false
	case err != nil || status != http.StatusSeeOther:
		r.fail(ctx, fmt.Sprintf("add to cart: %d %v", status, err))
		return false
	}
	form := url.Values{"name": {"Bench"}, "email": {"bench@example.com"}, "address": {"1 Load Street"},
		"idempotency_key": {rand.Text()}}
	start := time.Now()
	status, err := post(ctx, s, r.base+"/checkout", form)
	took := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		return false // the round ended mid-request: not counted
	}
	r.attempts++
	switch {
	case err == nil && status == http.StatusSeeOther:
		r.took = append(r.took, took)
		return true
	case err == nil && status == http.StatusUnprocessableEntity:
		r.refused++
		r.soldOut.Store(product, true)
	default:
		r.errors = append(r.errors, fmt.Sprintf("checkout: %d %v", status, err))
	}
	return false
}

// refuse records a product the shop says is sold out: a right answer,
// which the next checkouts avoid.
func (r *checkoutRun) refuse(ctx context.Context, product int) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	r.refused++
	r.soldOut.Store(product, true)
}

func (r *checkoutRun) fail(ctx context.Context, msg string) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	r.errors = append(r.errors, msg)
}

func (r *checkoutRun) measurement(db string, workers int) DatabaseMeasurement {
	m := DatabaseMeasurement{Database: db, Page: PageCheckout, Workers: workers, Requests: r.attempts}
	if len(r.rates) > 0 {
		rates := slices.Sorted(slices.Values(r.rates))
		m.Throughput = rates[len(rates)/2]
	}
	if len(r.took) > 0 {
		slices.Sort(r.took)
		m.P50, m.P99 = r.took[len(r.took)/2], r.took[len(r.took)*99/100]
	}
	if r.attempts > 0 {
		m.Success = float64(len(r.took)+r.refused) / float64(r.attempts)
	}
	slices.Sort(r.errors)
	m.Errors = slices.Compact(r.errors)
	if len(m.Errors) > 5 {
		m.Errors = m.Errors[:5]
	}
	return m
}

// newCheckoutShopper is one browser: a cookie jar, no redirects followed.
func newCheckoutShopper(base string) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func post(ctx context.Context, c *http.Client, u string, form url.Values) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// RunDatabase runs only the database table (`bench -only database`):
// catalog and checkout on SQLite and on PostgreSQL, exactly as Run measures
// them, without the rest of the bench. It writes no report; it fails when
// any request failed.
func RunDatabase(ctx context.Context, o Options, w io.Writer) ([]DatabaseMeasurement, error) {
	ms, err := runPart(ctx, o, w, databaseBench)
	if err != nil {
		return ms, err
	}
	h, rows := Result{Databases: ms}.databaseRows()
	var failed []string
	for _, m := range ms {
		if m.Success < 1 {
			failed = append(failed, fmt.Sprintf("%s on %s: %.3f%% succeeded: %s", m.Page, m.Database, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	return ms, finishPart(w, h, rows, Goal{}, false, nil, failed)
}
