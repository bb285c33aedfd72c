package bench

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/statelab/shop/state/price"
)

// TestWalk: each shopper walks catalog, product, add, cart, then checks
// out (its first walk, and every other one after) or takes the item it
// added out again, with its own cookie; the shoppers start at different
// steps, so every step is in every stretch of the mix; every checkout
// carries a fresh idempotency key; and walkStep names each request's step
// back.
func TestWalk(t *testing.T) {
	shoppers := []shopper{{cookie: "session=a"}, {cookie: "session=b"}, {cookie: "session=c"}, {cookie: "session=d"}, {cookie: "session=e"}, {cookie: "session=f"}}
	w := newWalk("http://shop", "espresso-cup", shoppers, seedStock(100))
	byShopper := map[string][]string{}
	added := map[string]string{}
	keys := map[string]bool{}
	for i := range 120 {
		var tg vegeta.Target
		if err := w.target(&tg); err != nil {
			t.Fatal(err)
		}
		step := walkStep(tg.Method, tg.URL)
		if step == "" {
			t.Fatalf("request %d %s %s: no step", i, tg.Method, tg.URL)
		}
		c := tg.Header.Get("Cookie")
		byShopper[c] = append(byShopper[c], step)
		if i%len(shoppers) == len(shoppers)-1 {
			seen := map[string]bool{}
			for _, steps := range byShopper {
				last := steps[len(steps)-1]
				if last == PageRemove {
					last = PageCheckout
				}
				seen[last] = true
			}
			if len(seen) != len(walkSteps) {
				t.Errorf("one pass over the shoppers takes steps %v; want all %d", seen, len(walkSteps))
			}
		}
		form, _ := url.ParseQuery(string(tg.Body))
		switch step {
		case PageCheckout:
			if !validKey(form.Get("idempotency_key")) || keys[form.Get("idempotency_key")] {
				t.Errorf("checkout %d: %q; want a fresh valid idempotency key", i, tg.Body)
			}
			keys[form.Get("idempotency_key")] = true
		case PageAdd:
			if tg.Method != "POST" || tg.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || form.Get("quantity") != "1" {
				t.Errorf("add %d: %s %v %q", i, tg.Method, tg.Header, tg.Body)
			}
			added[c] = form.Get("product_id")
		case PageRemove:
			if tg.URL != "http://shop/cart/items/"+added[c] || form.Get("quantity") != "0" {
				t.Errorf("remove %d: %s %q; want the item %s added in this walk, quantity 0", i, tg.URL, tg.Body, added[c])
			}
		}
	}
	for c, steps := range byShopper {
		first := 0
		for i, s := range walkSteps {
			if s == steps[0] {
				first = i
			}
		}
		var ends []string
		for i, s := range steps {
			want := walkSteps[(first+i)%len(walkSteps)]
			if s == PageRemove || s == PageCheckout {
				ends = append(ends, s)
				want = s
			}
			if s != want {
				t.Errorf("%s: step %d is %s, want %s (walk %v)", c, i, s, want, steps)
				break
			}
		}
		for i, e := range ends {
			if want := []string{PageCheckout, PageRemove}[i%2]; e != want {
				t.Errorf("%s: walk %d ends with %s, want %s (%v)", c, i, e, want, ends)
				break
			}
		}
	}
	if len(byShopper) != len(shoppers) || len(keys) == 0 {
		t.Errorf("%d shoppers walked, %d checkouts", len(byShopper), len(keys))
	}
}

