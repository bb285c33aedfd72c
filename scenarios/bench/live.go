package bench

// The live events' goals (issue 19), `bench -only live`:
//
//   - 5,000 concurrent streams on one replica at ≤ 64 MiB RSS above idle;
//   - an event from replica A reaches streams on replica C at p99 < 100 ms
//     through Redis;
//   - the catalog's throughput with 1,000 open streams is ≥ 0.9× without.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/statelab/shop/scenarios/cluster"
)

// LiveResult is what `bench -only live` measured.
type LiveResult struct {
	Streams             int
	IdleRSS, StreamsRSS uint64 // the replica's, before and with the streams
	Events              int    // events timed from A to C
	StreamsOnC          int
	P50, P99, Max       time.Duration
	CatalogStreams      int
	CatalogWithout      float64 // requests per second, median of the rounds
	CatalogWith         float64
}

// Goals of the live bench.
const (
	liveRSSGoal     = 64 << 20
	liveP99Goal     = 100 * time.Millisecond
	liveCatalogGoal = 0.9
)

// RunLive runs the live events' goals alone and prints their table. It
// writes no report.
func RunLive(ctx context.Context, o Options, w io.Writer) (LiveResult, error) {
	o = o.withDefaults()
	logf := startLog(w, describeMachine())
	dir, bin, cleanup, err := benchDirAndBinary(ctx, o)
	if err != nil {
		return LiveResult{}, err
	}
	defer cleanup()
	res := LiveResult{Streams: 5000, StreamsOnC: 50, Events: 200, CatalogStreams: 1000}
	if o.Short {
		res.Streams, res.StreamsOnC, res.Events, res.CatalogStreams = 100, 5, 10, 50
	}

	// One replica, local events: the streams' memory and the catalog.
	one, err := cluster.Start(ctx, cluster.Options{Replicas: 1, Store: "memory", Binary: bin, Dir: dir + "/live-one",
		Env: []string{"SHOP_LOG_LEVEL=warn", "SHOP_LIVE=local", "SHOP_LIVE_MAX_STREAMS=20000"}})
	if err != nil {
		return res, err
	}
	defer one.Close()
	r := one.Replicas()[0]
	if err := warmCatalog(ctx, r.URL()); err != nil {
		return res, err
	}
	time.Sleep(time.Second)
	res.IdleRSS = rss(r.Pid())
	logf("live: %s idle at %s RSS; opening %d streams", r.Name(), mib(res.IdleRSS), res.Streams)
	streams, err := openStreams(ctx, r.URL(), res.Streams)
	if err != nil {
		return res, err
	}
	// Every stream carries one event, so each has used its buffers.
	if err := checkout(ctx, r.URL(), 1); err != nil {
		streams.close()
		return res, err
	}
	if err := streams.waitEvents(ctx, 1); err != nil {
		streams.close()
		return res, err
	}
	time.Sleep(time.Second)
	res.StreamsRSS = rss(r.Pid())
	logf("live: %d streams open, RSS %s", res.Streams, mib(res.StreamsRSS))
	streams.close()

	// The catalog's throughput with and without open streams, in
	// alternating rounds so that a burst of load elsewhere hits both.
	ts := []vegeta.Target{{Method: http.MethodGet, URL: r.URL() + "/"}}
	round := max(o.Duration/time.Duration(o.Rounds), 200*time.Millisecond)
	attack(ctx, ts, 0, o.Workers, round/2, nil)
	var without, with []float64
	for range max(o.Rounds/2, 1) {
		m := attack(ctx, ts, 0, o.Workers, round, nil)
		without = append(without, m.Throughput)
		s, err := openStreams(ctx, r.URL(), res.CatalogStreams)
		if err != nil {
			return res, err
		}
		m = attack(ctx, ts, 0, o.Workers, round, nil)
		with = append(with, m.Throughput)
		s.close()
	}
	res.CatalogWithout, res.CatalogWith = median(without), median(with)
	logf("live: catalog %.0f req/s without streams, %.0f with %d", res.CatalogWithout, res.CatalogWith, res.CatalogStreams)
	one.Close()

	// Three replicas, events through Redis: from a checkout on shop1 to
	// the streams on shop3.
	three, err := cluster.Start(ctx, cluster.Options{Replicas: 3, Store: "redis", Binary: bin, Dir: dir + "/live-three",
		Env: []string{"SHOP_LOG_LEVEL=warn", "SHOP_LIVE=redis"}})
	if err != nil {
		return res, err
	}
	defer three.Close()
	a, c := three.Replicas()[0], three.Replicas()[2]
	onC, err := openStreams(ctx, c.URL(), res.StreamsOnC)
	if err != nil {
		return res, err
	}
	defer onC.close()
	var lat []time.Duration
	for i := range res.Events {
		start := time.Now()
		if err := checkout(ctx, a.URL(), i%24+1); err != nil {
			return res, err
		}
		arrived, err := onC.nextEvent(ctx)
		if err != nil {
			return res, err
		}
		for _, t := range arrived {
			lat = append(lat, t.Sub(start))
		}
	}
	slices.Sort(lat)
	res.P50, res.P99, res.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	res.print(w)
	return res, nil
}

