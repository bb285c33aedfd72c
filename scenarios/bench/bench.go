// Package bench measures the shop against its own limit: it starts real
// clusters (nginx, three replicas, Redis) through scenarios/cluster and
// loads them with vegeta as a library, all in one run so that ratios hold on
// a noisy, shared machine. Absolute numbers depend on the machine; the
// goals are ratios within one run (see docs/benchmarks.md).
//
// Run is the whole bench; `make bench` and `go run ./scenarios/bench/cmd/bench`
// call it and write docs/benchmarks.md. Options.Short runs the same path in
// a few seconds, for a smoke test inside `make test`.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/session"
)

// Options shape a run. The zero value is the full bench.
type Options struct {
	// Short runs every step of the bench briefly, without the scaling
	// curves: a smoke test, not a measurement.
	Short bool
	// Binary is the shop binary; "" builds cmd/shop.
	Binary string
	// Dir holds the clusters' logs and databases; "" is a temp dir removed
	// afterwards.
	Dir string
	// Duration of each measurement and model; default 10s (short: 200ms),
	// taken in Rounds turns (default 10, short 1) that alternate with the
	// measurements it is compared with.
	Duration time.Duration
	Rounds   int
	// Rate is the open model's fixed request rate per second, at which
	// latency is compared; default 200 (short: 50).
	Rate int
	// Workers is the closed model's concurrency for maximum throughput;
	// default 32 (short: 4).
	Workers int
	// Shoppers is how many warm sessions each store gets; requests rotate
	// over them. Default 64 (short: 8).
	Shoppers int
	// Scaling runs the curves: 1-4 replicas, 10-1000 concurrent shoppers,
	// 10k-1M sessions in Redis. Ignored in short mode.
	Scaling bool
	// SessionCounts are the fill levels of the sessions curve; default
	// 10k, 100k, 1M.
	SessionCounts []int
	// Doc, when set, is where the Markdown report is written
	// (docs/benchmarks.md); Command is the command line it quotes.
	Doc     string
	Command string
	// Price, when set, is where the profiles part writes the figures
	// /state embeds (state/price/measured.json).
	Price string
}

func (o Options) withDefaults() Options {
	def := func(v *int, full, short int) {
		if *v == 0 {
			*v = full
			if o.Short {
				*v = short
			}
		}
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
		if o.Short {
			o.Duration = 200 * time.Millisecond
		}
	}
	def(&o.Rate, 200, 50)
	def(&o.Rounds, 10, 1)
	def(&o.Workers, 32, 4)
	def(&o.Shoppers, 64, 8)
	if o.Short {
		o.Scaling = false
	}
	if o.SessionCounts == nil {
		o.SessionCounts = []int{10_000, 100_000, 1_000_000}
	}
	return o
}

// Pages measured, in the order of the table.
const (
	PageHealthz = "healthz"
	PageCatalog = "catalog"
	PageProduct = "product"
	PageCart    = "cart"
	PageSession = "session" // GET /api/session
	PageAdd     = "add"
)

var pages = []string{PageCatalog, PageProduct, PageCart, PageSession, PageAdd}

// StoreCached names the third cluster: redis sessions with the near-cache
// on (-session-cache on). It is measured on the pages that read a session
// without writing it, where the cache can answer: the catalog, the cart and
// /api/session.
const StoreCached = "redis+cache"

var cachedPages = []string{PageCatalog, PageCart, PageSession}

// storesFor are the clusters measured on page, in the order of the table.
func storesFor(page string) []string {
	stores := session.Kinds()
	if slices.Contains(cachedPages, page) {
		stores = append(stores, StoreCached)
	}
	return stores
}

// Measurement is one page under one store, under both load models.
type Measurement struct {
	Page  string
	Store string // "memory" or "redis"; the limit was measured on Store's cluster
	// Closed model: Workers concurrent clients, each sending its next
	// request when the last answered: the most the cluster serves.
	Workers    int
	Throughput float64   // successful requests per second: the median round
	Rounds     []float64 // each round's throughput, in the order taken
	ClosedP50  time.Duration
	ClosedP99  time.Duration
	// Open model: requests arrive at Rate per second whatever the
	// latency, as real shoppers do; latency compares fairly here.
	Rate    int
	OpenP50 time.Duration
	OpenP99 time.Duration
	// Limit is the /healthz limit of this store's cluster, measured in the
	// same rounds: what "% of limit" divides by.
	Limit *Measurement
	// Success is the share of 2xx/3xx answers over both models.
	Success float64
	// AllocsPerRequest is the replicas' heap allocations per request during
	// the closed run, from their /metrics; 0 when unavailable.
	AllocsPerRequest float64
	Errors           []string
}

