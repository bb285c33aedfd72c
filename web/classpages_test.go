package web_test

// The pages a class looks at (issue 12): the inspector reconciles its
// facts, explains sticky routing and outages; the ribbon links the live
// page and does not claim to know what it cannot.

import (
	"net/http"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
)

// TestInspectorReconcilesHome: with redis sessions, a cart born on shop1
// and last written on shop2 has session_home=shop2; the inspector says why
// that differs from "born on" instead of showing two claims side by side.
func TestInspectorReconcilesHome(t *testing.T) {
	shop := newShop(t, session.Redis)
	other, _ := shop.replicaAt("shop2", session.Redis)
	c := shop.client()
	c.add(1, 1)
	c.at(other.URL).add(2, 1)
	r := c.at(other.URL).get("/session")
	if got := r.testid("inspector-born"); !strings.HasPrefix(got, "shop1") {
		t.Fatalf("born on %q, want shop1", got)
	}
	got := r.testid("inspector-home-differs")
	for _, want := range []string{"session_home", "shop2", "born on shop1", "any replica can write"} {
		if !strings.Contains(got, want) {
			t.Errorf("the inspector's reconciliation %q does not say %q", got, want)
		}
	}
	// Where they agree, there is nothing to reconcile.
	same := shop.client()
	same.add(1, 1)
	if r := same.get("/session"); r.count("inspector-home-differs") != 0 {
		t.Errorf("born and home both shop1, yet the inspector reconciles: %q", r.testid("inspector-home-differs"))
	}
}

// TestInspectorStickyRoute: under sticky routing (nginx sends
// X-Shop-Sticky: 1) the inspector shows the shop_route cookie and what it
// does; without sticky routing it says nothing about it.
func TestInspectorStickyRoute(t *testing.T) {
	shop := newShop(t, session.Memory)
	c := shop.client()
	get := func(sticky bool) *response {
		req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/session", nil)
		if sticky {
			req.Header.Set("X-Shop-Sticky", "1")
		}
		return c.do(req)
	}
	if r := get(false); r.count("inspector-route") != 0 {
		t.Errorf("round robin: the inspector talks of sticky routing: %q", r.testid("inspector-route"))
	}
	r := get(true) // no shop_route yet: this response sets it
	if got := r.testid("inspector-route"); !strings.Contains(got, "shop_route=shop1") {
		t.Errorf("sticky, first visit: %q", got)
	}
	r = get(true)
	route := r.doc.Find(`[data-testid="inspector-route"]`)
	if route.AttrOr("data-route", "") != "shop1" || !strings.Contains(route.Text(), "pins you to shop1") {
		t.Errorf("sticky, pinned: route %q, %q", route.AttrOr("data-route", ""), route.Text())
	}
}

// TestInspectorDuringOutage: with Redis away /session is still a 503, but
// one that explains the outage, not the generic cart page.
func TestInspectorDuringOutage(t *testing.T) {
	shop := newShop(t, session.Redis)
	c := shop.client()
	c.add(1, 1)
	if err := shop.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	r := c.get("/session")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("/session with Redis down: %d (Retry-After %q), want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	got := r.testid("inspector-outage")
	for _, want := range []string{"shop1 could not read your session", "not answering", "redis store", "no replica can read"} {
		if !strings.Contains(got, want) {
			t.Errorf("the outage explanation %q does not say %q", got, want)
		}
	}
	if r.count("story") == 0 {
		t.Error("the outage page drops the inspector's stories")
	}
}

// TestRibbonLinksLive: every page's ribbon links /metrics/live.
func TestRibbonLinksLive(t *testing.T) {
	shop := newShop(t, session.Memory)
	r := shop.client().get("/")
	if href, _ := r.doc.Find(`[data-testid="live-link"]`).Attr("href"); href != "/metrics/live" {
		t.Errorf("ribbon live link %q, want /metrics/live", href)
	}
}
