package web_test

// Issue 22, items 1 and 3: a checkout replay leaves the cart without the
// order's lines, and an add sent twice with its idempotency key adds once,
// in every store, against real SQLite and a real Redis.

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// durableReplica is a second replica over shop's Redis and database whose
// session writes need WAIT 1: with no Redis replica, WAIT refuses every
// one, and the store takes each back. user and password log in to Redis
// ("" for the default user); lock is -session-lock.
func (ts *testShop) durableReplica(user, password string, lock bool, logs *testenv.Buffer) *httptest.Server {
	ts.t.Helper()
	rc := redisclient.New(redisclient.Config{Addr: ts.redis.Addr(), Username: user, Password: password})
	metrics := web.NewMetrics("durable", session.Redis)
	sessions := session.NewRedis(rc, session.Options{Lock: lock, WaitReplicas: 1, Observer: metrics})
	ts.t.Cleanup(func() { sessions.Close(); rc.Close() })
	cfg := web.Config{Replica: "durable", Metrics: metrics, // and the shared services, as main hands them over
		Limiter: redisclient.NewSharedLimiter(rc, redisclient.Limits{}, nil), Presence: redisclient.NewPresence(rc), Board: redisclient.NewBoard(rc)}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := httptest.NewServer(web.NewServer(cfg, ts.db, sessions, nil, diskPhotos(ts.t, "durable")))
	ts.t.Cleanup(srv.Close)
	return srv
}

// addForm is the add-to-cart form of a product page, as a browser sends it.
func addForm(c *client, slug string) url.Values {
	c.t.Helper()
	form := url.Values{}
	doc := c.get("/products/" + slug).doc
	for _, name := range []string{"product_id", "quantity", "idempotency_key"} {
		v, ok := doc.Find(`form[data-testid="add-form"] input[name="` + name + `"]`).Attr("value")
		if !ok {
			c.t.Fatalf("the add form of %s has no %s", slug, name)
		}
		form.Set(name, v)
	}
	return form
}

