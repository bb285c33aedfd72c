package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/statelab/shop/web"

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

// TestMetricsLiveIdleReplica: a replica that serves nothing but is alive
// announces itself on the live board too: after more than the 5 s a
// silent replica is allowed, it is still a row, not "gone". Before, its
// counters rode on traffic only, and an idle replica read as dead.
func TestMetricsLiveIdleReplica(t *testing.T) {
	t.Parallel()
	shop := newShop(t, session.Redis)
	_, idle := shop.replicaAt("shop2", session.Redis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { idle.Announce(ctx, "127.0.0.1:9999"); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(6500 * time.Millisecond) // past liveTTL (5 s) without one request to shop2
	r := shop.client().get("/metrics/live")
	row := r.doc.Find(`[data-testid="live-row"][data-replica="shop2"]`)
	if row.Length() != 1 {
		t.Fatalf("no row for the idle shop2:\n%s", r.testid("live-table"))
	}
	if gone := row.AttrOr("data-gone", ""); gone != "false" {
		t.Errorf("the idle, living shop2 is gone=%s: %s", gone, row.Text())
	}
}

// TestMetricsLivePeers: memory replicas share no Redis, yet with the
// cluster's list (-peers) the board shows every replica, each one's own
// counters asked over HTTP, and a peer that does not answer as gone. The
// login limiter stays each replica's own (the local vs shared lesson).
func TestMetricsLivePeers(t *testing.T) {
	t.Parallel()
	shop := newShop(t, session.Memory)
	peer, _ := shop.replicaAt("shop2", session.Memory)
	peer.Client().Get(peer.URL + "/")
	addr := strings.TrimPrefix(peer.URL, "http://")
	srv := shop.newServer(shop.parts(session.Memory, "shop3", true), shop.db, web.Config{Replica: "shop3", Peers: []web.Peer{
		{Name: "shop2", Addr: addr}, {Name: "shop3", Addr: "ignored:1"}, {Name: "shop9", Addr: "127.0.0.1:1"},
	}})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	r := shop.client().at(hs.URL).get("/metrics/live")
	if !strings.Contains(r.testid("live-scope"), "cluster's list") {
		t.Errorf("scope %q does not say where the rows come from", r.testid("live-scope"))
	}
	rows := map[string]string{}
	r.doc.Find(`[data-testid="live-row"]`).Each(func(_ int, s *goquery.Selection) {
		rows[s.AttrOr("data-replica", "")] = s.AttrOr("data-gone", "")
	})
	if len(rows) != 3 || rows["shop2"] != "false" || rows["shop3"] != "false" || rows["shop9"] != "true" {
		t.Errorf("rows %v, want shop2 and shop3 live, shop9 gone", rows)
	}
	if got := r.doc.Find(`[data-replica="shop2"] [data-testid="live-requests"]`).Text(); got != "1" {
		t.Errorf("shop2's own count %q, want the 1 request it served", got)
	}
}
