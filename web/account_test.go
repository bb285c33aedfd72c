package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

func (c *client) cookie(name string) string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

func (c *client) register(email, password string) *response {
	c.t.Helper()
	return c.post("/register", url.Values{"email": {email}, "password": {password}})
}

func (c *client) login(email, password string) *response {
	c.t.Helper()
	return c.post("/login", url.Values{"email": {email}, "password": {password}})
}

// TestAccounts: register, log out, log in; the token is renewed every time,
// the cart follows the account, and the anonymous cart is merged in.
func TestAccounts(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()
			c.add(1, 2)
			anon := c.cookie("session")

			r := c.register("  Ada@Example.com ", "correct horse battery")
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/account" {
				t.Fatalf("register: %d → %q: %s", r.status, r.header.Get("Location"), r.testid("error-form"))
			}
			registered := c.cookie("session")
			if registered == "" || registered == anon {
				t.Fatal("register did not renew the session token")
			}
			r = c.get("/account")
			if got := r.testid("account-email"); got != "ada@example.com" {
				t.Errorf("account email = %q, want the normalised ada@example.com", got)
			}
			if s := c.session(); s.Cart.Count != 2 {
				t.Errorf("the anonymous cart was not kept at register: %+v", s.Cart)
			}

			if r := c.post("/logout", nil); r.status != http.StatusSeeOther {
				t.Fatalf("logout: %d", r.status)
			}
			if c.cookie("session") == registered {
				t.Error("logout did not renew the token")
			}
			if r := c.get("/account"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
				t.Errorf("after logout /account: %d → %q", r.status, r.header.Get("Location"))
			}
			if s := c.session(); s.Cart.Count != 0 {
				t.Errorf("the account's cart stayed in the browser after logout: %+v", s.Cart)
			}

			// Shop anonymously again, then log in: the carts merge.
			c.add(1, 1)
			c.add(5, 3)
			before := c.cookie("session")
			if r := c.login("ADA@example.com", "correct horse battery"); r.status != http.StatusSeeOther {
				t.Fatalf("login: %d %s", r.status, r.testid("error-form"))
			}
			if c.cookie("session") == before {
				t.Error("login did not renew the token")
			}
			s := c.session()
			if s.Cart.Count != 6 {
				t.Errorf("merged cart holds %d, want 2+1 of product 1 and 3 of product 5 = 6: %+v", s.Cart.Count, s.Cart)
			}
		})
	}
}

// TestSessionFixation: a token planted in the victim's browser before login
// is worth nothing after it.
func TestSessionFixation(t *testing.T) {
	shop := newShop(t, "redis")
	attacker := shop.client()
	attacker.add(3, 1) // a real session the attacker knows
	planted := attacker.cookie("session")

	victim := shop.client()
	u, _ := url.Parse(victim.base)
	victim.http.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: planted, Path: "/"}})
	victim.register("victim@example.com", "a long secret passphrase")
	if victim.cookie("session") == planted {
		t.Fatal("the planted token survived the login")
	}
	if r := attacker.get("/account"); r.status != http.StatusSeeOther {
		t.Errorf("the attacker's planted token reached the victim's account: %d", r.status)
	}
	if r := attacker.get("/api/session"); strings.Contains(r.body, `"logged_in":true`) {
		t.Errorf("the planted token is logged in: %s", r.body)
	}
}

func TestAccountFormErrors(t *testing.T) {
	shop := newShop(t, "memory")
	c := shop.client()
	c.register("taken@example.com", "0123456789")
	other := shop.client()
	tests := []struct {
		path, email, password string
		status                int
		testid, mention       string
	}{
		{"/register", "new@example.com", "short", 422, "error-password", "at least 10"},
		{"/register", "new@example.com", strings.Repeat("x", 73), 422, "error-password", "at most 72 bytes"},
		{"/register", "not-an-email", "0123456789", 422, "error-email", "address"},
		{"/register", "TAKEN@example.com", "0123456789", 422, "error-email", "log in instead"},
		{"/register", "", "", 422, "error-email", ""},
		{"/login", "taken@example.com", "wrong password", 422, "error-form", "wrong"},
		{"/login", "nobody@example.com", "0123456789", 422, "error-form", "wrong"},
		{"/login", "taken@example.com", "", 422, "error-password", "required"},
	}
	for _, tt := range tests {
		r := other.post(tt.path, url.Values{"email": {tt.email}, "password": {tt.password}})
		if r.status != tt.status {
			t.Errorf("POST %s %q: %d, want %d", tt.path, tt.email, r.status, tt.status)
			continue
		}
		if got := r.testid(tt.testid); !strings.Contains(got, tt.mention) {
			t.Errorf("POST %s %q: %s = %q, want it to mention %q", tt.path, tt.email, tt.testid, got, tt.mention)
		}
		if strings.Contains(r.body, tt.password) && len(tt.password) > 5 {
			t.Errorf("POST %s: the password was echoed into the page", tt.path)
		}
	}
	if _, err := shop.db.AccountByEmail(context.Background(), "new@example.com"); err == nil {
		t.Error("an invalid registration created an account")
	}
}

