package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRedisDown: with the session store gone the catalog still answers with a
// notice, everything that needs the session is a clear 503, nothing takes
// longer than the store timeout, and service comes back by itself.
func TestRedisDown(t *testing.T) {
	shop := newShop(t, "redis")
	c := shop.client()
	c.add(1, 2)
	if err := shop.redis.Stop(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		method, path string
		status       int
		testid       string
	}{
		{"GET", "/", 200, "store-notice"},
		{"GET", "/products/compass", 200, "store-notice"},
		{"GET", "/cart", 503, "error-page"},
		{"GET", "/checkout", 503, "error-page"},
		{"GET", "/orders/aaaaaaaaaaaaaaaa", 503, "error-page"},
		{"POST", "/cart/items", 503, "error-page"},
		{"POST", "/cart/items/1", 503, "error-page"},
		{"GET", "/api/session", 503, ""},
		{"GET", "/readyz", 503, ""},
		{"GET", "/healthz", 200, ""},
	}
	for _, tt := range tests {
		start := time.Now()
		var r *response
		if tt.method == "POST" {
			r = c.post(tt.path, map[string][]string{"product_id": {"1"}, "quantity": {"1"}})
		} else {
			r = c.get(tt.path)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s %s took %v with Redis down", tt.method, tt.path, took)
		}
		if r.status != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, r.status, tt.status)
			continue
		}
		if tt.testid != "" && r.count(tt.testid) == 0 {
			t.Errorf("%s %s: no data-testid=%q", tt.method, tt.path, tt.testid)
		}
		if r.status == 503 && r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", tt.method, tt.path)
		}
		if tt.path == "/api/session" {
			var body map[string]any
			if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["error"] == nil {
				t.Errorf("/api/session with Redis down: %q is not a JSON error", r.body)
			}
		}
	}
	if r := c.get("/"); !strings.Contains(r.testid("store-notice"), "unavailable") {
		t.Errorf("catalog notice = %q", r.testid("store-notice"))
	} else if n := r.count("add-form"); n != 0 || r.count("product-card") < 24 {
		t.Errorf("catalog with the store away: %d add forms (want none), %d products", n, r.count("product-card"))
	}

	if err := shop.redis.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.waitFor("/readyz", http.StatusOK, "not ready 5 s after Redis came back")
	if s := c.session(); s.Cart.Count != 2 {
		t.Errorf("after the Redis restart the cart holds %d, want 2 (append-only persistence)", s.Cart.Count)
	}
	if r := c.add(2, 1); r.status != http.StatusSeeOther {
		t.Errorf("add after recovery: %d", r.status)
	}
}

// TestRedisStall: a Redis that accepts but never answers makes a request fail
// within about the store timeout, not hang.
func TestRedisStall(t *testing.T) {
	shop := newShop(t, "redis")
	c := shop.client()
	c.add(1, 1)
	// Let the pooled connections sit idle past the borrow test's threshold,
	// so each request also PINGs the stalled Redis before its command: the
	// two together must still fit in the store timeout.
	time.Sleep(1100 * time.Millisecond)
	if err := shop.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.redis.Resume() })
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/cart", 503},
		{"GET", "/", 200},
		{"GET", "/session", 503},
		{"GET", "/cluster", 200},
		{"GET", "/readyz", 503},
		{"POST", "/cart/items", 503},
	} {
		start := time.Now()
		var r *response
		if tt.method == "POST" {
			r = c.add(1, 1)
		} else {
			r = c.get(tt.path)
		}
		if took := time.Since(start); took > 1500*time.Millisecond {
			t.Errorf("%s %s took %v with Redis stalled; want about the 1 s store timeout", tt.method, tt.path, took)
		}
		if r.status != tt.want {
			t.Errorf("%s %s with Redis stalled: %d, want %d", tt.method, tt.path, r.status, tt.want)
		}
	}
	if err := shop.redis.Resume(); err != nil {
		t.Fatal(err)
	}
	c.waitFor("/cart", http.StatusOK, "no recovery 5 s after Redis resumed")
}

// waitFor polls path until it answers status, for at most 5 s.
func (c *client) waitFor(path string, status int, failure string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.get(path).status != status {
		if time.Now().After(deadline) {
			c.t.Fatal(failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
