package bench

// The price of statelessness (issue 21): the same shopper walk (catalog,
// product, add to cart, cart, checkout) through nginx and three replicas
// started with -profile stateful (memory sessions, photos on disk, memory
// jobs, local schedule, live and limits; nginx sticky, as memory sessions
// need) and with -profile stateless (sessions in Redis, photos in
// versitygw, jobs queued with River, shared schedule, live and limits;
// round robin), taking turns round by round; then the memory each holds,
// the parts the stateless replicas share counted too. The figures go to
// docs/benchmarks.md and to state/price, which /state embeds.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/state/price"
)

// The profiles, stateful first: the baseline the price is over.
const (
	ProfileStateful  = "stateful"
	ProfileStateless = "stateless"
)

// The two clusters that split the price: each profile with one setting
// taken from the other.
const (
	// ProfileStatefulRedis is stateful with its sessions in Redis
	// (-session-store redis; nginx still sticky): the session store's
	// share of the price.
	ProfileStatefulRedis = "stateful+redis-sessions"
	// ProfileStatelessNoRiver is stateless with receipt jobs in memory
	// and a local schedule (-jobs memory -schedule local): the price
	// without River's queue.
	ProfileStatelessNoRiver = "stateless-river"
)

// profileKinds are the clusters of the part, in the order of its tables.
var profileKinds = []string{ProfileStateful, ProfileStatefulRedis, ProfileStatelessNoRiver, ProfileStateless}

// profileLabel names a cluster of the part for its tables.
func profileLabel(name string) string {
	switch name {
	case ProfileStatefulRedis:
		return "stateful, sessions in Redis"
	case ProfileStatelessNoRiver:
		return "stateless, jobs in memory (no River)"
	}
	return name
}

// reportsProfile is the profile a cluster's replicas report on /api/state:
// a profile's own name, "custom" for the clusters between them.
func reportsProfile(name string) string {
	if name == ProfileStateful || name == ProfileStateless {
		return name
	}
	return "custom"
}

// walkSteps are a shopper's walk through the shop, in order. The last
// step is a checkout every other walk, and otherwise taking the item out
// of the cart again (PageRemove): a shopper who changes their mind, as
// most do. A checkout on every walk would sell the seeded stock out within
// the bench's ten seconds of closed-model rounds on this machine.
var walkSteps = []string{PageCatalog, PageProduct, PageAdd, PageCart, PageCheckout}

// PageRemove is POST /cart/items/{id} with quantity 0: the walk's item
// taken out of the cart again, a session write like the add.
const PageRemove = "remove"

// walkPages are every request kind of the walk, in the order of its table.
var walkPages = []string{PageCatalog, PageProduct, PageAdd, PageCart, PageCheckout, PageRemove}

// walkFlow says the walk in words, for the report and /state.
const walkFlow = "catalog, product page, add to cart, cart, then checkout (every other walk) or take the item out again"

// ProfileMeasurement is one profile's cluster under the walk.
type ProfileMeasurement struct {
	Profile string
	LB      string
	// Measurement is the walk as a whole: throughput in the closed model,
	// latencies in the open one (every step pooled).
	Measurement
	// Steps are each step's latencies at the open model's rate, in
	// walkSteps' order.
	Steps []StepLatency
	// Memory is every process's RSS after the load.
	Memory ClusterMemory
}

// StepLatency is one step of the walk in the open model.
type StepLatency struct {
	Step     string
	P50, P99 time.Duration
	Requests uint64
}

// MeanReplicaRSS is the replicas' mean VmRSS.
func (p ProfileMeasurement) MeanReplicaRSS() uint64 {
	if len(p.Memory.Replicas) == 0 {
		return 0
	}
	var t uint64
	for _, v := range p.Memory.Replicas {
		t += v
	}
	return t / uint64(len(p.Memory.Replicas))
}

