package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/statelab/shop/store"
)

// TestBadInput: malformed, out-of-range and hostile requests get a 4xx that
// names the field, and leave the cart as it was.
func TestBadInput(t *testing.T) {
	shop := newShop(t, "memory")
	c := shop.client()
	c.add(1, 95) // a line near the limit
	// Someone else bought most trail tents (product 13): 50 are left.
	if _, _, err := shop.db.PlaceOrder(t.Context(), store.NewOrder{
		IdempotencyKey: "someone-else-0001", SessionID: "other", Replica: "shop9",
		Name: "Other", Email: "other@example.com", Address: "Elsewhere 1",
		Lines: []store.NewOrderLine{{ProductID: 13, Quantity: 50}},
	}); err != nil {
		t.Fatal(err)
	}
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	checkout := func(name, email, address, key string) string {
		return form("name", name, "email", email, "address", address, "idempotency_key", key)
	}
	const key = "0123456789abcdef0123"
	tests := []struct {
		name, method, path, contentType, body string
		status                                int
		mention                               string // the body names this
	}{
		{"product_id not a number", "POST", "/cart/items", "", form("product_id", "abc", "quantity", "1"), 422, "product_id"},
		{"product_id missing", "POST", "/cart/items", "", form("quantity", "1"), 422, "product_id"},
		{"product_id zero", "POST", "/cart/items", "", form("product_id", "0", "quantity", "1"), 422, "product_id"},
		{"product_id huge", "POST", "/cart/items", "", form("product_id", "99999999999999999999", "quantity", "1"), 422, "product_id"},
		{"product_id unknown", "POST", "/cart/items", "", form("product_id", "999", "quantity", "1"), 404, "product_id"},
		{"quantity zero", "POST", "/cart/items", "", form("product_id", "2", "quantity", "0"), 422, "quantity"},
		{"quantity negative", "POST", "/cart/items", "", form("product_id", "2", "quantity", "-3"), 422, "quantity"},
		{"quantity 100", "POST", "/cart/items", "", form("product_id", "2", "quantity", "100"), 422, "quantity"},
		{"quantity fraction", "POST", "/cart/items", "", form("product_id", "2", "quantity", "1.5"), 422, "quantity"},
		{"quantity missing", "POST", "/cart/items", "", form("product_id", "2"), 422, "quantity"},
		{"quantity twice", "POST", "/cart/items", "", "product_id=2&quantity=1&quantity=2", 422, "quantity"},
		{"line past 99", "POST", "/cart/items", "", form("product_id", "1", "quantity", "5"), 422, "99"},
		{"quantity past stock", "POST", "/cart/items", "", form("product_id", "13", "quantity", "51"), 422, "only 50"},
		{"set: path id not a number", "POST", "/cart/items/abc", "", form("quantity", "1"), 404, "product_id"},
		{"set: unknown product", "POST", "/cart/items/999", "", form("quantity", "1"), 404, "product_id"},
		{"set: quantity 100", "POST", "/cart/items/1", "", form("quantity", "100"), 422, "quantity"},
		{"set: quantity text", "POST", "/cart/items/1", "", form("quantity", "<script>"), 422, "quantity"},
		{"json body", "POST", "/cart/items", "application/json", `{"product_id":1,"quantity":1}`, 415, ""},
		{"oversized body", "POST", "/cart/items", "", "product_id=2&quantity=1&pad=" + strings.Repeat("x", 70<<10), 413, ""},
		{"checkout: bad email", "POST", "/checkout", "", checkout("Ada", "not-an-email", "1 Main Street", key), 422, "email"},
		{"checkout: no name", "POST", "/checkout", "", checkout("", "ada@example.com", "1 Main Street", key), 422, "name"},
		{"checkout: long name", "POST", "/checkout", "", checkout(strings.Repeat("A", 101), "ada@example.com", "1 Main Street", key), 422, "at most 100"},
		{"checkout: no address", "POST", "/checkout", "", checkout("Ada", "ada@example.com", "", key), 422, "address"},
		{"checkout: no key", "POST", "/checkout", "", checkout("Ada", "ada@example.com", "1 Main Street", ""), 422, "reload the checkout page"},
		{"checkout: bad key", "POST", "/checkout", "", checkout("Ada", "ada@example.com", "1 Main Street", "'; DROP TABLE orders;--"), 422, "reload"},
		{"category twice", "GET", "/?category=games&category=outdoors", "", "", 400, "category"},
		{"order id garbage", "GET", "/orders/%27%20OR%201%3D1", "", "", 404, ""},
		{"cross-site post", "POST", "/cart/items", "", form("product_id", "2", "quantity", "1"), 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, c.base+tt.path, strings.NewReader(tt.body))
			if tt.method == "POST" {
				ct := tt.contentType
				if ct == "" {
					ct = "application/x-www-form-urlencoded"
				}
				req.Header.Set("Content-Type", ct)
			}
			if tt.name == "cross-site post" {
				req.Header.Set("Sec-Fetch-Site", "cross-site")
				req.Header.Set("Origin", "https://evil.example")
			}
			r := c.do(req)
			if r.status != tt.status {
				t.Fatalf("%s %s: status %d, want %d\n%s", tt.method, tt.path, r.status, tt.status, r.testid("error-message"))
			}
			if tt.mention != "" && !strings.Contains(r.body, tt.mention) {
				t.Errorf("%s %s: the answer does not mention %q", tt.method, tt.path, tt.mention)
			}
			if s := c.session(); s.Cart.Count != 95 || len(s.Cart.Items) != 1 {
				t.Errorf("the cart changed: %+v", s.Cart)
			}
		})
	}
}