// Result is everything a run measured.
type Result struct {
	Machine      Machine
	Options      Options
	Started      time.Time
	Took         time.Duration
	Limit        map[string]Measurement // healthz through nginx, per store's cluster
	Measurements []Measurement          // pages × stores
	Memory       map[string]ClusterMemory
	// CookieBytes is the session cookie (name=value) every request of a
	// warm shopper carries, per store: a token for memory and redis, the
	// whole sealed session (here a one-line cart) for cookie.
	CookieBytes map[string]int
	// Ready is how long a replica took from exec to /readyz 200, per store
	// (the median of a few restarts).
	Ready       map[string]time.Duration
	Replicas    []Measurement // catalog, redis, at 1..4 replicas
	Concurrency []Measurement // catalog, redis, at 10, 100, 1000 workers
	Sessions    []SessionPoint
	// Databases is catalog and checkout on SQLite and on PostgreSQL.
	Databases []DatabaseMeasurement
	// Jobs is checkout and receipt with -jobs memory and queue, on each
	// database.
	Jobs []JobsMeasurement
	// Uploads is a review photo's upload and serving, and the RSS of 20
	// big uploads at once, with -uploads DIR and s3://BUCKET.
	Uploads []UploadsMeasurement
	// Profiles is the price of statelessness: the shopper walk on
	// -profile stateful and stateless.
	Profiles []ProfileMeasurement
	Goals    []Goal
	Notes    []string
}

// ClusterMemory is resident memory after the load.
type ClusterMemory struct {
	Replicas    map[string]uint64 // name → RSS
	Nginx       uint64            // master and workers
	Redis       uint64            // 0 in memory mode
	ObjectStore uint64            // versitygw; 0 with photos on the replicas' disks
}

// Total is the whole cluster's RSS.
func (c ClusterMemory) Total() uint64 {
	t := c.Nginx + c.Redis + c.ObjectStore
	for _, v := range c.Replicas {
		t += v
	}
	return t
}

// MaxReplica is the largest replica RSS.
func (c ClusterMemory) MaxReplica() uint64 {
	var m uint64
	for _, v := range c.Replicas {
		m = max(m, v)
	}
	return m
}

// Goal is one of issue 7's goals with the figure measured for it.
type Goal struct {
	Name     string
	Target   string
	Measured string
	Met      bool
	Why      string // for a missed goal: by how much and why
}

