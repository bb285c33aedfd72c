package web_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()
			tests := []struct {
				path    string
				status  int
				testids map[string]int // data-testid → at least this many
				body    string         // substring
			}{
				{"/", 200, map[string]int{"product-card": 24, "cart-count": 1, "ribbon": 1, "add-form": 24}, ""},
				{"/?category=games", 200, map[string]int{"product-card": 6}, "Games &amp; Puzzles"},
				{"/?category=nope", 404, map[string]int{"error-page": 1, "ribbon": 1}, ""},
				{"/products/compass", 200, map[string]int{"product": 1, "stock": 1, "add-form": 1, "cart-count": 1}, "Baseplate Compass"},
				{"/products/nope", 404, map[string]int{"error-page": 1}, ""},
				{"/products/..%2f..%2fetc", 404, nil, ""},
				{"/cart", 200, map[string]int{"cart-empty": 1, "cart-count": 1}, ""},
				{"/checkout", 303, nil, ""},
				{"/orders/aaaaaaaaaaaaaaaa", 404, map[string]int{"error-page": 1}, ""},
				{"/api/session", 200, nil, `"cart":{"count":0`},
				{"/healthz", 200, nil, "ok"},
				{"/readyz", 200, nil, "ready"},
				{"/no/such/page", 404, map[string]int{"error-page": 1, "ribbon": 1}, ""},
				{"/static/shop.css", 200, nil, ".ribbon"},
				{"/static/img/products/compass.svg", 200, nil, "<svg"},
				{"/static/nope.css", 404, nil, ""},
			}
			for _, tt := range tests {
				r := c.get(tt.path)
				if r.status != tt.status {
					t.Errorf("GET %s: status %d, want %d", tt.path, r.status, tt.status)
					continue
				}
				if got := r.header.Get("X-Served-By"); got != "shop1" {
					t.Errorf("GET %s: X-Served-By %q", tt.path, got)
				}
				if got := r.header.Get("X-Session-Store"); got != kind {
					t.Errorf("GET %s: X-Session-Store %q, want %q", tt.path, got, kind)
				}
				for id, n := range tt.testids {
					if got := r.count(id); got < n {
						t.Errorf("GET %s: %d elements data-testid=%q, want ≥ %d", tt.path, got, id, n)
					}
				}
				if !strings.Contains(r.body, tt.body) {
					t.Errorf("GET %s: body lacks %q", tt.path, tt.body)
				}
				if sessionCookieSet(r) {
					t.Errorf("GET %s set a session cookie without changing the session", tt.path)
				}
			}
			// The ribbon names the replica and the store on every page.
			r := c.get("/")
			if got := r.testid("served-by"); got != "shop1" {
				t.Errorf("ribbon served-by = %q", got)
			}
			if got := r.testid("session-store"); got != kind {
				t.Errorf("ribbon session-store = %q", got)
			}
			if got := r.testid("cart-count"); got != "0" {
				t.Errorf("cart-count = %q", got)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("CSP = %q", csp)
			}
			if r.header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
			}
		})
	}
}

func TestWrongMethod(t *testing.T) {
	c := newShop(t, "memory").client()
	req, _ := http.NewRequest(http.MethodDelete, c.base+"/cart", nil)
	if r := c.do(req); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /cart: %d, want 405", r.status)
	}
}

// TestStickyRouteCookieSurvivesSessionCookie: behind nginx's sticky policy a
// POST that creates a session must carry both cookies, or the browser is not
// pinned to the replica that holds its new session.
func TestStickyRouteCookieSurvivesSessionCookie(t *testing.T) {
	shop := newShop(t, "memory")
	c := shop.client()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/cart/items", strings.NewReader("product_id=1&quantity=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Shop-Sticky", "1")
	r := c.do(req)
	names := map[string]bool{}
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		names[ck.Name] = true
	}
	for _, want := range []string{"shop_route", "session", "flash"} {
		if !names[want] {
			t.Errorf("POST with X-Shop-Sticky: no %s cookie among %v", want, names)
		}
	}
}
