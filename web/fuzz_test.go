package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeCart: no stored bytes make DecodeCart panic, and whatever it
// accepts obeys the cart's limits and survives a round trip unchanged.
func FuzzDecodeCart(f *testing.F) {
	f.Add([]byte(`{"v":1,"rev":3,"items":[{"product_id":1,"quantity":2},{"product_id":4,"quantity":1}]}`))
	f.Add([]byte(`{"v":1,"rev":0,"items":[]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"items":[{"product_id":1,"quantity":100}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCart(b)
		if err != nil {
			return
		}
		if len(c.Items) > MaxCartLines || c.Rev < 0 {
			t.Fatalf("accepted a cart over the limits: %+v", c)
		}
		seen := map[int64]bool{}
		for _, it := range c.Items {
			if it.ProductID < 1 || it.Quantity < 1 || it.Quantity > MaxLineQuantity || seen[it.ProductID] {
				t.Fatalf("accepted a bad line: %+v", it)
			}
			seen[it.ProductID] = true
		}
		again, err := DecodeCart(EncodeCart(c))
		if err != nil || again.Rev != c.Rev || again.Count() != c.Count() || len(again.Items) != len(c.Items) {
			t.Fatalf("round trip changed %+v into %+v (%v)", c, again, err)
		}
	})
}

// FuzzCartForm: any body and content type posted to the add form parses to
// a field-naming 4xx or a valid product and quantity — never a panic or 5xx.
func FuzzCartForm(f *testing.F) {
	f.Add("product_id=1&quantity=2", "application/x-www-form-urlencoded")
	f.Add("product_id=1&quantity=2&quantity=3", "application/x-www-form-urlencoded")
	f.Add("product_id=%ff%fe&quantity=1e3", "application/x-www-form-urlencoded")
	f.Add("quantity=99999999999999999999999", "")
	f.Add(`{"product_id":1}`, "application/json")
	f.Add("a=%zz", "application/x-www-form-urlencoded; charset=utf-8")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/cart/items", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBodyBytes)
		form, err := parseForm(r)
		if err != nil {
			if status, _, _ := errorStatus(err); status < 400 || status >= 500 {
				t.Fatalf("parseForm error maps to %d: %v", status, err)
			}
			return
		}
		id, idErr := formInt(form, "product_id", 1, 1<<31-1)
		qty, qtyErr := formInt(form, "quantity", 1, MaxLineQuantity)
		for _, err := range []error{idErr, qtyErr} {
			if err == nil {
				continue
			}
			e, ok := err.(*Error)
			if !ok || e.Status != http.StatusUnprocessableEntity || (e.Field != "product_id" && e.Field != "quantity") {
				t.Fatalf("form error %v does not name its field with a 422", err)
			}
		}
		if idErr == nil && id < 1 || qtyErr == nil && (qty < 1 || qty > MaxLineQuantity) {
			t.Fatalf("accepted product_id %d quantity %d", id, qty)
		}
	})
}
