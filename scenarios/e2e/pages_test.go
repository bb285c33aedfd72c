package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
)

// TestInspectorAndCluster: through nginx, /session shows the session the
// cart lives in and /cluster lists every replica, which announce themselves
// in Redis, and drops a replica that leaves (SIGTERM withdraws its
// announcement at once; a kill -9 would take the 5 s TTL).
func TestInspectorAndCluster(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "redis"})
	ctx := newTab(t, time.Minute)
	do(t, ctx, "add to the cart",
		chromedp.Navigate(cl.URL()+"/"),
		chromedp.Click(chromedp.CSS(`[data-testid="add-form"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="cart-line"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="inspect-session"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="inspector"]`)),
	)
	if got := testid(t, ctx, "inspector-store"); got != "redis" {
		t.Errorf("inspector store %q", got)
	}
	// On a projector the answer (where the session lives, what a death
	// would do) is on the first screen; the details are folded below.
	do(t, ctx, "projector", chromedp.EmulateViewport(1920, 1080), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[data-testid="inspector-death"]`)))
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
		`document.querySelector('[data-testid="inspector-death"]').getBoundingClientRect().bottom <= window.innerHeight && document.documentElement.scrollHeight <= 2 * window.innerHeight`))
	if err != nil {
		t.Fatal(err)
	}
	if !fits {
		t.Error("/session at 1920×1080: the answer is below the first screen, or the folded page is over two screens tall")
	}
	do(t, ctx, "unfold the details", chromedp.Click(chromedp.CSS(`[data-testid="inspector-details"] summary`)))
	if got := testid(t, ctx, "inspector-keys"); !strings.Contains(got, `"product_id":1`) {
		t.Errorf("inspector raw keys %q: want the cart's JSON", got)
	}

	members := func() string {
		t.Helper()
		do(t, ctx, "open /cluster", chromedp.Navigate(cl.URL()+"/cluster"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="members"]`)))
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`[...document.querySelectorAll('[data-testid="member"][data-ready="true"]')].map(m => m.dataset.replica).join(" ")`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := members(); got != "shop1 shop2 shop3" {
		t.Fatalf("/cluster lists %q ready, want shop1 shop2 shop3", got)
	}
	if err := cl.Replica("shop2").Term(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := members(); got != "shop1 shop3"; got = members() {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGTERM to shop2, /cluster still lists %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
