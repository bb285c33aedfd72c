package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads GET /metrics into samples. The text format is simple enough
// to read by hand, and doing so checks what a scraper actually sees.
func scrape(t *testing.T, c *client) []sample {
	t.Helper()
	r := c.get("/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: Content-Type %q", ct)
	}
	var out []sample
	for _, line := range strings.Split(r.body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			s.name, rest = line[:i], line[j+1:]
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, _ := strings.Cut(kv, "=")
				uq, err := strconv.Unquote(v)
				if err != nil {
					t.Fatalf("label %s in %q: %v", kv, line, err)
				}
				s.labels[k] = uq
			}
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("value in %q: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` on the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// value is the sum over the samples named name whose labels include want;
// found is false when there is none.
func value(samples []sample, name string, want map[string]string) (v float64, found bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, w := range want {
			if s.labels[k] != w {
				ok = false
			}
		}
		if ok {
			v += s.value
			found = true
		}
	}
	return v, found
}

type L = map[string]string

// TestMetricsCount: a few requests per store and every series counts them:
// requests by route and status, latency, session store operations, lock
// waits, cart changes and orders, all labelled with the replica.
func TestMetricsCount(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()
			c.get("/")                             // no cookie: no store read
			if r := c.add(1, 2); r.status != 303 { // creates the session: one commit, no lock
				t.Fatalf("add: %d", r.status)
			}
			c.add(2, 1) // lock wait, find, commit
			c.get("/")  // find
			c.get("/")  // find
			c.get("/cart")
			c.get("/no-such-page") // a page too: it shows the ribbon, so it reads the session

			m := scrape(t, c)
			checks := []struct {
				name   string
				labels L
				want   float64
			}{
				{"shop_http_requests_total", L{"route": "GET /{$}", "status": "200", "replica": "shop1"}, 3},
				{"shop_http_requests_total", L{"route": "POST /cart/items", "status": "303"}, 2},
				{"shop_http_requests_total", L{"route": "GET /cart", "status": "200"}, 1},
				{"shop_http_requests_total", L{"route": "GET /", "status": "404"}, 1},
				{"shop_http_request_duration_seconds_count", L{"route": "GET /{$}"}, 3},
				{"shop_http_request_duration_seconds_count", L{"route": "POST /cart/items"}, 2},
				{"shop_session_store_duration_seconds_count", L{"op": "find", "store": kind}, 5},
				{"shop_session_store_duration_seconds_count", L{"op": "commit", "store": kind}, 2},
				{"shop_session_store_errors_total", L{"store": kind}, 0},
				{"shop_session_lock_wait_seconds_count", L{"store": kind}, lockWaits(kind)},
				{"shop_session_lock_timeouts_total", L{"store": kind}, 0},
				{"shop_cart_changes_total", L{"op": "add"}, 2},
				{"shop_cart_changes_total", L{"op": "set"}, 0},
				{"shop_orders_total", nil, 0},
			}
			for _, ch := range checks {
				got, found := value(m, ch.name, ch.labels)
				if !found || got != ch.want {
					t.Errorf("%s%v = %v (found %v), want %v", ch.name, ch.labels, got, found, ch.want)
				}
			}
			for _, s := range m {
				if s.labels["replica"] != "shop1" {
					t.Errorf("%s%v: replica label %q, want shop1", s.name, s.labels, s.labels["replica"])
					break
				}
			}
			if _, ok := value(m, "process_resident_memory_bytes", nil); !ok {
				t.Error("no process_resident_memory_bytes")
			}
			if _, ok := value(m, "go_memstats_mallocs_total", nil); !ok {
				t.Error("no go_memstats_mallocs_total")
			}
			if _, ok := value(m, "shop_redis_pool_active_connections", nil); ok != (kind == "redis") {
				t.Errorf("shop_redis_pool_active_connections present: %v in %s mode", ok, kind)
			}

			// An order, then the same checkout replayed: one order counted.
			r := c.get("/checkout")
			key, _ := r.doc.Find(`input[name="idempotency_key"]`).Attr("value")
			form := url.Values{"name": {"Ada Lovelace"}, "email": {"ada@example.com"}, "address": {"12 Analytical Row"}, "idempotency_key": {key}}
			for range 2 {
				if r := c.post("/checkout", form); r.status != http.StatusSeeOther {
					t.Fatalf("POST /checkout: %d %s", r.status, r.body)
				}
			}
			m = scrape(t, c)
			if got, _ := value(m, "shop_orders_total", nil); got != 1 {
				t.Errorf("shop_orders_total = %v after an order and its replay, want 1", got)
			}
			if got, _ := value(m, "shop_http_requests_total", L{"route": "GET /metrics", "status": "200"}); got != 1 {
				t.Errorf("GET /metrics counted %v times, want 1 (the first scrape)", got)
			}
		})
	}
}

// TestMetricsStoreErrors: a session store that does not answer shows as
// errors of the operation that failed, and as 503s by route.
func TestMetricsStoreErrors(t *testing.T) {
	shop := newShop(t, "redis")
	c := shop.client()
	c.add(1, 1)
	if err := shop.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := c.get("/cart"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("GET /cart with Redis down: %d", r.status)
	}
	m := scrape(t, c)
	if got, _ := value(m, "shop_session_store_errors_total", L{"op": "find", "store": "redis"}); got != 1 {
		t.Errorf("find errors = %v, want 1", got)
	}
	if got, _ := value(m, "shop_http_requests_total", L{"route": "GET /cart", "status": "503"}); got != 1 {
		t.Errorf("GET /cart 503s = %v, want 1", got)
	}
}

// lockWaits is how many lock waits the one locked write of TestMetricsCount
// makes: none with cookies, which have no lock.
func lockWaits(kind string) float64 {
	if kind == session.Cookie {
		return 0
	}
	return 1
}