// Run builds the shop, starts a memory and a redis cluster side by side and
// measures them; it prints progress and the table to w and, with
// Options.Doc, writes the Markdown report.
func Run(ctx context.Context, o Options, w io.Writer) (Result, error) {
	o = o.withDefaults()
	res := Result{Options: o, Started: time.Now(), Machine: describeMachine(),
		Limit: map[string]Measurement{}, Memory: map[string]ClusterMemory{}, Ready: map[string]time.Duration{}}
	logf := startLog(w, res.Machine)

	dir, bin, cleanup, err := benchDirAndBinary(ctx, o)
	if err != nil {
		return res, err
	}
	defer cleanup()

	// Both clusters run at once so that every pair of measurements is taken
	// minutes apart at most. Sticky routing for both: a memory session lives
	// on one replica, and the comparison must differ in the store only.
	clusters := map[string]*cluster.Cluster{}
	defer func() {
		for _, c := range clusters {
			c.Close()
		}
	}()
	for _, store := range append(session.Kinds(), StoreCached) {
		start := time.Now()
		kind, env := store, []string{"SHOP_LOG_LEVEL=warn"}
		if store == StoreCached {
			kind, env = session.Redis, append(env, "SHOP_SESSION_CACHE=on")
		}
		c, err := cluster.Start(ctx, cluster.Options{Replicas: 3, Store: kind, LB: "sticky", Binary: bin, Dir: filepath.Join(dir, store),
			// Info logs cost a JSON line per request on a 2-core machine;
			// production runs at info, but the bench measures the shop.
			Env: env})
		if err != nil {
			return res, fmt.Errorf("bench: start %s cluster: %w", store, err)
		}
		clusters[store] = c
		logf("bench: %s cluster up in %v at %s", store, time.Since(start).Round(time.Millisecond), c.URL())
	}

	shoppers := map[string][]shopper{}
	var slug string
	for store, c := range clusters {
		s, err := warmShoppers(ctx, c.URL(), o.Shoppers)
		if err != nil {
			return res, fmt.Errorf("bench: warm %s sessions: %w", store, err)
		}
		shoppers[store] = s
		if res.CookieBytes == nil {
			res.CookieBytes = map[string]int{}
		}
		res.CookieBytes[store] = meanCookieBytes(s)
		if slug == "" {
			if slug, err = productSlug(ctx, c.URL()); err != nil {
				return res, err
			}
		}
	}

	// The limit (nginx to a replica's /healthz, nothing else) is measured
	// in the same rounds as each page it is compared with; memory and redis
	// take turns on every page. The table's limit is the catalog's, which
	// the goal is about.
	for _, page := range pages {
		var jobs []job
		for _, store := range storesFor(page) {
			c := clusters[store]
			jobs = append(jobs, job{c: c, ts: targets(c.URL(), PageHealthz, nil, slug), page: PageHealthz, store: store})
		}
		for _, store := range storesFor(page) {
			c := clusters[store]
			jobs = append(jobs, job{c: c, ts: targets(c.URL(), page, shoppers[store], slug), page: page, store: store})
		}
		ms := measureGroup(ctx, o, jobs, true)
		limits := map[string]Measurement{}
		for _, m := range ms {
			if m.Page == PageHealthz {
				limits[m.Store] = m
				if page == PageCatalog {
					res.Limit[m.Store] = m
				}
				logf("bench: limit (%s cluster, with %s): %.0f req/s", m.Store, page, m.Throughput)
			}
		}
		for _, m := range ms {
			if m.Page == PageHealthz {
				continue
			}
			l := limits[m.Store]
			m.Limit = &l
			res.Measurements = append(res.Measurements, m)
			logf("bench: %-7s %-6s %7.0f req/s  p50 %v p99 %v at %d req/s  success %.1f%%", page, m.Store, m.Throughput, m.OpenP50, m.OpenP99, o.Rate, m.Success*100)
		}
	}
	for store, c := range clusters {
		res.Memory[store] = clusterMemory(ctx, c)
	}

	if o.Scaling {
		c := clusters["redis"]
		res.Concurrency = concurrencyCurve(ctx, c, o, targets(c.URL(), PageCatalog, shoppers["redis"], slug), logf)
		res.Sessions = sessionCurve(ctx, c, o, shoppers["redis"], logf)
		res.Replicas = replicaCurve(ctx, c, o, shoppers["redis"], slug, logf)
	}

	for store, c := range clusters {
		d, err := readyTime(ctx, c, o)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("ready time (%s): %v", store, err))
			continue
		}
		res.Ready[store] = d
	}

	for store, c := range clusters {
		if err := c.Close(); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("closing the %s cluster: %v", store, err))
		}
		delete(clusters, store)
	}
	// After the session clusters are gone: the database clusters take turns
	// with each other, not with them.
	dbs, err := databaseBench(ctx, o, bin, dir, logf)
	if err != nil {
		return res, err
	}
	res.Databases = dbs
	jb, err := jobsBench(ctx, o, bin, dir, logf)
	if err != nil {
		return res, err
	}
	res.Jobs = jb
	ub, err := uploadsBench(ctx, o, bin, dir, logf)
	if err != nil {
		return res, err
	}
	res.Uploads = ub
	pb, err := profilesBench(ctx, o, bin, dir, logf)
	if err != nil {
		return res, err
	}
	res.Profiles = pb

	res.Took = time.Since(res.Started)
	res.Goals = goals(res)
	res.printTable(w)
	if o.Doc != "" {
		prev, _ := os.ReadFile(o.Doc)
		if err := os.WriteFile(o.Doc, []byte(withAnalysis(res.Markdown(), string(prev))), 0o644); err != nil {
			return res, fmt.Errorf("bench: write %s: %w", o.Doc, err)
		}
		logf("bench: wrote %s", o.Doc)
	}
	if o.Price != "" {
		if err := writePrice(o.Price, priceOf(res.Profiles, res.Machine, res.Started, o)); err != nil {
			return res, err
		}
		logf("bench: wrote %s", o.Price)
	}
	var errs []error
	for _, m := range append(slices.Clone(res.Measurements), res.Limit["redis"], res.Limit["memory"], res.Limit[StoreCached]) {
		if m.Success < 0.99 {
			errs = append(errs, fmt.Errorf("bench: %s (%s): only %.1f%% of requests succeeded: %s", m.Page, m.Store, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	for _, m := range res.Databases {
		if m.Success < 0.99 {
			errs = append(errs, fmt.Errorf("bench: %s on %s: only %.1f%% of requests succeeded: %s", m.Page, m.Database, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	for _, m := range res.Uploads {
		if m.Success < 0.99 {
			errs = append(errs, fmt.Errorf("bench: photos with -uploads %s: only %.1f%% of requests succeeded: %s", m.Uploads, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	for _, m := range res.Profiles {
		if m.Success < 0.99 {
			errs = append(errs, fmt.Errorf("bench: the walk with -profile %s: only %.1f%% of requests succeeded: %s", m.Profile, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	for _, m := range res.Jobs {
		if m.Success < 0.99 {
			errs = append(errs, fmt.Errorf("bench: checkout with %s jobs on %s: only %.1f%% of requests succeeded: %s", m.Jobs, m.Database, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	return res, errors.Join(errs...)
}

// startLog is the progress logger writing to w, its first line already
// written: the machine and its load average as the run begins.
func startLog(w io.Writer, m Machine) func(format string, args ...any) {
	logf := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	logf("bench: %s; load average %s", m, m.LoadBefore)
	return logf
}

// benchDirAndBinary is the working directory (a temp dir unless
// Options.Dir) and the shop binary (built unless Options.Binary).
func benchDirAndBinary(ctx context.Context, o Options) (dir, bin string, cleanup func(), err error) {
	cleanup = func() {}
	dir = o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "statelab-bench-*"); err != nil {
			return "", "", nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
	}
	bin = o.Binary
	if bin == "" {
		if bin, err = cluster.BuildShop(ctx, filepath.Join(dir, "bin")); err != nil {
			cleanup()
			return "", "", nil, err
		}
	}
	return dir, bin, cleanup, nil
}

// readyTime restarts the last replica a few times and takes the median time
// from exec to /readyz answering 200 (polled every 25 ms by the harness).
func readyTime(ctx context.Context, c *cluster.Cluster, o Options) (time.Duration, error) {
	rs := c.Replicas()
	r := rs[len(rs)-1]
	n := 5
	if o.Short {
		n = 1
	}
	var ds []time.Duration
	for range n {
		if err := r.Kill(); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := r.Start(ctx); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// clusterMemory reads every process's RSS: the replicas, nginx's master and
// workers, redis-server and versitygw.
func clusterMemory(ctx context.Context, c *cluster.Cluster) ClusterMemory {
	cm := ClusterMemory{Replicas: map[string]uint64{}}
	for _, r := range c.Replicas() {
		cm.Replicas[r.Name()] = rss(r.Pid())
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir(), "nginx", "nginx.pid")); err == nil {
		var pid int
		fmt.Sscan(string(b), &pid)
		cm.Nginx = rss(pid)
		for _, k := range childPIDs(pid) {
			cm.Nginx += rss(k)
		}
	}
	if rd := c.Redis(); rd != nil {
		if info, err := redisInfo(ctx, rd.Addr(), "server"); err == nil {
			var pid int
			fmt.Sscan(info["process_id"], &pid)
			cm.Redis = rss(pid)
		}
	}
	if s3 := c.ObjectStore(); s3 != nil {
		if p := s3.Process(); p != nil {
			cm.ObjectStore = rss(p.Pid())
		}
	}
	return cm
}

// scrape sums a counter over a replica's /metrics: 0 when the replica does
// not export it.
func scrape(ctx context.Context, url string, names ...string) []float64 {
	out := make([]float64, len(names))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return out
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		for i, name := range names {
			if rest, ok := strings.CutPrefix(line, name); ok && (rest[0] == ' ' || rest[0] == '{') {
				f := strings.Fields(line)
				var v float64
				fmt.Sscan(f[len(f)-1], &v)
				out[i] += v
			}
		}
	}
	return out
}

// allocCounter samples the replicas' allocation and request counters.
type allocCounter struct{ mallocs, requests float64 }

func sampleAllocs(ctx context.Context, c *cluster.Cluster) allocCounter {
	var a allocCounter
	for _, r := range c.Replicas() {
		v := scrape(ctx, r.URL(), "go_memstats_mallocs_total", "shop_http_requests_total")
		a.mallocs += v[0]
		a.requests += v[1]
	}
	return a
}

// perRequest is allocations per request between two samples. The scrapes
// themselves allocate too, a few thousand per replica, which over thousands
// of requests is noise.
func (a *allocCounter) add(b allocCounter) {
	a.mallocs += b.mallocs
	a.requests += b.requests
}

func (a allocCounter) perRequest(b allocCounter) float64 {
	if b.requests <= a.requests {
		return 0
	}
	return (b.mallocs - a.mallocs) / (b.requests - a.requests)
}