// twoReplicas runs two replicas on one database; with redis they share one
// Redis (stateless), with memory each keeps its own sessions and limits.
func twoReplicas(t *testing.T, kind string, lock bool) (*testShop, *testShop) {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := &testShop{t: t, db: db}
	b := &testShop{t: t, db: db}
	if kind == session.Redis {
		a.redis = testenv.StartRedis(t)
		b.redis = a.redis
	}
	sa, sb := a.parts(kind, "shop1", lock), b.parts(kind, "shop2", lock)
	return a.serve(sa, db, "shop1"), b.serve(sb, db, "shop2")
}

// TestLoginRateLimit: five failures per account and address, then 429. In
// redis mode the count is shared by the replicas; in memory mode each replica
// counts alone, so round robin between two replicas doubles the allowance.
func TestLoginRateLimit(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			a, b := twoReplicas(t, kind, true)
			a.client().register("victim@example.com", "the real password!")
			ca, cb := a.client(), b.client()
			statuses := []int{}
			for i := 0; i < 10; i++ { // round robin: a, b, a, b, ...
				c := ca
				if i%2 == 1 {
					c = cb
				}
				statuses = append(statuses, c.login("victim@example.com", "guess number "+string(rune('0'+i))).status)
			}
			blocked := 0
			for _, s := range statuses {
				if s == http.StatusTooManyRequests {
					blocked++
				}
			}
			switch kind {
			case session.Redis:
				// Attempts 1-5 fail and count, 6-10 are refused whichever replica gets them.
				if blocked != 5 {
					t.Errorf("redis: %d of 10 guesses refused (%v), want 5: the limit must hold across replicas", blocked, statuses)
				}
			case session.Memory:
				// Each replica saw 5 failures: every guess was checked. The trap.
				if blocked != 0 {
					t.Errorf("memory: %d of 10 guesses refused (%v), want 0: each replica counts alone", blocked, statuses)
				}
				if r := ca.login("victim@example.com", "guess 11"); r.status != http.StatusTooManyRequests {
					t.Errorf("memory: the 6th failure on one replica: %d, want 429", r.status)
				}
			}
			// The right password is refused too while blocked (no oracle).
			if kind == session.Redis {
				if r := cb.login("victim@example.com", "the real password!"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
					t.Errorf("right password while blocked: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
				}
			}
		})
	}
}