// validKey is the shop's rule for an idempotency key (web/checkout.go).
func validKey(k string) bool {
	return len(k) >= 16 && len(k) <= 64 && strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

func seedStock(n int) map[int]int {
	stock := map[int]int{}
	for p := 1; p <= products; p++ {
		stock[p] = n
	}
	return stock
}

// TestWalkStock: the units the checkouts take follow every product in
// turn, no more of one than its stock less the warm carts' reserve; past
// that the walk stops with a message instead of measuring sold-out pages.
func TestWalkStock(t *testing.T) {
	stock := seedStock(10)
	stock[3] = 4 // less than the others: it drops out first
	shoppers := make([]shopper, 48)
	for i := range shoppers {
		shoppers[i].cookie = fmt.Sprintf("session=%d", i)
	}
	w := newWalk("http://shop", "x", shoppers, stock)
	pending := map[string]int{} // shopper → the product its walk added
	bought := map[int]int{}
	var order []int
	var err error
	for err == nil {
		var tg vegeta.Target
		if err = w.target(&tg); err != nil {
			break
		}
		c := tg.Header.Get("Cookie")
		switch walkStep(tg.Method, tg.URL) {
		case PageAdd:
			form, _ := url.ParseQuery(string(tg.Body))
			pending[c], _ = strconv.Atoi(form.Get("product_id"))
		case PageCheckout:
			if p := pending[c]; p != 0 {
				bought[p]++
				order = append(order, p)
			}
			delete(pending, c)
		case PageRemove:
			delete(pending, c)
		}
	}
	// 48 warm carts hold 2 units of each product: a reserve of 4, so 6
	// units of each but product 3; the walks still under way when the
	// stock ran out have not checked theirs out.
	for p, n := range bought {
		if n > 6 || p == 3 {
			t.Errorf("%d units of product %d checked out; want at most %d", n, p, max(0, stock[p]-4))
		}
	}
	if !strings.Contains(err.Error(), "stock") || w.sold != 23*6 || len(order) < 23*6-len(shoppers) {
		t.Errorf("%d units sold, %d checked out (%v): %v", w.sold, len(order), bought, err)
	}
	if len(order) < 3 || order[0] != 1 || order[1] != 2 || order[2] != 4 {
		t.Errorf("the checkouts begin %v; want the products in turn", order[:min(3, len(order))])
	}
}

// TestReplaceSection: an -only profiles run replaces its own section of
// the report and nothing else, or puts it before the memory table the
// first time; the hand-written analysis stays.
func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\n## Pages\n\npages\n\n" + memoryHeading + "\n\nmemory\n\n" + analysisMarker + "\nmine\n"
	first := replaceSection(doc, profilesHeading+"\n\nold price\n\n", memoryHeading)
	want := "# Benchmarks\n\n## Pages\n\npages\n\n" + profilesHeading + "\n\nold price\n\n" + memoryHeading + "\n\nmemory\n\n" + analysisMarker + "\nmine\n"
	if first != want {
		t.Fatalf("first time:\n%s\nwant:\n%s", first, want)
	}
	again := replaceSection(first, profilesHeading+"\n\nnew price\n\n", memoryHeading)
	if want := strings.Replace(want, "old price", "new price", 1); again != want {
		t.Errorf("again:\n%s\nwant:\n%s", again, want)
	}
	last := replaceSection("# B\n\n"+profilesHeading+"\n\nold\n", profilesHeading+"\n\nnew\n")
	if last != "# B\n\n"+profilesHeading+"\n\nnew\n" {
		t.Errorf("as the last section: %q", last)
	}
}

// TestPriceOf: the figures /state embeds are the table's: stateless over
// stateful, each replica's mean RSS, and the shared parts named.
func TestPriceOf(t *testing.T) {
	mk := func(profile string, rounds []float64, p99 time.Duration, redis, s3 uint64) ProfileMeasurement {
		return ProfileMeasurement{Profile: profile, LB: "x", Measurement: Measurement{Throughput: rounds[1], Rounds: rounds, OpenP50: time.Millisecond, OpenP99: p99, Rate: 200, Workers: 32},
			Memory: ClusterMemory{Replicas: map[string]uint64{"shop1": 20 << 20, "shop2": 30 << 20, "shop3": 40 << 20}, Nginx: 10 << 20, Redis: redis, ObjectStore: s3}}
	}
	ms := []ProfileMeasurement{mk(ProfileStateful, []float64{100, 200, 300}, 9876*time.Microsecond, 0, 0),
		mk(ProfileStatefulRedis, []float64{90, 180, 270}, 10*time.Millisecond, 12<<20, 0),
		mk(ProfileStatelessNoRiver, []float64{80, 160, 240}, 10*time.Millisecond, 12<<20, 37<<20),
		mk(ProfileStateless, []float64{50, 150, 240}, 14*time.Millisecond, 12<<20, 37<<20)}
	p := priceOf(ms, Machine{NProc: 2, CPU: "Test"}, time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC), Options{Workers: 32, Rate: 200, Command: "bench"})
	full, ok1 := p.Find(ProfileStateful)
	less, ok2 := p.Find(ProfileStateless)
	if !ok1 || !ok2 || !p.Complete() || len(p.Profiles) != 2 {
		t.Fatalf("priceOf = %+v", p)
	}
	// Round-by-round ratios 0.5, 0.75, 0.8: the median.
	if p.ThroughputRatio != 0.75 || full.ReplicaRSS != 30<<20 || full.P99Ms != 9.88 || less.Throughput != 150 {
		t.Errorf("priceOf = %+v", p)
	}
	if len(full.Shared) != 0 || len(less.Shared) != 2 || less.Shared[0] != (price.Part{Name: "redis", RSS: 12 << 20}) || less.TotalRSS != (100+12+37)<<20 {
		t.Errorf("shared parts: stateful %+v, stateless %+v (total %d)", full.Shared, less.Shared, less.TotalRSS)
	}
	h, rows := profilesRows(ms)
	if len(rows) != 4 || len(rows[3]) != len(h) || rows[3][2] != "75%" || rows[0][6] != "–" || !strings.HasPrefix(rows[1][0], "stateful, sessions in Redis") {
		t.Errorf("table %v %v", h, rows)
	}
	if got, want := priceSplit(ms), "sessions in Redis alone keep 90%; the rest of stateless without River (round robin, live events through Redis, Redis and versitygw on the same cores) 80%; River's queue on top, the whole stateless profile, 75%."; !strings.HasSuffix(got, want) {
		t.Errorf("priceSplit = %q; want it to end %q", got, want)
	}
}
