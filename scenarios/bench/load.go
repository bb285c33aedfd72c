package bench

// Load generation: warm shoppers, vegeta targets, the two load models.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// products is how many product ids add-to-cart rotates over: the seed has
// at least 24, and one cart line takes at most 99, so shoppers × 24 × 99
// adds fit before a 422.
const products = 24

// shopper is a warm session: the cookies a browser would send.
type shopper struct {
	cookie string // "session=...; shop_route=shopN"
	token  string
}

// warmShoppers creates n sessions through nginx, each with one item in its
// cart, the way a browser does: a POST that creates the session, then the
// cart page. nginx's sticky policy pins each to the replica that made it.
func warmShoppers(ctx context.Context, base string, n int) ([]shopper, error) {
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	out := make([]shopper, 0, n)
	for i := range n {
		form := url.Values{"product_id": {strconv.Itoa(i%products + 1)}, "quantity": {"1"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/cart/items", strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			return nil, fmt.Errorf("POST /cart/items: %s", resp.Status)
		}
		var s shopper
		var parts []string
		for _, c := range resp.Cookies() {
			switch c.Name {
			case "session":
				s.token = c.Value
				parts = append(parts, c.Name+"="+c.Value)
			case "shop_route":
				parts = append(parts, c.Name+"="+c.Value)
			}
		}
		if s.token == "" {
			return nil, fmt.Errorf("POST /cart/items set no session cookie")
		}
		s.cookie = strings.Join(parts, "; ")
		out = append(out, s)
	}
	return out, nil
}

var productLink = regexp.MustCompile(`href="/products/([a-z0-9-]+)"`)

// productSlug finds a product page to load from the catalog's links.
func productSlug(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	m := productLink.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("bench: the catalog links no product")
	}
	return string(m[1]), nil
}

// targets are the requests for one page, rotating over the shoppers so that
// load spreads over replicas and sessions as real traffic does. For add,
// they also rotate over products, shopper-first, so one session's writes
// rarely meet each other.
func targets(base, page string, shoppers []shopper, slug string) []vegeta.Target {
	get := func(path string) []vegeta.Target {
		if len(shoppers) == 0 {
			return []vegeta.Target{{Method: "GET", URL: base + path}}
		}
		var ts []vegeta.Target
		for _, s := range shoppers {
			ts = append(ts, vegeta.Target{Method: "GET", URL: base + path, Header: http.Header{"Cookie": {s.cookie}}})
		}
		return ts
	}
	switch page {
	case PageHealthz:
		return get("/healthz")
	case PageCatalog:
		return get("/")
	case PageProduct:
		return get("/products/" + slug)
	case PageCart:
		return get("/cart")
	case PageSession:
		return get("/api/session")
	case PageAdd:
		var ts []vegeta.Target
		for p := 1; p <= products; p++ {
			for _, s := range shoppers {
				ts = append(ts, vegeta.Target{Method: "POST", URL: base + "/cart/items",
					Body: []byte("product_id=" + strconv.Itoa(p) + "&quantity=1"),
					Header: http.Header{"Cookie": {s.cookie},
						"Content-Type": {"application/x-www-form-urlencoded"}}})
			}
		}
		return ts
	}
	panic("bench: unknown page " + page)
}

// attack runs one load model, handing each result to add (which may be
// nil), and returns vegeta's metrics for the run. rate 0 is the closed
// model: workers clients back to back.
func attack(ctx context.Context, ts []vegeta.Target, rate, workers int, d time.Duration, add func(*vegeta.Result)) vegeta.Metrics {
	return attackWith(ctx, vegeta.NewStaticTargeter(ts...), rate, workers, d, add)
}

// attackWith is attack with any targeter: one that makes each request as
// it is asked for (a shopper's next step, a fresh idempotency key).
func attackWith(ctx context.Context, targeter vegeta.Targeter, rate, workers int, d time.Duration, add func(*vegeta.Result)) vegeta.Metrics {
	// Our own transport, so that its idle connections can be closed after
	// the run: left open, they would keep an old nginx worker alive through
	// a reload (scaling the cluster) until nginx's keepalive timeout.
	tr := &http.Transport{MaxIdleConnsPerHost: 10000, DialContext: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	opts := []func(*vegeta.Attacker){
		vegeta.Client(&http.Client{Transport: tr}),
		vegeta.Redirects(vegeta.NoFollow), // a 303 after add is the answer
		vegeta.Timeout(10 * time.Second),
		vegeta.KeepAlive(true),
	}
	if rate == 0 {
		opts = append(opts, vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(uint64(workers)))
	}
	atk := vegeta.NewAttacker(opts...)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var m vegeta.Metrics
	for r := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, "") {
		m.Add(r)
		if add != nil {
			add(r)
		}
	}
	m.Close()
	return m
}

