package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
)

// TestCrossSiteFormRefused: a page on another site whose form posts to the
// shop gets a 403, and the cart stays empty. The attacker's page is served
// as http://localhost:PORT while the shop is http://127.0.0.1:PORT: another
// origin and another site, so Chromium sends Sec-Fetch-Site: cross-site.
func TestCrossSiteFormRefused(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "memory", Replicas: 1})
	action := cl.URL() + "/cart/items"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>Win a prize</title>
<form method="post" action="%s"><input type="hidden" name="product_id" value="1"><input type="hidden" name="quantity" value="99">
<button id="go" type="submit">Claim</button></form>`, html.EscapeString(action))
	}))
	t.Cleanup(evil.Close)
	u, _ := url.Parse(evil.URL)
	evilURL := "http://localhost:" + u.Port() + "/"

	ctx := newTab(t, time.Minute)
	// Visit the shop first, as a victim would have: a cookie to ride on.
	do(t, ctx, "open the shop", chromedp.Navigate(cl.URL()+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="ribbon"]`)))
	do(t, ctx, "open the other site", chromedp.Navigate(evilURL), chromedp.WaitVisible(chromedp.ID("go")))
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("go")))
	if err != nil {
		t.Fatalf("submit the cross-site form: %v", err)
	}
	if resp.Status != http.StatusForbidden {
		t.Errorf("cross-site POST %s answered %d, want 403", action, resp.Status)
	}
	if got := testid(t, ctx, "error-message"); !strings.Contains(got, "Cross-origin") {
		t.Errorf("403 page says %q", got)
	}
	do(t, ctx, "open the cart", chromedp.Navigate(cl.URL()+"/cart"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="ribbon"]`)))
	if got := testid(t, ctx, "cart-count"); got != "0" {
		t.Errorf("after the refused cross-site POST the cart holds %q items, want 0", got)
	}
}
