package main

import (
	"bufio"
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReceiptEventReachesOwner: with -jobs queue, the receipt job's result
// is published as an `order` event on the owner's GET /events stream: main
// hands the jobs the live events as their Notify.
func TestReceiptEventReachesOwner(t *testing.T) {
	base := startRun(t, map[string]string{"SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s",
		"SHOP_LOG_LEVEL": "warn", "SHOP_JOBS": "queue", "SHOP_JOB_DELAY": "300ms"})
	waitStatus(t, base+"/readyz", http.StatusOK)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("/cart/items", url.Values{"product_id": {"1"}, "quantity": {"1"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("add: %s", r.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	stream, err := c.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("GET /events: %v %v", stream, err)
	}
	defer stream.Body.Close()

	resp, err := c.Get(base + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&page)
	resp.Body.Close()
	m := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(page.String())
	if m == nil {
		t.Fatal("no idempotency key on /checkout")
	}
	r := post("/checkout", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {m[1]}})
	id := strings.TrimPrefix(r.Header.Get("Location"), "/orders/")
	if r.StatusCode != http.StatusSeeOther || id == "" {
		t.Fatalf("checkout: %s to %q", r.Status, r.Header.Get("Location"))
	}
	lines := bufio.NewScanner(stream.Body)
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "data:") && strings.Contains(l, id) && strings.Contains(l, "receipt ready") {
			return
		}
	}
	t.Fatalf("no `receipt ready` event for order %s on the owner's stream: %v", id, lines.Err())
}
