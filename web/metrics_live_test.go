package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
)

// TestMetricsLive: /metrics/live counts this replica's requests in both
// modes and, in redis mode, shows every replica that publishes to the same
// Redis, each by name.
func TestMetricsLive(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		shop := newShop(t, session.Memory)
		c := shop.client()
		for range 3 {
			c.get("/")
		}
		r := c.get("/metrics/live")
		if r.status != http.StatusOK {
			t.Fatalf("GET /metrics/live: %d", r.status)
		}
		if !strings.Contains(r.body, `http-equiv="refresh"`) {
			t.Error("the live page does not reload itself")
		}
		if got := r.count("live-row"); got != 1 {
			t.Errorf("%d rows in memory mode, want this replica's only", got)
		}
		if !strings.Contains(r.testid("live-scope"), "This replica only") {
			t.Errorf("scope %q does not say it shows this replica only", r.testid("live-scope"))
		}
		// The three catalog pages; the live page itself is counted once it
		// is done.
		if got := r.testid("live-requests"); got != "3" {
			t.Errorf("requests %q, want 3", got)
		}
	})
	t.Run("redis", func(t *testing.T) {
		shop := newShop(t, session.Redis)
		other := &testShop{t: t, db: shop.db, redis: shop.redis}
		other.serve(other.parts(session.Redis, "shop2", true), shop.db, "shop2")
		shop.client().get("/")
		other.client().get("/")
		var r *response
		waitUntil(t, func() bool {
			// Publishing is asynchronous, once a second per replica.
			r = shop.client().get("/metrics/live")
			return r.count("live-row") == 2
		}, "the live page shows both replicas")
		if !strings.Contains(r.testid("live-scope"), "Every replica") {
			t.Errorf("scope %q", r.testid("live-scope"))
		}
		for _, name := range []string{"shop1", "shop2"} {
			if r.doc.Find(`[data-testid="live-row"][data-replica="`+name+`"]`).Length() != 1 {
				t.Errorf("no row for %s", name)
			}
		}
	})
}