func (r LiveResult) print(w io.Writer) {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	above := r.StreamsRSS - min(r.IdleRSS, r.StreamsRSS)
	fmt.Fprintf(w, "\n| live goal | measured | goal | verdict |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d streams on one replica | RSS %s idle → %s: %s above idle (%.1f KiB per stream) | ≤ 64 MiB above idle | %s |\n",
		r.Streams, mib(r.IdleRSS), mib(r.StreamsRSS), mib(above), float64(above)/1024/float64(r.Streams), verdict(above <= liveRSSGoal))
	fmt.Fprintf(w, "| event shop1 → Redis → %d streams on shop3 (%d checkouts; from the checkout's request, so an upper bound) | p50 %s, p99 %s, max %s | p99 < 100 ms | %s |\n",
		r.StreamsOnC, r.Events, r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Max.Round(100*time.Microsecond), verdict(r.P99 < liveP99Goal))
	ratio := 0.0
	if r.CatalogWithout > 0 {
		ratio = r.CatalogWith / r.CatalogWithout
	}
	fmt.Fprintf(w, "| catalog with %d open streams (one replica, closed model) | %.0f req/s vs %.0f without: %.2f× | ≥ 0.9× | %s |\n",
		r.CatalogStreams, r.CatalogWith, r.CatalogWithout, ratio, verdict(ratio >= liveCatalogGoal))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// warmCatalog loads the catalog and a product page a few times, so that
// the idle RSS includes what serving pages keeps.
func warmCatalog(ctx context.Context, base string) error {
	for range 50 {
		for _, p := range []string{"/", "/products/compass"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+p, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	return nil
}

var benchKeyRE = regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`)

// checkout buys one unit of productID at base, as a new shopper.
func checkout(ctx context.Context, base string, productID int) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if st, err := post("/cart/items", url.Values{"product_id": {fmt.Sprint(productID)}, "quantity": {"1"}}); err != nil || st != http.StatusSeeOther {
		return fmt.Errorf("bench: add to cart: %d %v", st, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/checkout", nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := benchKeyRE.FindSubmatch(b)
	if m == nil {
		return errors.New("bench: no idempotency_key on /checkout")
	}
	st, err := post("/checkout", url.Values{"name": {"Bench"}, "email": {"bench@example.com"}, "address": {"1 Bench Street"}, "idempotency_key": {string(m[1])}})
	if err != nil || st != http.StatusSeeOther {
		return fmt.Errorf("bench: checkout: %d %v", st, err)
	}
	return nil
}

// streamSet is n open streams, each read in its own goroutine.
type streamSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// events receives, for every stock event a stream reads, when.
	events chan time.Time
	stock  atomic.Int64
	n      int
}

// openStreams opens n streams at base/events and returns once every one
// has its ready event.
func openStreams(ctx context.Context, base string, n int) (*streamSet, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &streamSet{cancel: cancel, events: make(chan time.Time, 4*n+16), n: n}
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	client := &http.Client{Transport: tr}
	ready := make(chan error, n)
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
			resp, err := client.Do(req)
			if err != nil {
				ready <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ready <- fmt.Errorf("bench: GET /events: %s", resp.Status)
				return
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 4096), 1<<20)
			first := true
			for sc.Scan() {
				line := sc.Text()
				switch {
				case first && line == "event: ready":
					first = false
					ready <- nil
				case line == "event: stock":
					s.stock.Add(1)
					select {
					case s.events <- time.Now():
					default:
					}
				}
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				s.close()
				return nil, err
			}
		case <-deadline:
			s.close()
			return nil, fmt.Errorf("bench: %d streams did not all open within 60s", n)
		}
	}
	return s, nil
}

// waitEvents waits until every stream read k stock events.
func (s *streamSet) waitEvents(ctx context.Context, k int) error {
	deadline := time.Now().Add(30 * time.Second)
	for s.stock.Load() < int64(k*s.n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %d of %d stock events arrived", s.stock.Load(), k*s.n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// nextEvent waits for the next stock event on every stream and returns
// when each arrived.
func (s *streamSet) nextEvent(ctx context.Context) ([]time.Time, error) {
	out := make([]time.Time, 0, s.n)
	deadline := time.After(10 * time.Second)
	for len(out) < s.n {
		select {
		case t := <-s.events:
			out = append(out, t)
		case <-deadline:
			return out, fmt.Errorf("bench: %d of %d streams got the event within 10s", len(out), s.n)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

func (s *streamSet) close() {
	s.cancel()
	s.wg.Wait()
}
