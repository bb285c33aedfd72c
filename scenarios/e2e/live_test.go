package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
)

// TestLiveStockReadAfreshAfterAPause: an event that never reaches Redis is
// not a number that stays wrong. A tab watches the catalog on shop1 while
// Redis stalls; a checkout on shop2 still places its order (cookie
// sessions need no Redis), its event waits in shop2's memory, and shop2
// is killed with it. When Redis answers again, the tab is told updates are
// back and reads every stock afresh: it shows what the database says.
func TestLiveStockReadAfreshAfterAPause(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "cookie", Replicas: 2, Env: []string{"SHOP_LIVE=redis"}})
	shop1, shop2 := cl.Replicas()[0], cl.Replicas()[1]
	ctx := newTab(t, 2*time.Minute)
	const product = `[data-live-stock="3"]`
	do(t, ctx, "open the catalog on "+shop1.Name(),
		chromedp.Navigate(shop1.URL()+"/"),
		chromedp.WaitVisible(chromedp.CSS(product)),
		chromedp.WaitVisible(chromedp.CSS(`[data-live]`)),
	)
	before := text(t, ctx, product)

	redis := cl.Redis()
	if err := redis.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			redis.Resume()
		}
	}()
	waitText(t, ctx, `[data-live-notice]`, func(s string) bool { return strings.Contains(s, "paused") }, "a paused notice")

	buyOne(t, shop2.URL(), "3")
	if err := shop2.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, product); got != before {
		t.Fatalf("the tab's stock changed from %s to %s while Redis stalled", before, got)
	}
	if err := redis.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	want := stockOf(t, shop1.URL(), "3")
	if want == before {
		t.Fatalf("the checkout on %s did not change product 3's stock (%s)", shop2.Name(), want)
	}
	waitText(t, ctx, product, func(s string) bool { return s == want }, "product 3's stock "+want+" (the database's)")
}

// waitText polls the text of css until ok holds, for up to 20 s.
func waitText(t *testing.T, ctx context.Context, css string, ok func(string) bool, what string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = text(t, ctx, css); ok(got) {
			return
		}
	}
	t.Fatalf("%s shows %q after 20 s, want %s", css, got, what)
}

var checkoutKeyRE = regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`)

// buyOne checks out one unit of productID at base, as a new shopper.
func buyOne(t *testing.T, base string, productID string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) int {
		resp, err := c.PostForm(base+path, form)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("/cart/items", url.Values{"product_id": {productID}, "quantity": {"1"}}); st != http.StatusSeeOther {
		t.Fatalf("add to cart: %d", st)
	}
	resp, err := c.Get(base + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := checkoutKeyRE.FindSubmatch(body)
	if m == nil {
		t.Fatalf("GET /checkout: %d, no idempotency_key", resp.StatusCode)
	}
	form := url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {string(m[1])}}
	if st := post("/checkout", form); st != http.StatusSeeOther {
		t.Fatalf("checkout with Redis stalled: %d, want 303 (the order stands)", st)
	}
}

var stockRE = regexp.MustCompile(`"(\d+)":(\d+)`)

// stockOf is a product's stock as GET /api/stock at base says it.
func stockOf(t *testing.T, base, productID string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/stock")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, m := range stockRE.FindAllStringSubmatch(string(body), -1) {
		if m[1] == productID {
			return m[2]
		}
	}
	t.Fatalf("GET /api/stock: no product %s in %s", productID, body)
	return ""
}
