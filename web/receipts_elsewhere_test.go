package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// memoryReplica is one replica with -jobs memory (job delay delay) over
// ts's database and the session store in p, announcing itself to redis's
// presence when redis is not nil, with a short receipt patience.
func memoryReplica(t *testing.T, ts *testShop, p replicaParts, name string, delay time.Duration, redis *redisclient.Client) *client {
	t.Helper()
	m := jobs.NewMemory(jobs.Options{Replica: name, Render: web.RenderReceipt, Delay: delay})
	t.Cleanup(func() { m.Close() })
	parts := replicaParts{sessions: p.sessions, metrics: web.NewMetrics(name, session.Memory), redis: redis}
	srv := ts.newServer(parts, ts.db, web.Config{Replica: name, Receipts: m, ReceiptPatience: 500 * time.Millisecond})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	if redis != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); srv.Announce(ctx, hs.Listener.Addr().String()) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	ts.srv = hs
	return ts.client()
}

// TestReceiptInAnotherReplicasMemoryEnds: a browser kept on shop2 (sticky
// routing, or shop1 gone from the balancer) while shop1's memory holds its
// receipt. shop2 cannot see it, so its order page used to reload every 2 s
// for ever. Within the patience it reloads (shop1 may soon be asked);
// past it, it stops and says where the receipt is, that only shop1 can show
// it, and that it dies with shop1; the receipt route answers 202 with no
// Retry-After. shop1 itself shows the receipt.
func TestReceiptInAnotherReplicasMemoryEnds(t *testing.T) {
	t.Parallel()
	ts := &testShop{t: t, db: openTestDB(t)}
	p := ts.parts(session.Memory, "shop1", true)
	c1 := memoryReplica(t, ts, p, "shop1", 0, nil)
	c2 := memoryReplica(t, ts, p, "shop2", 0, nil)
	c2.http.Jar = c1.http.Jar // one browser
	id := checkout(t, c1)
	start := time.Now()
	waitReceipt(t, c1, id, http.StatusOK)

	refresh := func(r *response) string { return r.doc.Find(`meta[http-equiv="refresh"]`).AttrOr("content", "") }
	if page := c2.get("/orders/" + id); refresh(page) == "" && time.Since(start) < 400*time.Millisecond {
		t.Errorf("shop2's order page within the patience does not reload")
	}
	time.Sleep(time.Until(start.Add(600 * time.Millisecond)))

	page := c2.get("/orders/" + id)
	if page.status != http.StatusOK || refresh(page) != "" {
		t.Errorf("shop2's order page past the patience = %d, refresh %q; want 200 and no reload", page.status, refresh(page))
	}
	text := page.testid("receipt-unknowable")
	for _, want := range []string{"memory of shop1", "shop2", "lost if shop1 dies", "stopped reloading"} {
		if !strings.Contains(text, want) {
			t.Errorf("shop2's order page does not say %q: %q", want, text)
		}
	}
	r := c2.get("/orders/" + id + "/receipt")
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "" || refresh(r) != "" ||
		r.header.Get("X-Receipt-State") != jobs.Pending || r.header.Get("X-Receipt-Held-By") != "shop1" {
		t.Errorf("shop2's receipt past the patience = %d, Retry-After %q, refresh %q, state %q held by %q; want 202 without Retry-After, pending in shop1",
			r.status, r.header.Get("Retry-After"), refresh(r), r.header.Get("X-Receipt-State"), r.header.Get("X-Receipt-Held-By"))
	}
	if page := c1.get("/orders/" + id); page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", "") != jobs.Ready || refresh(page) != "" {
		t.Errorf("shop1's order page does not show the receipt ready")
	}
}

// TestReceiptLostWithRestartedReplica: shop1 took the order and was killed
// mid-job, and a new shop1 started since. With a shared presence shop2
// knows when each replica started: the receipt is lost for certain, a 410
// that says why and a page that does not reload, on shop2 as on shop1.
func TestReceiptLostWithRestartedReplica(t *testing.T) {
	t.Parallel()
	ts := &testShop{t: t, db: openTestDB(t), redis: testenv.StartRedis(t)}
	p := ts.parts(session.Memory, "shop1", true)
	rc := redisclient.New(redisclient.Config{Addr: ts.redis.Addr()})
	t.Cleanup(func() { rc.Close() })
	c1 := memoryReplica(t, ts, p, "shop1", time.Hour, rc) // the job never ends
	c2 := memoryReplica(t, ts, p, "shop2", 0, rc)
	c2.http.Jar = c1.http.Jar
	id := checkout(t, c1)
	if r := c2.get("/orders/" + id + "/receipt"); r.status != http.StatusAccepted || r.header.Get("Retry-After") == "" {
		t.Fatalf("shop2's receipt while shop1 runs the job = %d, Retry-After %q; want 202 with Retry-After", r.status, r.header.Get("Retry-After"))
	}

	// A new shop1 (the old one's memory gone), started in a later second
	// than the order: announcements carry whole seconds.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	c1 = memoryReplica(t, ts, p, "shop1", 0, rc)
	c1.http.Jar = c2.http.Jar
	var r *response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r = c2.get("/orders/" + id + "/receipt")
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	if r.status != http.StatusGone || r.header.Get("X-Receipt-State") != jobs.Lost || !strings.Contains(r.testid("receipt-lost"), "started again since the order was placed") {
		t.Errorf("shop2's receipt once shop1 started again = %d, state %q, %q; want 410 lost, saying shop1 started again",
			r.status, r.header.Get("X-Receipt-State"), r.testid("receipt-lost"))
	}
	for _, c := range []*client{c1, c2} {
		page := c.get("/orders/" + id)
		if page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", "") != jobs.Lost || page.doc.Find(`meta[http-equiv="refresh"]`).Length() != 0 {
			t.Errorf("%s's order page: receipt %q, %d reloads; want lost and no reload", page.header.Get("X-Served-By"),
				page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", ""), page.doc.Find(`meta[http-equiv="refresh"]`).Length())
		}
	}
}
