package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
)

// failover is one story: a cart added through the catalog's form, then the
// replica that served the add killed with -9, then a reload.
type failover struct {
	writer   string // the replica that served the add, now dead
	servedBy string // the replica that served the reload
}

// addThenKill adds the first product through the page's own form, kills the
// replica that wrote the cart and reloads the cart page.
func addThenKill(t *testing.T, ctx context.Context, cl *cluster.Cluster) failover {
	t.Helper()
	do(t, ctx, "open the catalog",
		chromedp.Navigate(cl.URL()+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="add-form"] button`)),
		chromedp.Click(chromedp.CSS(`[data-testid="add-form"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="cart-line"]`)),
	)
	if got := testid(t, ctx, "cart-count"); got != "1" {
		t.Fatalf("after adding through the form: cart-count %q, want 1", got)
	}
	var f failover
	f.writer = testid(t, ctx, "last-writer")
	r := cl.Replica(f.writer)
	if r == nil {
		t.Fatalf("the ribbon names %q as the cart's writer, which is no replica of the cluster", f.writer)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "reload the cart", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[data-testid="ribbon"]`)))
	f.servedBy = testid(t, ctx, "served-by")
	if f.servedBy == f.writer || f.servedBy == "" {
		t.Errorf("after killing %s the ribbon says served by %q, want another replica", f.writer, f.servedBy)
	}
	if trail := testid(t, ctx, "trail"); !strings.Contains(trail, f.writer) || !strings.HasSuffix(trail, f.servedBy) {
		t.Errorf("trail %q: want it to show %s and end with %s", trail, f.writer, f.servedBy)
	}
	return f
}

// TestFailoverRedis: with Redis sessions a replica's death loses nothing.
// Round robin, so the add and the reload may meet any replica.
func TestFailoverRedis(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "redis", LB: "roundrobin"})
	ctx := newTab(t, time.Minute)
	start := time.Now()
	f := addThenKill(t, ctx, cl)
	if got := testid(t, ctx, "cart-count"); got != "1" {
		t.Errorf("redis: after %s died, %s shows cart-count %q, want the cart of 1 to survive", f.writer, f.servedBy, got)
	}
	if got := testid(t, ctx, "last-writer"); got != f.writer {
		t.Errorf("redis: the ribbon says last written by %q, want %s (the dead replica's write lives in Redis)", got, f.writer)
	}
	t.Logf("redis failover in the browser: %s wrote, died, %s served the cart (%s)", f.writer, f.servedBy, time.Since(start).Round(time.Millisecond))
}

// TestFailoverCookie: with the session sealed in the browser's cookie the
// dead replica held nothing: the next replica opens the same cookie with the
// shared key, and the ribbon says the cart lives in the browser.
func TestFailoverCookie(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "cookie", LB: "roundrobin"})
	ctx := newTab(t, time.Minute)
	start := time.Now()
	f := addThenKill(t, ctx, cl)
	if got := testid(t, ctx, "cart-count"); got != "1" {
		t.Errorf("cookie: after %s died, %s shows cart-count %q, want the cart of 1 to survive", f.writer, f.servedBy, got)
	}
	if got := testid(t, ctx, "last-writer"); got != f.writer {
		t.Errorf("cookie: the ribbon says last written by %q, want %s (the dead replica sealed the cookie)", got, f.writer)
	}
	if got := testid(t, ctx, "cart-lives"); !strings.HasPrefix(got, "your cart lives in your browser (sealed, ") {
		t.Errorf("cookie: the ribbon says %q, want the cart in the browser", got)
	}
	t.Logf("cookie failover in the browser: %s wrote, died, %s served the cart (%s)", f.writer, f.servedBy, time.Since(start).Round(time.Millisecond))
}

// TestFailoverMemory: with memory sessions the cart dies with its replica,
// and the ribbon says where it was. Sticky routing, so the cart is there
// until the kill.
func TestFailoverMemory(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "memory", LB: "sticky"})
	ctx := newTab(t, time.Minute)
	start := time.Now()
	f := addThenKill(t, ctx, cl)
	if got := testid(t, ctx, "cart-count"); got != "0" {
		t.Errorf("memory: after %s died, %s shows cart-count %q, want the cart gone", f.writer, f.servedBy, got)
	}
	if _, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-testid="cart-empty"]`), chromedp.NodeReady)); err != nil {
		t.Errorf("memory: no empty-cart message after the failover: %v", err)
	}
	want := "this replica has never seen your session: with memory sessions, your cart lived on " + f.writer
	if got := testid(t, ctx, "session-state"); !strings.Contains(got, want) {
		t.Errorf("memory: the ribbon says %q\nwant it to say %q", got, want)
	}
	t.Logf("memory failover in the browser: %s wrote, died, %s lost the cart (%s)", f.writer, f.servedBy, time.Since(start).Round(time.Millisecond))
}
