package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
)

// TestCartFlow is the same shopping trip against each session store: add,
// change, remove, check out, see the order, replay the checkout.
func TestCartFlow(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()

			r := c.add(1, 2)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/cart" {
				t.Fatalf("add: %d → %q, want 303 → /cart", r.status, r.header.Get("Location"))
			}
			if !sessionCookieSet(r) {
				t.Fatal("the first add set no session cookie")
			}
			c.add(4, 1)
			s := c.session()
			if s.Replica != "shop1" || s.Store != kind || s.Cart.Count != 3 || len(s.Cart.Items) != 2 {
				t.Fatalf("/api/session = %+v, want shop1/%s with 3 items in 2 lines", s, kind)
			}
			if s.Cart.Items[0].ProductID != 1 || s.Cart.Items[0].Quantity != 2 || s.Session.Born != "shop1" || s.Session.State != "known" {
				t.Errorf("/api/session = %+v", s)
			}

			r = c.get("/cart")
			if got := r.testid("cart-count"); got != "3" {
				t.Errorf("cart-count = %q, want 3", got)
			}
			if got := r.count("cart-line"); got != 2 {
				t.Errorf("%d cart lines, want 2", got)
			}
			if got := r.testid("cart-total"); got != "$38.50" { // 2 × $12.00 + $14.50
				t.Errorf("cart total = %q, want $38.50", got)
			}
			if got := r.testid("flash"); got == "" {
				t.Error("no flash after adding")
			}
			if r2 := c.get("/cart"); r2.testid("flash") != "" {
				t.Error("the flash showed twice")
			}
			if got := r.testid("born-on"); got != "shop1" {
				t.Errorf("ribbon born-on = %q", got)
			}

			if r := c.post("/cart/items/1", url.Values{"quantity": {"5"}}); r.status != http.StatusSeeOther {
				t.Fatalf("set: %d %s", r.status, r.body)
			}
			if r := c.post("/cart/items/4", url.Values{"quantity": {"0"}}); r.status != http.StatusSeeOther {
				t.Fatalf("remove: %d", r.status)
			}
			if s := c.session(); s.Cart.Count != 5 || len(s.Cart.Items) != 1 {
				t.Fatalf("after set and remove: %+v", s.Cart)
			}

			before, _ := shop.db.Product(context.Background(), 1)
			r = c.get("/checkout")
			key, ok := r.doc.Find(`input[name="idempotency_key"]`).Attr("value")
			if r.status != 200 || !ok || len(key) < 16 {
				t.Fatalf("GET /checkout: %d, key %q", r.status, key)
			}
			form := url.Values{"name": {"Ada Lovelace"}, "email": {"ada@example.com"}, "address": {"12 Analytical Row\nLondon"}, "idempotency_key": {key}}
			r = c.post("/checkout", form)
			if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/orders/") {
				t.Fatalf("POST /checkout: %d → %q: %s", r.status, r.header.Get("Location"), r.body)
			}
			orderURL := r.header.Get("Location")
			r = c.get(orderURL)
			if r.status != 200 || r.count("order") != 1 || !strings.Contains(r.body, "Ada Lovelace") || r.testid("summary-total") != "$60.00" {
				t.Fatalf("GET %s: %d total %q", orderURL, r.status, r.testid("summary-total"))
			}
			if s := c.session(); s.Cart.Count != 0 {
				t.Errorf("cart after checkout: %+v", s.Cart)
			}
			after, _ := shop.db.Product(context.Background(), 1)
			if after.Stock != before.Stock-5 {
				t.Errorf("stock %d → %d, want -5", before.Stock, after.Stock)
			}

			// The same form again (double click, retry): the same order, no new stock taken.
			r = c.post("/checkout", form)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != orderURL {
				t.Errorf("replayed checkout: %d → %q, want 303 → %s", r.status, r.header.Get("Location"), orderURL)
			}
			again, _ := shop.db.Product(context.Background(), 1)
			if again.Stock != after.Stock {
				t.Errorf("replay took stock: %d → %d", after.Stock, again.Stock)
			}

			// Someone else neither sees the order nor may reuse its key.
			other := shop.client()
			if r := other.get(orderURL); r.status != http.StatusNotFound {
				t.Errorf("another session GET %s: %d, want 404", orderURL, r.status)
			}
			other.add(2, 1)
			if r := other.post("/checkout", form); r.status != http.StatusConflict {
				t.Errorf("another session reusing the key: %d, want 409", r.status)
			}
		})
	}
}

// TestSessionCookieRules: a request that does not change the session sets no
// cookie; a garbage or unknown cookie gets a fresh session, never a 5xx.
func TestSessionCookieRules(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			for _, cookie := range []string{
				"garbage",
				strings.Repeat("x", 4000),
				"%00%ff'; DROP TABLE orders;--",
				"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // well-formed, unknown
			} {
				req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/cart", nil)
				req.Header.Set("Cookie", "session="+cookie)
				c := shop.client()
				r := c.do(req)
				if r.status != http.StatusOK {
					t.Errorf("GET /cart with cookie %.20q: %d", cookie, r.status)
				}
				if sessionCookieSet(r) {
					t.Errorf("GET with cookie %.20q set a cookie", cookie)
				}
				req, _ = http.NewRequest(http.MethodPost, shop.srv.URL+"/cart/items", strings.NewReader("product_id=3&quantity=1"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Cookie", "session="+cookie)
				if r := c.do(req); r.status != http.StatusSeeOther || !sessionCookieSet(r) {
					t.Errorf("POST with cookie %.20q: %d, cookie set %v; want 303 and a fresh session", cookie, r.status, sessionCookieSet(r))
				}
			}
			req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
			req.Header.Set("Cookie", "session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
			r := shop.client().do(req)
			if state, _ := r.doc.Find(`[data-testid="session-state"]`).Attr("data-state"); state != "unknown" {
				t.Errorf("unknown session: ribbon state %q, want unknown", state)
			}
		})
	}
}

// TestGiftNote: a line's gift note is kept in the session with the cart and
// shown on the cart page; a note past 140 characters is a 422 naming it,
// and changes nothing.
func TestGiftNote(t *testing.T) {
	shop := newShop(t, session.Redis)
	c := shop.client()
	r := c.post("/cart/items", url.Values{"product_id": {"3"}, "quantity": {"1"}, "note": {"for Ada, with love"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("add with a note: %d", r.status)
	}
	if got := c.get("/cart").testid("line-note"); got != "Gift note: for Ada, with love" {
		t.Errorf("cart shows note %q", got)
	}
	r = c.post("/cart/items", url.Values{"product_id": {"4"}, "quantity": {"1"}, "note": {strings.Repeat("x", 141)}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "note") {
		t.Errorf("a 141-character note: %d, want 422 naming the field", r.status)
	}
	if got := c.get("/cart").count("cart-line"); got != 1 {
		t.Errorf("%d cart lines after the refused add, want 1", got)
	}
}