// profileOptions is the part's cluster name: the harness starts a
// profile's cluster with what the profile needs around the replicas
// (Redis, versitygw, sticky or round-robin nginx) and the replicas with
// -profile, and profilesBench checks that every replica reports it. The
// clusters between the profiles change one setting explicitly, which wins
// over the preset.
func profileOptions(name, bin, dir string) cluster.Options {
	profile := ProfileStateless
	if name == ProfileStateful || name == ProfileStatefulRedis {
		profile = ProfileStateful
	}
	o := cluster.Options{Replicas: 3, Profile: profile, Binary: bin, Dir: filepath.Join(dir, "profile-"+name),
		Env: []string{"SHOP_LOG_LEVEL=warn"}}
	switch name {
	case ProfileStatefulRedis:
		o.Store = session.Redis
	case ProfileStatelessNoRiver:
		o.Env = append(o.Env, "SHOP_JOBS=memory", "SHOP_SCHEDULE=local")
	}
	return o
}

// walk hands out the shoppers' requests for vegeta: request i is shopper
// i mod n's next step. Shopper s starts at step s mod 5, so every step is
// in the mix at any moment, and between two steps of one shopper the
// others send n-1 requests: with several times more shoppers than
// clients, a shopper's add has been answered long before its checkout is
// sent. Every checkout carries a fresh idempotency key, as a fresh
// checkout form would.
//
// A checkout takes stock for good, so the units checked out follow the
// stock: every unit of the cluster's but a reserve per product (the warm
// carts' units, and two more), the products in turn. A run that would
// check out more fails with a message instead of measuring "sold out"
// pages.
type walk struct {
	base, slug string
	shoppers   []shopper
	units      []int // product ids, one per unit the checkouts may take

	mu    sync.Mutex
	next  int   // requests handed out
	sold  int   // units of units taken by buying walks
	added []int // each shopper's item of its current walk
}

// newWalk is the shoppers' walk over a cluster whose products have stock
// units left (product id → units).
func newWalk(base, slug string, shoppers []shopper, stock map[int]int) *walk {
	// warmShoppers put one unit of product i mod 24 + 1 in shopper i's cart.
	reserve := len(shoppers)/products + 2
	var units []int
	for k := 0; ; k++ {
		n := len(units)
		for p := 1; p <= products; p++ {
			if stock[p]-reserve > k {
				units = append(units, p)
			}
		}
		if len(units) == n {
			break
		}
	}
	return &walk{base: base, slug: slug, shoppers: shoppers, units: units, added: make([]int, len(shoppers))}
}

// target is the walk as a vegeta.Targeter.
func (w *walk) target(t *vegeta.Target) error {
	w.mu.Lock()
	n := len(w.shoppers)
	s := w.next % n
	// The shopper's position along its walks: it started at step s mod 5,
	// and its first (partial) walk buys what its warm cart holds.
	pos := w.next/n + s%len(walkSteps)
	page := walkSteps[pos%len(walkSteps)]
	buying := (pos/len(walkSteps))%2 == 0
	w.next++
	product := 0
	switch {
	case page == PageAdd && w.sold >= len(w.units):
		w.mu.Unlock()
		return fmt.Errorf("bench: %d units checked out: the seeded stock would run out; use a shorter -duration", w.sold)
	case page == PageAdd:
		product = w.units[w.sold]
		w.added[s] = product
		if buying {
			w.sold++
		}
	case page == PageCheckout && !buying:
		page, product = PageRemove, max(w.added[s], 1)
	}
	w.mu.Unlock()

	h := http.Header{"Cookie": {w.shoppers[s].cookie}}
	*t = vegeta.Target{Method: http.MethodGet, Header: h}
	form := func(path string, v url.Values) {
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		t.Method, t.URL, t.Body = http.MethodPost, w.base+path, []byte(v.Encode())
	}
	switch page {
	case PageCatalog:
		t.URL = w.base + "/"
	case PageProduct:
		t.URL = w.base + "/products/" + w.slug
	case PageCart:
		t.URL = w.base + "/cart"
	case PageAdd:
		form("/cart/items", url.Values{"product_id": {strconv.Itoa(product)}, "quantity": {"1"}})
	case PageRemove:
		form("/cart/items/"+strconv.Itoa(product), url.Values{"quantity": {"0"}})
	case PageCheckout:
		form("/checkout", url.Values{"name": {"Bench"}, "email": {"bench@example.com"}, "address": {"1 Load Street"}, "idempotency_key": {rand.Text()}})
	}
	return nil
}