// TestOrderOwnership: an order is visible to the account or anonymous session
// that placed it, and to nobody else.
func TestOrderOwnership(t *testing.T) {
	shop := newShop(t, "memory")
	checkout := func(c *client) string {
		c.t.Helper()
		c.add(2, 1)
		key, _ := c.get("/checkout").doc.Find(`input[name="idempotency_key"]`).Attr("value")
		r := c.post("/checkout", url.Values{"name": {"Owner"}, "email": {"owner@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {key}})
		if r.status != http.StatusSeeOther {
			c.t.Fatalf("checkout: %d", r.status)
		}
		return r.header.Get("Location")
	}
	alice := shop.client()
	alice.register("alice@example.com", "alice's long password")
	aliceOrder := checkout(alice)
	anon := shop.client()
	anonOrder := checkout(anon)
	bob := shop.client()
	bob.register("bob@example.com", "bob's long password")

	for _, tt := range []struct {
		who   string
		c     *client
		order string
		want  int
	}{
		{"alice, her order", alice, aliceOrder, 200},
		{"bob, alice's order", bob, aliceOrder, 404},
		{"anonymous, alice's order", anon, aliceOrder, 404},
		{"the anonymous owner", anon, anonOrder, 200},
		{"bob, the anonymous order", bob, anonOrder, 404},
		{"a new browser, the anonymous order", shop.client(), anonOrder, 404},
	} {
		if r := tt.c.get(tt.order); r.status != tt.want {
			t.Errorf("%s: %d, want %d", tt.who, r.status, tt.want)
		}
	}
	// Alice's order history is hers; after logout the browser sees it no more.
	if r := alice.get("/account"); r.count("order-row") != 1 {
		t.Errorf("alice's history has %d orders, want 1", r.count("order-row"))
	}
	alice.post("/logout", nil)
	if r := alice.get(aliceOrder); r.status != 404 {
		t.Errorf("after logout alice's order: %d, want 404", r.status)
	}
}

// TestDoubleCheckoutAcrossReplicas: one form submitted to two replicas at the
// same moment (a double click that nginx spread, a retry after failover)
// places one order and takes stock once. With the session lock off both
// requests reach the database; its UNIQUE key decides.
func TestDoubleCheckoutAcrossReplicas(t *testing.T) {
	for _, lock := range []bool{true, false} {
		name := map[bool]string{true: "lock on", false: "lock off"}[lock]
		t.Run(name, func(t *testing.T) {
			a, b := twoReplicas(t, session.Redis, lock)
			ca := a.client()
			ca.add(7, 2)
			key, _ := ca.get("/checkout").doc.Find(`input[name="idempotency_key"]`).Attr("value")
			cb := b.client()
			cb.http.Jar = ca.http.Jar // the same browser, two replicas
			before, _ := a.db.Product(context.Background(), 7)

			form := url.Values{"name": {"Grace"}, "email": {"grace@example.com"}, "address": {"1 Compiler Way"}, "idempotency_key": {key}}
			var wg sync.WaitGroup
			results := make([]*response, 2)
			start := make(chan struct{})
			for i, c := range []*client{ca, cb} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					results[i] = c.post("/checkout", form)
				}()
			}
			close(start)
			wg.Wait()
			for i, r := range results {
				if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/orders/") {
					t.Fatalf("submit %d: %d → %q", i, r.status, r.header.Get("Location"))
				}
			}
			if results[0].header.Get("Location") != results[1].header.Get("Location") {
				t.Errorf("two orders: %s and %s", results[0].header.Get("Location"), results[1].header.Get("Location"))
			}
			after, _ := a.db.Product(context.Background(), 7)
			if before.Stock-after.Stock != 2 {
				t.Errorf("stock %d → %d, want taken once (2)", before.Stock, after.Stock)
			}
		})
	}
}

// TestCookieFlags: HttpOnly, SameSite=Lax, Path=/; Secure exactly when the
// browser used TLS at a trusted nginx.
func TestCookieFlags(t *testing.T) {
	shop := newShop(t, "memory")
	post := func(proto string) *http.Cookie {
		req, _ := http.NewRequest(http.MethodPost, shop.srv.URL+"/cart/items", strings.NewReader("product_id=1&quantity=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		r := shop.client().do(req)
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			if c.Name == "session" {
				return c
			}
		}
		t.Fatalf("no session cookie (proto %q)", proto)
		return nil
	}
	c := post("")
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge <= 0 {
		t.Errorf("plain HTTP cookie: %+v", c)
	}
	if c := post("https"); !c.Secure {
		t.Error("TLS at a trusted proxy (loopback) but the cookie is not Secure")
	}

	// The same header from an address that is not a trusted proxy is ignored.
	db, _ := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	defer db.Close()
	other := &testShop{t: t, db: db}
	srv := other.newServer(other.parts(session.Memory, "shop1", true), db, web.Config{Replica: "shop1", TrustedProxies: mustPrefixes("10.9.0.0/16")})
	other.srv = newHTTPTestServer(t, srv)
	shop = other
	if c := post("https"); c.Secure {
		t.Error("X-Forwarded-Proto from an untrusted address made the cookie Secure")
	}
}

func mustPrefixes(cidrs ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, c := range cidrs {
		ps = append(ps, netip.MustParsePrefix(c))
	}
	return ps
}

func newHTTPTestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