// TestCheckoutReplayEmptiesCart: whichever way a checkout form reaches the
// shop again after its order committed, the cart ends without the order's
// lines, so no second checkout orders them again. Issue 22, item 1.
func TestCheckoutReplayEmptiesCart(t *testing.T) {
	t.Run("503 after the commit, then a retry", func(t *testing.T) {
		t.Parallel()
		shop := newShop(t, session.Redis)
		durable := shop.durableReplica("", "", true, nil)
		c := shop.client()
		form := checkoutForm(c) // one of product 1
		c.add(2, 3)

		r := c.at(durable.URL).post("/checkout", form)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("checkout whose session write WAIT refused: %d, want 503 with Retry-After", r.status)
		}
		order, err := shop.db.OrderByKey(t.Context(), form.Get("idempotency_key"))
		if err != nil {
			t.Fatalf("the order was not committed before the refused session write: %v", err)
		}
		if msg := r.testid("error-message"); !strings.Contains(msg, "may already") {
			t.Errorf("the 503 after the order committed says %q; want that the order may already exist", msg)
		}
		if href, _ := r.doc.Find(`[data-testid="error-link"]`).Attr("href"); href != "/orders/"+order.ID {
			t.Errorf("the 503 after the order committed links %q, want /orders/%s", href, order.ID)
		}
		if n := c.session().Cart.Count; n != 4 {
			t.Fatalf("after the refused write the cart holds %d, want 4 (the write was taken back)", n)
		}

		retry := c.post("/checkout", form)
		if retry.status != http.StatusSeeOther || retry.header.Get("Location") != "/orders/"+order.ID {
			t.Fatalf("the retry: %d → %q, want 303 → /orders/%s", retry.status, retry.header.Get("Location"), order.ID)
		}
		if got := c.session().Cart; got.Count != 0 {
			t.Errorf("after the retry the cart holds %v; want it empty (both lines were ordered)", got.Items)
		}
		if r := c.get("/checkout"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/cart" {
			t.Errorf("a fresh checkout after the retry: %d → %q, want 303 → /cart (nothing left to order)", r.status, r.header.Get("Location"))
		}

		// Logged in, the page links the account's order list too, and the
		// retry empties the cart saved with the account as well.
		acct := shop.client()
		if r := acct.register("orders@example.com", "a long enough password"); r.status != http.StatusSeeOther {
			t.Fatalf("register: %d", r.status)
		}
		form = checkoutForm(acct)
		r = acct.at(durable.URL).post("/checkout", form)
		var links []string
		r.doc.Find(`[data-testid="error-link"]`).Each(func(_ int, s *goquery.Selection) {
			href, _ := s.Attr("href")
			links = append(links, href)
		})
		if r.status != http.StatusServiceUnavailable || !slices.Contains(links, "/account") {
			t.Errorf("a logged-in checkout whose session write was refused: %d linking %v; want 503 linking /account", r.status, links)
		}
		if retry := acct.post("/checkout", form); retry.status != http.StatusSeeOther {
			t.Fatalf("the logged-in retry: %d", retry.status)
		}
		if got := acct.session().Cart.Count; got != 0 {
			t.Errorf("after the logged-in retry the cart holds %d, want 0", got)
		}
		a, err := shop.db.AccountByEmail(t.Context(), "orders@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if saved, err := shop.db.SavedCart(t.Context(), a.ID); err != nil || strings.Contains(string(saved), `"product_id"`) {
			t.Errorf("the account's saved cart after the retry: %s (%v); want no lines", saved, err)
		}
	})

	t.Run("cookie: resent with the older cookie", func(t *testing.T) {
		t.Parallel()
		shop := newShop(t, session.Cookie)
		c := shop.client()
		form := checkoutForm(c)
		before := c.cookieValue("session")
		first := c.post("/checkout", form)
		if first.status != http.StatusSeeOther {
			t.Fatalf("checkout: %d", first.status)
		}
		// The browser lost the answer and sends the form again with the
		// cookie it still has.
		c.setCookie("session", before)
		again := c.post("/checkout", form)
		if again.status != http.StatusSeeOther || again.header.Get("Location") != first.header.Get("Location") {
			t.Fatalf("the resend: %d → %q, want 303 → %q", again.status, again.header.Get("Location"), first.header.Get("Location"))
		}
		if got := c.session().Cart; got.Count != 0 {
			t.Errorf("after the resend with the older cookie the cart holds %v; want it empty", got.Items)
		}
		// A cart that already went through this checkout is left alone by a
		// replay: what the shopper adds afterwards stays.
		c.add(1, 2)
		if r := c.post("/checkout", form); r.status != http.StatusSeeOther {
			t.Fatalf("a third submit: %d", r.status)
		}
		if got := c.session().Cart.Count; got != 2 {
			t.Errorf("a replay of a checkout this cart already saw took the new lines: count %d, want 2", got)
		}
	})

	t.Run("session lock off, parallel submits", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "shop.db")
		shop := newShopAt(t, path)
		shop.srv.Close()
		shop.serve(shop.parts(session.Memory, "shop1", false), shop.db, "shop1")
		c := shop.client()
		form := checkoutForm(c)
		c.add(3, 2)

		// Hold the database so that every submit reads the full cart
		// before any of them commits: the race, made certain.
		release := testenv.HoldSQLite(t, path)
		const n = 4
		var wg sync.WaitGroup
		results := make([]*response, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.post("/checkout", form)
			}()
		}
		time.Sleep(500 * time.Millisecond) // well inside the shop's 1.5 s busy timeout
		release()
		wg.Wait()
		for i, r := range results {
			if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/orders/") {
				t.Errorf("submit %d: %d → %q, want 303 to the order", i, r.status, r.header.Get("Location"))
			}
		}
		if got := c.session().Cart; got.Count != 0 {
			t.Errorf("after %d parallel submits of one form the cart holds %v; want it empty", n, got.Items)
		}
	})
}

