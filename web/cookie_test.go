package web_test

// What only the cookie store does, through the HTTP layer: the 4 KB
// refusal, revocation at logout, and keys rolled across replicas.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

// newCookieShop is newShop for cookies with the given size limit (0: the
// browser's 4096) and keys.
func newCookieShop(t *testing.T, limit int, keys ...string) *testShop {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := &testShop{t: t, db: db, sessionKeys: keys, cookieLimit: limit}
	return ts.serve(ts.parts(session.Cookie, "shop1", true), db, "shop1")
}

// cookieReplica is another cookie replica over ts's database with keys.
func (ts *testShop) cookieReplica(name string, keys ...string) *httptest.Server {
	ts.t.Helper()
	other := &testShop{t: ts.t, db: ts.db, sessionKeys: keys}
	srv := httptest.NewServer(other.newServer(other.parts(session.Cookie, name, true), ts.db, web.Config{Replica: name}))
	ts.t.Cleanup(srv.Close)
	return srv
}

// TestCookieTooLarge: a change whose sealed session would pass the limit is
// a 422 naming the limit, and nothing changes: no new cookie, the same cart.
// The test lowers the limit from the browser's 4096, which the seeded
// catalog cannot reach, to one a few cart lines pass.
func TestCookieTooLarge(t *testing.T) {
	const limit = 900
	shop := newCookieShop(t, limit)
	c := shop.client()
	var refused *response
	added := 0
	for id := 1; id <= 24 && refused == nil; id++ {
		r := c.add(id, 1)
		switch r.status {
		case http.StatusSeeOther:
			added++
		case http.StatusUnprocessableEntity:
			refused = r
		default:
			t.Fatalf("add product %d: %d", id, r.status)
		}
	}
	if refused == nil {
		t.Fatalf("24 lines fit in %d bytes", limit)
	}
	if added == 0 {
		t.Fatal("not even one line fits: the test's limit is too low")
	}
	if !strings.Contains(refused.body, "900 bytes") || !strings.Contains(refused.body, "Nothing was changed") {
		t.Errorf("the 422 does not name the limit: %s", refused.testid("error-page"))
	}
	if sessionCookieSet(refused) {
		t.Error("the refused write set a session cookie")
	}
	if s := c.session(); s.Cart.Count != added {
		t.Errorf("after the refusal the cart holds %d, want the %d added before it", s.Cart.Count, added)
	}
}

// TestCookieTooLargeLoggedIn: a refused write of a logged-in cart changes
// the account's saved cart no more than the cookie.
func TestCookieTooLargeLoggedIn(t *testing.T) {
	shop := newCookieShop(t, 1000)
	c := shop.client()
	if r := c.register("ada@example.com", "a long enough password"); r.status != http.StatusSeeOther {
		t.Fatalf("register: %d", r.status)
	}
	for id := 1; id <= 24; id++ {
		if r := c.add(id, 1); r.status == http.StatusUnprocessableEntity {
			break
		}
	}
	acct, err := shop.db.AccountByEmail(t.Context(), "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := shop.db.SavedCart(t.Context(), acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.session().Cart.Count; strings.Count(string(saved), `"product_id"`) != want {
		t.Errorf("saved cart %s, want the %d lines the cookie holds", saved, want)
	}
}

// TestCookieRevokedAtLogout: a copy of a logged-in cookie taken before the
// logout is anonymous afterwards, on every replica; the account's next
// login is not.
func TestCookieRevokedAtLogout(t *testing.T) {
	shop := newCookieShop(t, 0)
	c := shop.client()
	c.add(1, 1)
	if r := c.register("ada@example.com", "a long enough password"); r.status != http.StatusSeeOther {
		t.Fatalf("register: %d", r.status)
	}
	copied := c.cookie("session")
	replay := func(base string) *response {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/session", nil)
		req.Header.Set("Cookie", "session="+copied)
		return shop.client().do(req)
	}
	if r := replay(shop.srv.URL); !strings.Contains(r.body, `"logged_in":true`) {
		t.Fatalf("the copy before logout: %s", r.body)
	}
	if r := c.post("/logout", nil); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.status)
	}
	other := shop.cookieReplica("shop2", testKey)
	for _, base := range []string{shop.srv.URL, other.URL} {
		r := replay(base)
		if r.status != http.StatusOK || !strings.Contains(r.body, `"logged_in":false`) || !strings.Contains(r.body, `"count":0`) {
			t.Errorf("the copy after logout on %s: %d %s", base, r.status, r.body)
		}
	}
	if r := c.login("ada@example.com", "a long enough password"); r.status != http.StatusSeeOther {
		t.Fatalf("login again: %d", r.status)
	}
	if r := c.get("/api/session"); !strings.Contains(r.body, `"logged_in":true`) {
		t.Errorf("after a new login: %s", r.body)
	}
}

// TestCookieKeyRotation: roll a new key in as "new,old" and the session
// survives everywhere and is resealed with new; drop old and it still opens;
// a replica started with a wrong key loses it, with a 200 and an empty cart.
func TestCookieKeyRotation(t *testing.T) {
	const oldKey, newKey, wrongKey = testKey, "new-key-0123456789-0123456789-0123456789", "wrong-key-0123456789-0123456789-012345678"
	shop := newCookieShop(t, 0, oldKey)
	c := shop.client()
	c.add(1, 2)

	rolling := shop.cookieReplica("shop2", newKey, oldKey)
	if s := c.at(rolling.URL).session(); s.Cart.Count != 2 || s.Session.State != "known" {
		t.Fatalf("new,old: cart %d, state %q; want the cart", s.Cart.Count, s.Session.State)
	}
	if got := c.at(rolling.URL).get("/session").testid("inspector-sealed-with"); !strings.HasPrefix(got, "key 2 of 2") {
		t.Errorf("before a write: sealed with %q, want the old key (2 of 2)", got)
	}
	c.at(rolling.URL).add(2, 1) // reseals with new
	if got := c.at(rolling.URL).get("/session").testid("inspector-sealed-with"); !strings.HasPrefix(got, "key 1 of 2") {
		t.Errorf("after a write: sealed with %q, want the new key (1 of 2)", got)
	}

	dropped := shop.cookieReplica("shop3", newKey)
	if s := c.at(dropped.URL).session(); s.Cart.Count != 3 {
		t.Errorf("new alone: cart %d, want 3", s.Cart.Count)
	}

	wrong := shop.cookieReplica("shop4", wrongKey)
	r := c.at(wrong.URL).get("/cart")
	if r.status != http.StatusOK || r.testid("cart-count") != "0" || !strings.Contains(ribbonOf(r).stateText, "a key this replica does not have") {
		t.Errorf("wrong key: %d, cart %q, ribbon %q", r.status, r.testid("cart-count"), ribbonOf(r).stateText)
	}
}