// walkStep names the step a request was: the inverse of target.
func walkStep(method, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	switch {
	case method == http.MethodPost && p.Path == "/cart/items":
		return PageAdd
	case method == http.MethodPost && p.Path == "/checkout":
		return PageCheckout
	case method == http.MethodPost && strings.HasPrefix(p.Path, "/cart/items/"):
		return PageRemove
	case p.Path == "/":
		return PageCatalog
	case p.Path == "/cart":
		return PageCart
	case strings.HasPrefix(p.Path, "/products/"):
		return PageProduct
	}
	return ""
}

// stepLatencies collects the open model's latencies per step. vegeta hands
// results to one goroutine per attack, and the attacks of a group run one
// after another, but the lock costs nothing and keeps that an assumption
// no one has to check.
type stepLatencies struct {
	mu sync.Mutex
	by map[string]*vegeta.LatencyMetrics
	n  map[string]uint64
}

func (s *stepLatencies) observe(r *vegeta.Result) {
	step := walkStep(r.Method, r.URL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by, s.n = map[string]*vegeta.LatencyMetrics{}, map[string]uint64{}
	}
	if s.by[step] == nil {
		s.by[step] = &vegeta.LatencyMetrics{}
	}
	s.by[step].Add(r.Latency)
	s.n[step]++
}

func (s *stepLatencies) steps() []StepLatency {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StepLatency
	for _, step := range walkPages {
		if l := s.by[step]; l != nil {
			out = append(out, StepLatency{Step: step, P50: l.Quantile(0.5), P99: l.Quantile(0.99), Requests: s.n[step]})
		}
	}
	return out
}

// walkShoppers is how many shoppers walk each cluster: several times more
// than clients (see walk).
func walkShoppers(o Options) int { return max(o.Shoppers, 8*o.Workers) }

// profilesBench starts the profiles' clusters, and the two between them,
// side by side and measures the walk on each, taking turns round by round.
func profilesBench(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) ([]ProfileMeasurement, error) {
	clusters, err := startClusters(ctx, profileKinds, func(profile string) (cluster.Options, string) {
		return profileOptions(profile, bin, dir), "-profile " + profile
	})
	if err != nil {
		return nil, err
	}
	defer clusters.Close()
	n := walkShoppers(o)
	var jobs []job
	steps := make([]*stepLatencies, len(profileKinds))
	for i, profile := range profileKinds {
		c := clusters[profile]
		if err := checkProfile(ctx, c, reportsProfile(profile)); err != nil {
			return nil, err
		}
		shoppers, err := warmShoppers(ctx, c.URL(), n)
		if err != nil {
			return nil, fmt.Errorf("bench: warm sessions (-profile %s): %w", profile, err)
		}
		slug, err := productSlug(ctx, c.URL())
		if err != nil {
			return nil, err
		}
		stock, err := stockLeft(ctx, c.URL())
		if err != nil {
			return nil, err
		}
		steps[i] = &stepLatencies{}
		jobs = append(jobs, job{c: c, page: "walk", store: profile, tr: newWalk(c.URL(), slug, shoppers, stock).target, observe: steps[i].observe})
	}
	var out []ProfileMeasurement
	for i, m := range measureGroup(ctx, o, jobs, true) {
		profile := profileKinds[i]
		p := ProfileMeasurement{Profile: profile, LB: clusters[profile].LB(), Measurement: m, Steps: steps[i].steps(),
			Memory: clusterMemory(ctx, clusters[profile])}
		logf("bench: %-36s %6.0f req/s (%d clients)  p50 %v p99 %v at %d req/s  replicas %s each, cluster %s  success %.1f%%",
			profileLabel(profile), p.Throughput, p.Workers, p.OpenP50, p.OpenP99, p.Rate, mib(p.MeanReplicaRSS()), mib(p.Memory.Total()), p.Success*100)
		out = append(out, p)
	}
	return out, nil
}

