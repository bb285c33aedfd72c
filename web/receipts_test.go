package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

// jobReplicas is shop1 and shop2 over one database and one session store
// (as two replicas sharing Redis sessions would be), each with the receipt
// jobs newJobs makes for it. It returns a client of each.
func jobReplicas(t *testing.T, db *store.DB, newJobs func(replica string) web.Receipts) (*testShop, *client, *client) {
	t.Helper()
	ts := &testShop{t: t, db: db}
	p := ts.parts(session.Memory, "shop1", true)
	var clients []*client
	for _, name := range []string{"shop1", "shop2"} {
		// One session store for both (as a shared Redis would be), each
		// replica with its own metrics.
		parts := replicaParts{sessions: p.sessions, metrics: web.NewMetrics(name, session.Memory)}
		srv := httptest.NewServer(ts.newServer(parts, db, web.Config{Replica: name, Receipts: newJobs(name)}))
		t.Cleanup(srv.Close)
		ts.srv = srv
		clients = append(clients, ts.client())
	}
	// One browser: shop2's client uses shop1's cookies.
	clients[1].http.Jar = clients[0].http.Jar
	return ts, clients[0], clients[1]
}

// checkout places an order of one unit and returns its id.
func checkout(t *testing.T, c *client) string {
	t.Helper()
	r := c.post("/checkout", checkoutForm(c))
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/orders/") {
		t.Fatalf("POST /checkout = %d to %q, want 303 to /orders/", r.status, loc)
	}
	return strings.TrimPrefix(loc, "/orders/")
}