// TestAddIdempotencyKey: the add forms carry an idempotency key; the same
// key twice adds once in every store, a request without a key adds as
// before, a malformed key is a 422 naming the field, and a cookie session
// keeps its keys within the cookie's 4 KB. Issue 22, item 3.
func TestAddIdempotencyKey(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			shop := newShop(t, kind)
			c := shop.client()

			// The catalog's forms: a key each, different per product and
			// per page.
			keys := map[string]bool{}
			for range 2 {
				c.get("/").doc.Find(`[data-testid="product-card"] input[name="idempotency_key"]`).Each(func(_ int, s *goquery.Selection) {
					v, _ := s.Attr("value")
					keys[v] = true
				})
			}
			if len(keys) < 48 {
				t.Errorf("two catalog pages hold %d distinct add keys, want one per form (48)", len(keys))
			}

			form := addForm(c, "compass")
			for i := range 3 {
				if r := c.post("/cart/items", form); r.status != http.StatusSeeOther {
					t.Fatalf("add %d with the same key: %d %s", i+1, r.status, r.testid("error-message"))
				}
			}
			if got := c.session().Cart.Count; got != 1 {
				t.Errorf("the same add form sent three times: cart count %d, want 1", got)
			}
			id := form.Get("product_id")
			for range 2 {
				c.post("/cart/items", url.Values{"product_id": {id}, "quantity": {"1"}})
			}
			if got := c.session().Cart.Count; got != 3 {
				t.Errorf("two adds without a key: cart count %d, want 3", got)
			}
			bad := url.Values{"product_id": {id}, "quantity": {"1"}, "idempotency_key": {"short"}}
			if r := c.post("/cart/items", bad); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.testid("error-message"), "idempotency_key") {
				t.Errorf("a malformed key: %d %q, want 422 naming idempotency_key", r.status, r.testid("error-message"))
			}

			// A full cart with more keys than the cart keeps: 24 lines of
			// 99, each from 2 adds with keys, still fits a cookie.
			full := shop.client()
			for p := 1; p <= 24; p++ {
				for _, q := range []int{50, 49} {
					f := url.Values{"product_id": {strconv.Itoa(p)}, "quantity": {strconv.Itoa(q)},
						"idempotency_key": {"full-cart-" + strconv.Itoa(p) + "-" + strconv.Itoa(q) + "-0123456789abcdef"}}
					if r := full.post("/cart/items", f); r.status != http.StatusSeeOther {
						t.Fatalf("add %d × %d: %d %s", p, q, r.status, r.testid("error-message"))
					}
				}
			}
			if got := full.session().Cart.Count; got != 24*99 {
				t.Errorf("a full cart: count %d, want %d", got, 24*99)
			}
			if kind == session.Cookie {
				if n := len("session=" + full.cookieValue("session")); n > session.CookieLimit {
					t.Errorf("the full cart's cookie is %d bytes, over %d", n, session.CookieLimit)
				}
			}
		})
	}
}

// TestAddMayHaveBeenApplied: an add whose WAIT-refused write cannot be
// taken back (Redis refuses the undo) answers a 503 whose page and log say
// it may have been applied, and the retry with the same key adds once.
// Issue 22, item 3.
func TestAddMayHaveBeenApplied(t *testing.T) {
	shop := newShop(t, session.Redis)
	// A Redis user that may write and WAIT but not run the undo's script.
	redisDo(t, shop.redis.Addr(), "", "ACL", "SETUSER", "noscript", "on", ">noscript-password", "~*", "&*", "+@all", "-eval", "-evalsha")
	logs := &testenv.Buffer{}
	durable := shop.durableReplica("noscript", "noscript-password", false, logs)
	c := shop.client()
	c.add(1, 1)
	form := addForm(c, "compass")

	r := c.at(durable.URL).post("/cart/items", form)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("an add whose undo failed: %d, want 503 with Retry-After", r.status)
	}
	if msg := r.testid("error-message"); !strings.Contains(msg, "may have been applied") {
		t.Errorf("the 503 says %q; want it to say the change may have been applied", msg)
	}
	if !strings.Contains(logs.String(), "may have been applied") {
		t.Errorf("the log does not say the write may have been applied:\n%s", logs)
	}
	before := c.session().Cart.Count // the write did land: the undo never ran
	if r := c.post("/cart/items", form); r.status != http.StatusSeeOther {
		t.Fatalf("the retry: %d", r.status)
	}
	if got := c.session().Cart.Count; got != before || got != 2 {
		t.Errorf("the retry of an add that was applied: count %d (before it %d), want 2", got, before)
	}
}