// job is one page on one cluster within a measured group.
type job struct {
	c           *cluster.Cluster
	ts          []vegeta.Target
	page, store string
	// tr, when set, makes the requests instead of ts: one targeter for
	// every round, so that what it tracks (each shopper's step) carries on
	// from round to round.
	tr vegeta.Targeter
	// observe, when set, sees every result of the open model: the
	// latencies to compare, per request kind.
	observe func(*vegeta.Result)
}

// attack runs one of the job's runs (see attack).
func (j job) attack(ctx context.Context, rate, workers int, d time.Duration, add func(*vegeta.Result)) vegeta.Metrics {
	if j.tr != nil {
		return attackWith(ctx, j.tr, rate, workers, d, add)
	}
	return attack(ctx, j.ts, rate, workers, d, add)
}

// roundResult is what one job measured over all its rounds.
type roundResult struct {
	throughputs   []float64
	closed, open  vegeta.Metrics
	before, after allocCounter
}

// measureGroup measures jobs that will be compared with each other. The
// machine is shared and its load comes in bursts, so instead of one long
// run each, the jobs take turns in short rounds (memory, redis, memory,
// redis, ...): a burst then hits both sides of a ratio. Throughput is the
// median of the rounds; latencies pool every request of every round.
func measureGroup(ctx context.Context, o Options, jobs []job, open bool) []Measurement {
	round := o.Duration / time.Duration(o.Rounds)
	res := make([]roundResult, len(jobs))
	for _, j := range jobs {
		// Open connections and fill the replicas' pools first.
		j.attack(ctx, 0, o.Workers, max(round/2, 100*time.Millisecond), nil)
	}
	for range o.Rounds {
		for i, j := range jobs {
			before := sampleAllocs(ctx, j.c)
			var m vegeta.Metrics
			j.attack(ctx, 0, o.Workers, round, func(r *vegeta.Result) { m.Add(r); res[i].closed.Add(r) })
			m.Close()
			after := sampleAllocs(ctx, j.c)
			res[i].before.add(before)
			res[i].after.add(after)
			res[i].throughputs = append(res[i].throughputs, m.Throughput)
		}
	}
	if open {
		for range o.Rounds {
			for i, j := range jobs {
				j.attack(ctx, o.Rate, 0, round, func(r *vegeta.Result) {
					res[i].open.Add(r)
					if j.observe != nil {
						j.observe(r)
					}
				})
			}
		}
	}
	out := make([]Measurement, len(jobs))
	for i, j := range jobs {
		r := &res[i]
		r.closed.Close()
		rounds := slices.Clone(r.throughputs)
		slices.Sort(r.throughputs)
		m := Measurement{Page: j.page, Store: j.store, Workers: o.Workers, Throughput: r.throughputs[len(r.throughputs)/2], Rounds: rounds,
			ClosedP50: r.closed.Latencies.P50, ClosedP99: r.closed.Latencies.P99,
			AllocsPerRequest: r.before.perRequest(r.after), Success: r.closed.Success, Errors: r.closed.Errors}
		if open {
			r.open.Close()
			m.Rate, m.OpenP50, m.OpenP99 = o.Rate, r.open.Latencies.P50, r.open.Latencies.P99
			total := float64(r.closed.Requests + r.open.Requests)
			if total > 0 {
				m.Success = (r.closed.Success*float64(r.closed.Requests) + r.open.Success*float64(r.open.Requests)) / total
			}
			m.Errors = append(m.Errors, r.open.Errors...)
		}
		slices.Sort(m.Errors)
		m.Errors = slices.Compact(m.Errors)
		if len(m.Errors) > 5 {
			m.Errors = m.Errors[:5]
		}
		out[i] = m
	}
	return out
}

// measure is measureGroup for a single job.
func measure(ctx context.Context, c *cluster.Cluster, o Options, ts []vegeta.Target, open bool) Measurement {
	return measureGroup(ctx, o, []job{{c: c, ts: ts}}, open)[0]
}

// meanCookieBytes is the mean size of the shoppers' session cookie as a
// request carries it: "session=" and the value.
func meanCookieBytes(ss []shopper) int {
	if len(ss) == 0 {
		return 0
	}
	total := 0
	for _, s := range ss {
		total += len("session=") + len(s.token)
	}
	return total / len(ss)
}