// stockLeft is every product's stock, from GET /api/stock.
func stockLeft(ctx context.Context, base string) (map[int]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/stock", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: GET /api/stock: %w", err)
	}
	defer resp.Body.Close()
	var body struct{ Stock map[string]int }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: GET /api/stock: %s %v", resp.Status, err)
	}
	stock := map[int]int{}
	for id, n := range body.Stock {
		p, err := strconv.Atoi(id)
		if err != nil {
			return nil, fmt.Errorf("bench: GET /api/stock: product id %q", id)
		}
		stock[p] = n
	}
	return stock, nil
}

// checkProfile asks every replica which profile its settings match: the
// bench must measure the profiles it names.
func checkProfile(ctx context.Context, c *cluster.Cluster, want string) error {
	for _, r := range c.Replicas() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/api/state", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("bench: %s /api/state: %w", r.Name(), err)
		}
		var a struct{ Profile string }
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || a.Profile != want {
			return fmt.Errorf("bench: %s reports profile %q (%v); the bench started it as %s", r.Name(), a.Profile, err, want)
		}
	}
	return nil
}

// priceOf is the figures /state embeds, from the profiles measured.
func priceOf(ms []ProfileMeasurement, m Machine, started time.Time, o Options) price.Measured {
	p := price.Measured{At: started.UTC().Truncate(time.Second), Machine: m.String(), Load: m.LoadBefore, Command: o.Command,
		Flow: walkFlow, Clients: o.Workers, Rate: o.Rate}
	var base *ProfileMeasurement
	for i, pm := range ms {
		if pm.Profile != ProfileStateful && pm.Profile != ProfileStateless {
			continue // the clusters between the profiles: the report's
		}
		pp := price.Profile{Name: pm.Profile, LB: pm.LB, Throughput: round1(pm.Throughput),
			P50Ms: msFloat(pm.OpenP50), P99Ms: msFloat(pm.OpenP99),
			Replicas: len(pm.Memory.Replicas), ReplicaRSS: pm.MeanReplicaRSS(), TotalRSS: pm.Memory.Total(), Shared: []price.Part{}}
		if pm.Memory.Redis > 0 {
			pp.Shared = append(pp.Shared, price.Part{Name: "redis", RSS: pm.Memory.Redis})
		}
		if pm.Memory.ObjectStore > 0 {
			pp.Shared = append(pp.Shared, price.Part{Name: "object store", RSS: pm.Memory.ObjectStore})
		}
		p.Profiles = append(p.Profiles, pp)
		if pm.Profile == ProfileStateful {
			base = &ms[i]
		}
	}
	for _, pm := range ms {
		if pm.Profile == ProfileStateless && base != nil {
			p.ThroughputRatio = float64(int(relative(pm.Measurement, base.Measurement)*1000+0.5)) / 1000
		}
	}
	return p
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// msFloat is d in milliseconds, to a hundredth.
func msFloat(d time.Duration) float64 {
	return float64(int64(float64(d)/float64(time.Microsecond)/10+0.5)) / 100
}

// writePrice writes the figures for /state (Options.Price).
func writePrice(path string, p price.Measured) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// profilesRows is the price table: one row per profile.
func profilesRows(measured []ProfileMeasurement) (header []string, rows [][]string) {
	var rate, workers int
	if len(measured) > 0 {
		rate, workers = measured[0].Rate, measured[0].Workers
	}
	header = []string{"profile (nginx)", fmt.Sprintf("walk req/s (%d clients)", workers), "vs stateful", fmt.Sprintf("p50 / p99 @ %d req/s", rate),
		"replica RSS (mean)", "nginx", "redis", "object store", "cluster RSS", "ok"}
	var base *ProfileMeasurement
	for i := range measured {
		if measured[i].Profile == ProfileStateful {
			base = &measured[i]
		}
	}
	for _, m := range measured {
		rel := ""
		if base != nil && m.Profile != ProfileStateful {
			rel = fmt.Sprintf("%.0f%%", relative(m.Measurement, base.Measurement)*100)
		}
		rows = append(rows, []string{profileLabel(m.Profile) + " (" + m.LB + ")", fmt.Sprintf("%.0f", m.Throughput), rel, ms(m.OpenP50) + " / " + ms(m.OpenP99),
			mib(m.MeanReplicaRSS()), mib(m.Memory.Nginx), orDash(m.Memory.Redis), orDash(m.Memory.ObjectStore), mib(m.Memory.Total()),
			fmt.Sprintf("%.1f%%", m.Success*100)})
	}
	return header, rows
}

func orDash(b uint64) string {
	if b == 0 {
		return "–"
	}
	return mib(b)
}

// profileStepRows is each step's p50 / p99 under each profile.
func profileStepRows(measured []ProfileMeasurement) (header []string, rows [][]string) {
	header = []string{"step"}
	for _, m := range measured {
		header = append(header, profileLabel(m.Profile)+" p50 / p99")
	}
	for _, step := range walkPages {
		row := []string{step}
		for _, m := range measured {
			cell := "–"
			for _, s := range m.Steps {
				if s.Step == step {
					cell = ms(s.P50) + " / " + ms(s.P99)
				}
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	return header, rows
}

// profilesHeading opens the price's section of docs/benchmarks.md.
const profilesHeading = "## The price of statelessness: -profile stateful vs stateless"

// profilesMarkdown is the price's section of docs/benchmarks.md.
func profilesMarkdown(b *strings.Builder, ms []ProfileMeasurement, o Options) {
	round := o.Duration / time.Duration(o.Rounds)
	b.WriteString(profilesHeading + "\n\n")
	fmt.Fprintf(b, "Four more clusters side by side, each nginx + 3 replicas over one SQLite file: `-profile stateful` (memory sessions, photos on each replica's disk, receipt jobs in memory, local schedule, live events and login limits; nginx sticky, as memory sessions need) and `-profile stateless` (sessions in Redis, photos in versitygw, receipt jobs queued with River in the order's transaction, shared schedule, live events through Redis, login limits in Redis; nginx round robin), and between them, to split the price, stateful with its sessions in Redis (`-session-store redis`, still sticky) and stateless with its jobs in memory (`-jobs memory -schedule local`: no River). ")
	fmt.Fprintf(b, "%d warm shoppers per cluster walk the shop: catalog, a product page, add one unit to the cart, the cart, then checkout (a fresh idempotency key each time) on every other walk and on the others take the item out again (`POST /cart/items/{id}`, quantity 0: a shopper who changes their mind; the seeded stock would not last ten seconds of checkouts on every walk); each shopper one step at a time, starting at different steps so that every step is always in the mix. ", walkShoppers(o))
	fmt.Fprintf(b, "The clusters take turns round by round: %d rounds of %v with %d clients back to back (throughput, the median round; a ratio is the median of the round-by-round ratios), then %d rounds of %v at %d req/s (latencies, pooled). RSS is VmRSS after the load: the replicas' mean, and every process the cluster runs.\n\n",
		o.Rounds, round, o.Workers, o.Rounds, round, o.Rate)
	h, rows := profilesRows(ms)
	mdTable(b, h, rows)
	h, rows = profileStepRows(ms)
	fmt.Fprintf(b, "Each step at %d req/s:\n\n", o.Rate)
	mdTable(b, h, rows)
	b.WriteString("Where the price comes from: every request of a stateless replica that reads the session is a round trip to Redis (a `GET`; a write adds the session lock's `SET NX` and its release around the `SET`), where a stateful one reads a map; a checkout inserts River's receipt job in the order's SQLite transaction, and River's workers on all three replicas fetch, work and complete it in the same file; live events go through Redis. The walk uploads no photo, so the object store costs it memory only (a photo's own price is in the review photos table). ")
	if split := priceSplit(ms); split != "" {
		b.WriteString(split + " ")
	}
	b.WriteString("What the price buys is in `/state` and the chaos scenario: a stateless replica can be killed at any moment without losing a cart, a photo or a receipt. `/state` shows the two profiles' figures from `state/price/measured.json`, which this run wrote.\n\n")
}

// priceSplit says how much of the price each part took in this run: the
// throughput of the clusters between the profiles, as shares of
// stateful's.
func priceSplit(ms []ProfileMeasurement) string {
	by := map[string]Measurement{}
	for _, m := range ms {
		by[m.Profile] = m.Measurement
	}
	full, ok1 := by[ProfileStateful]
	redis, ok2 := by[ProfileStatefulRedis]
	noRiver, ok3 := by[ProfileStatelessNoRiver]
	less, ok4 := by[ProfileStateless]
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return ""
	}
	pct := func(m Measurement) float64 { return relative(m, full) * 100 }
	return fmt.Sprintf("In this run, of stateful's throughput: sessions in Redis alone keep %.0f%%; the rest of stateless without River (round robin, live events through Redis, Redis and versitygw on the same cores) %.0f%%; River's queue on top, the whole stateless profile, %.0f%%.",
		pct(redis), pct(noRiver), pct(less))
}

// replaceSection puts section (a "## " heading and its text) into doc's
// generated part in place of the section with the same heading, or before
// the first of the headings before (else before the analysis marker).
func replaceSection(doc, section string, before ...string) string {
	heading, _, _ := strings.Cut(section, "\n")
	gen, tail, marked := strings.Cut(doc, analysisMarker)
	if i := strings.Index(gen, heading+"\n"); i >= 0 {
		end := len(gen)
		if j := strings.Index(gen[i+len(heading):], "\n## "); j >= 0 {
			end = i + len(heading) + j + 1
		}
		gen = gen[:i] + section + gen[end:]
	} else {
		at := len(gen)
		for _, h := range before {
			if i := strings.Index(gen, h+"\n"); i >= 0 && i < at {
				at = i
			}
		}
		gen = gen[:at] + section + gen[at:]
	}
	if !marked {
		return gen
	}
	return gen + analysisMarker + tail
}

// RunProfiles runs only the price of statelessness (`bench -only
// profiles`): the walk on both profiles. With Options.Doc it replaces the
// price's section of that report (the rest stays as the last full run
// wrote it); with Options.Price it writes the figures /state embeds. It
// fails when a request failed.
func RunProfiles(ctx context.Context, o Options, w io.Writer) ([]ProfileMeasurement, error) {
	o = o.withDefaults()
	m := describeMachine()
	started := time.Now()
	ms, err := runPart(ctx, o, w, profilesBench)
	h, rows := profilesRows(ms)
	var failed []string
	for _, m := range ms {
		if m.Success < 1 {
			failed = append(failed, fmt.Sprintf("-profile %s: %.3f%% succeeded: %s", m.Profile, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	if err := finishPart(w, h, rows, Goal{}, false, err, failed); err != nil {
		return ms, err
	}
	h, rows = profileStepRows(ms)
	printColumns(w, h, rows)
	if o.Doc != "" {
		prev, err := os.ReadFile(o.Doc)
		if err != nil {
			return ms, fmt.Errorf("bench: -only profiles replaces a section of %s, made by a full run first: %w", o.Doc, err)
		}
		var b strings.Builder
		profilesMarkdown(&b, ms, o)
		if err := os.WriteFile(o.Doc, []byte(replaceSection(string(prev), b.String(), memoryHeading)), 0o644); err != nil {
			return ms, fmt.Errorf("bench: write %s: %w", o.Doc, err)
		}
		fmt.Fprintf(w, "bench: wrote the price's section of %s\n", o.Doc)
	}
	if o.Price != "" {
		if err := writePrice(o.Price, priceOf(ms, m, started, o)); err != nil {
			return ms, err
		}
		fmt.Fprintf(w, "bench: wrote %s\n", o.Price)
	}
	return ms, nil
}