// waitReceipt polls GET /orders/{id}/receipt until it answers status.
func waitReceipt(t *testing.T, c *client, id string, status int) *response {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := c.get("/orders/" + id + "/receipt")
		if r.status == status {
			return r
		}
		if r.status >= 500 || time.Now().After(deadline) {
			t.Fatalf("GET /orders/%s/receipt = %d (%s), want %d", id, r.status, r.header.Get("X-Receipt-State"), status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReceiptInMemoryIsSeenOnlyWhereItRan(t *testing.T) {
	db := openTestDB(t)
	_, c1, _ := jobReplicas(t, db, func(replica string) web.Receipts {
		m := jobs.NewMemory(jobs.Options{Replica: replica, Render: web.RenderReceipt, Delay: 300 * time.Millisecond})
		t.Cleanup(func() { m.Close() })
		return m
	})
	id := checkout(t, c1)

	r := c1.get("/orders/" + id + "/receipt")
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") == "" || r.header.Get("X-Receipt-State") != jobs.Pending {
		t.Errorf("receipt while the job runs = %d, Retry-After %q, state %q; want 202 with Retry-After, pending",
			r.status, r.header.Get("Retry-After"), r.header.Get("X-Receipt-State"))
	}
	page := c1.get("/orders/" + id)
	if page.status != 200 || page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", "") != jobs.Pending {
		t.Errorf("order page while pending: %d, receipt state %q", page.status, page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", ""))
	}
	ready := waitReceipt(t, c1, id, http.StatusOK)
	if ready.doc.Find(`[data-testid="receipt-document"]`).AttrOr("data-order-id", "") != id {
		t.Errorf("the receipt is not order %s's:\n%s", id, ready.body)
	}
	page = c1.get("/orders/" + id)
	if got := page.doc.Find(`[data-testid="receipt"]`).AttrOr("data-receipt-state", ""); got != jobs.Ready {
		t.Errorf("order page once made: receipt state %q, want ready", got)
	}
	if conf := page.testid("confirmation"); !strings.Contains(conf, "ada@example.com") || !strings.Contains(conf, id) {
		t.Errorf("the owner's order page does not show the confirmation: %q", conf)
	}
}

func TestReceiptInMemoryIsPendingOnAnotherReplica(t *testing.T) {
	db := openTestDB(t)
	_, c1, c2 := jobReplicas(t, db, func(replica string) web.Receipts {
		m := jobs.NewMemory(jobs.Options{Replica: replica, Render: web.RenderReceipt})
		t.Cleanup(func() { m.Close() })
		return m
	})
	id := checkout(t, c1)
	waitReceipt(t, c1, id, http.StatusOK)
	// shop2 cannot see shop1's memory: pending, and it says where.
	r := c2.get("/orders/" + id + "/receipt")
	if r.status != http.StatusAccepted || r.header.Get("X-Receipt-Held-By") != "shop1" {
		t.Errorf("shop2's answer = %d, held by %q; want 202 naming shop1", r.status, r.header.Get("X-Receipt-Held-By"))
	}
	if page := c2.get("/orders/" + id); !strings.Contains(page.testid("receipt"), "memory of shop1") {
		t.Errorf("shop2's order page does not name the replica holding the receipt: %q", page.testid("receipt"))
	}
}

func TestReceiptInQueueIsSeenEverywhere(t *testing.T) {
	db := openTestDB(t)
	_, c1, c2 := jobReplicas(t, db, func(replica string) web.Receipts {
		q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: replica, Render: web.RenderReceipt})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
	id := checkout(t, c1)
	waitReceipt(t, c2, id, http.StatusOK)
	if r := c1.get("/orders/" + id + "/receipt"); r.status != http.StatusOK {
		t.Errorf("shop1: %d, want 200 (the receipt is in the database)", r.status)
	}
	// Not the owner: 404, as for the order itself.
	stranger := &client{t: t, base: c1.base, http: &http.Client{}}
	for _, path := range []string{"/orders/" + id + "/receipt", "/orders/" + id} {
		if r := stranger.get(path); r.status != http.StatusNotFound {
			t.Errorf("GET %s by a stranger = %d, want 404", path, r.status)
		}
	}
}

func TestReceiptFailureIsShownWithItsReason(t *testing.T) {
	db := openTestDB(t)
	_, c1, _ := jobReplicas(t, db, func(replica string) web.Receipts {
		q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: replica, MaxAttempts: 2, RetryBase: 20 * time.Millisecond,
			Render: func(store.Order, string) (string, error) { return "", errors.New("the receipt printer is jammed") }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
	id := checkout(t, c1)
	r := waitReceipt(t, c1, id, http.StatusGone)
	if r.header.Get("X-Receipt-State") != jobs.Failed {
		t.Errorf("X-Receipt-State = %q, want failed", r.header.Get("X-Receipt-State"))
	}
	page := c1.get("/orders/" + id)
	if page.status != 200 || !strings.Contains(page.testid("receipt-reason"), "jammed") {
		t.Errorf("order page = %d, reason %q; want 200 saying why the receipt could not be made", page.status, page.testid("receipt-reason"))
	}
}

func TestOutboxShowsStaffMessagesOnly(t *testing.T) {
	db := openTestDB(t)
	_, c1, _ := jobReplicas(t, db, func(replica string) web.Receipts {
		return jobs.NewMemory(jobs.Options{Replica: replica, Render: web.RenderReceipt})
	})
	ctx := context.Background()
	// A customer's confirmation (as the queue writes it) and a staff report.
	id := checkout(t, c1)
	if _, err := db.SaveReceipt(ctx, store.Receipt{OrderID: id, State: store.ReceiptReady, HTML: "r", MadeBy: "shop1"},
		&store.Message{Key: "confirmation/" + id, Kind: jobs.KindConfirmation, Recipient: "ada@example.com", OrderID: id, Body: "secret-customer-text", SentBy: "shop1"}); err != nil {
		t.Fatal(err)
	}
	s := jobs.NewSchedule(jobs.Shared, time.Hour, "shop2", db, nil)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	var out struct {
		Messages []struct {
			Kind   string `json:"kind"`
			Period string `json:"period"`
			SentBy string `json:"sent_by"`
			At     string `json:"at"`
		} `json:"messages"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(out.Messages) == 0 && time.Now().Before(deadline) {
		r := c1.get("/api/outbox?kind=low-stock")
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /api/outbox = %d %s", r.status, r.header.Get("Content-Type"))
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	if len(out.Messages) != 1 || out.Messages[0].Kind != "low-stock" || out.Messages[0].SentBy != "shop2" ||
		out.Messages[0].Period != s.Period(time.Now()) || out.Messages[0].At == "" {
		t.Errorf("/api/outbox = %+v; want one low-stock report of this period sent by shop2", out.Messages)
	}
	for _, path := range []string{"/api/outbox", "/outbox"} {
		r := c1.get(path)
		if r.status != 200 || strings.Contains(r.body, "secret-customer-text") || strings.Contains(r.body, "ada@example.com") || strings.Contains(r.body, id) {
			t.Errorf("GET %s = %d and shows customer data:\n%s", path, r.status, r.body)
		}
	}
	if r := c1.get("/outbox"); r.count("outbox-message") != 1 {
		t.Errorf("/outbox lists %d messages, want 1", r.count("outbox-message"))
	}
	if r := c1.get("/api/outbox?kind=confirmation"); r.status != 422 || !strings.Contains(r.body, "kind") {
		t.Errorf("GET /api/outbox?kind=confirmation = %d %s; want 422 naming kind", r.status, r.body)
	}
}

func openTestDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
