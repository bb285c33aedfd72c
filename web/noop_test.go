package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// setsSessionState reports whether a response hands out a session: the
// session cookie or its session_home companion.
func setsSessionState(r *response) bool {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "session" || c.Name == "session_home" {
			return true
		}
	}
	return false
}

// TestNoOpWritesCreateNothing: a write that changes nothing (logging out
// without a session, removing what the cart does not hold, setting the
// quantity it already has, checking out an empty cart) creates no session
// and sets no session cookie, in every store.
func TestNoOpWritesCreateNothing(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()
			checkout := url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Loop Road"}, "idempotency_key": {"0123456789abcdef0123"}}
			for _, tt := range []struct {
				name   string
				do     func() *response
				status int
			}{
				{"cookieless POST /logout", func() *response { return c.post("/logout", nil) }, http.StatusSeeOther},
				{"cookieless remove of a line not in the cart", func() *response { return c.post("/cart/items/1", url.Values{"quantity": {"0"}}) }, http.StatusSeeOther},
				{"cookieless checkout of an empty cart", func() *response { return c.post("/checkout", checkout) }, http.StatusUnprocessableEntity},
			} {
				r := tt.do()
				if r.status != tt.status || setsSessionState(r) {
					t.Errorf("%s: %d, sets a session cookie: %v; want %d and none", tt.name, r.status, setsSessionState(r), tt.status)
				}
			}
			if c.cookieValue("session") != "" {
				t.Fatal("the browser holds a session after writes that changed nothing")
			}
			if shop.redis != nil {
				if keys, _ := redis.Strings(redisDo(t, shop.redis.Addr(), "", "KEYS", "*session:*"), nil); len(keys) != 0 {
					t.Errorf("Redis holds %v after writes that changed nothing", keys)
				}
			}

			// With a session: setting the quantity the line already has, or
			// removing a line it does not hold, writes nothing.
			c.add(1, 2)
			rev := c.session().Cart.Rev
			for _, form := range []url.Values{{"quantity": {"2"}}} {
				if r := c.post("/cart/items/1", form); r.status != http.StatusSeeOther || setsSessionState(r) {
					t.Errorf("set quantity 2 of a line holding 2: %d, sets the session cookie: %v", r.status, setsSessionState(r))
				}
			}
			if r := c.post("/cart/items/3", url.Values{"quantity": {"0"}}); r.status != http.StatusSeeOther || setsSessionState(r) {
				t.Errorf("remove a line not in the cart: %d, sets the session cookie: %v", r.status, setsSessionState(r))
			}
			if got := c.session().Cart; got.Rev != rev || got.Count != 2 {
				t.Errorf("after no-op writes the cart is rev %d count %d, want rev %d count 2", got.Rev, got.Count, rev)
			}
		})
	}
}

// TestMemorySessionBound: the memory store keeps at most its bound; a new
// session past it evicts the least recently used, whose browser then
// gets a fresh session and is told why (the inspector says so, and what
// bounds memory sessions).
func TestMemorySessionBound(t *testing.T) {
	shop := &testShop{t: t}
	shop.db = newShop(t, session.Memory).db
	p := replicaParts{metrics: web.NewMetrics("shop1", session.Memory)}
	p.sessions = session.NewMemory(session.Options{Lock: true, MaxMemorySessions: 2, Observer: p.metrics})
	t.Cleanup(func() { p.sessions.Close() })
	shop.serve(p, shop.db, "shop1")

	oldest, recent, newest := shop.client(), shop.client(), shop.client()
	oldest.add(1, 1)
	recent.add(2, 1)
	recent.get("/cart") // recent is used after oldest
	newest.add(3, 1)    // past the bound of 2: evicts oldest

	if got := recent.session().Cart.Count; got != 1 {
		t.Errorf("the recently used session lost its cart: count %d", got)
	}
	if got := newest.session().Cart.Count; got != 1 {
		t.Errorf("the new session: count %d", got)
	}
	r := oldest.get("/session")
	if got := oldest.session().Cart.Count; got != 0 {
		t.Errorf("the least recently used session survived the bound: count %d", got)
	}
	if got := r.testid("inspector-unknown"); !strings.Contains(got, "evicted") {
		t.Errorf("the inspector does not say the session was evicted: %q", got)
	}
	if got := r.testid("inspector-capacity"); !strings.Contains(got, "bounded by shop1's RAM") || !strings.Contains(got, "at most 2") {
		t.Errorf("the inspector's capacity says %q", got)
	}
}
