package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

// sseEvent is one event as a browser's EventSource would see it.
type sseEvent struct {
	id, typ, data string
	retry         string // a retry: field, alone
	comment       bool
}

// sseStream reads a text/event-stream response in the background.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openEvents opens GET /events as client c, with lastID as Last-Event-ID.
func (c *client) openEvents(lastID string) *sseStream {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	s := &sseStream{t: c.t, resp: resp, events: make(chan sseEvent, 1024), cancel: cancel}
	c.t.Cleanup(s.close)
	if resp.StatusCode == http.StatusOK {
		go s.parse(resp.Body)
	}
	return s
}

func (s *sseStream) close() { s.cancel(); s.resp.Body.Close() }

func (s *sseStream) parse(body io.Reader) {
	defer close(s.events)
	sc := bufio.NewScanner(body)
	var e sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e != (sseEvent{}) {
				s.events <- e
			}
			e = sseEvent{}
		case strings.HasPrefix(line, ":"):
			e.comment = true
		default:
			name, value, _ := strings.Cut(line, ": ")
			switch name {
			case "id":
				e.id = value
			case "event":
				e.typ = value
			case "data":
				e.data = value
			case "retry":
				e.retry = value
			}
		}
	}
}

// next returns the next event that is not a heartbeat, failing after a
// generous wait; ok is false when the stream ended.
func (s *sseStream) next() (sseEvent, bool) {
	s.t.Helper()
	for {
		select {
		case e, ok := <-s.events:
			if ok && e.comment {
				continue
			}
			return e, ok
		case <-time.After(10 * time.Second):
			s.t.Fatal("no event within 10s")
		}
	}
}

// until returns the events up to and including the first of type typ.
func (s *sseStream) until(typ string) []sseEvent {
	s.t.Helper()
	var got []sseEvent
	for {
		e, ok := s.next()
		if !ok {
			s.t.Fatalf("stream ended before a %s event; got %+v", typ, got)
		}
		got = append(got, e)
		if e.typ == typ {
			return got
		}
	}
}

// liveShop is one replica over memory sessions with the given hub.
func liveShop(t *testing.T, hub web.Live, cfg web.Config) *testShop {
	t.Helper()
	return liveShopWith(t, session.Memory, hub, cfg)
}

// liveShopWith is one replica over the kind of sessions with the hub.
func liveShopWith(t *testing.T, kind string, hub web.Live, cfg web.Config) *testShop {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := &testShop{t: t, db: db}
	p := ts.parts(kind, "shop1", true)
	p.live = hub
	cfg.Replica = "shop1"
	ts.srv = newHTTPTest(ts.newServer(p, db, cfg))
	t.Cleanup(ts.srv.Close)
	return ts
}

// TestEventsCarryStockToAllAndOrdersToTheirOwner: a checkout's stock
// change reaches every stream, each event with an id; its order reaches
// only the buyer's own stream.
func TestEventsCarryStockToAllAndOrdersToTheirOwner(t *testing.T) {
	hub := live.NewLocal(live.Options{})
	shop := liveShop(t, hub, web.Config{})
	buyer, watcher := shop.client(), shop.client()
	form := checkoutForm(buyer) // one of product 1; the buyer has a session now
	before, _ := shop.db.Product(t.Context(), 1)

	bs, ws := buyer.openEvents(""), watcher.openEvents("")
	for name, s := range map[string]*sseStream{"buyer": bs, "watcher": ws} {
		if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: GET /events = %d %s", name, s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
		}
		if e, _ := s.next(); e.typ != live.TypeReady || e.id == "" || !strings.Contains(e.data, `"replica":"shop1"`) {
			t.Errorf("%s: first event %+v, want ready with an id and the replica", name, e)
		}
	}
	if r := buyer.post("/checkout", form); r.status != http.StatusSeeOther {
		t.Fatalf("checkout: %d", r.status)
	}
	want := fmt.Sprintf(`{"product_id":1,"stock":%d}`, before.Stock-1)
	for name, s := range map[string]*sseStream{"buyer": bs, "watcher": ws} {
		evs := s.until(live.TypeStock)
		got := evs[len(evs)-1]
		if got.data != want || got.id == "" {
			t.Errorf("%s: stock event %+v, want data %s with an id", name, got, want)
		}
	}
	// The order event was published after the stock: the buyer gets it;
	// the watcher, given time to get it too, must not.
	if evs := bs.until(live.TypeOrder); !strings.Contains(evs[len(evs)-1].data, `"status":"placed"`) {
		t.Errorf("buyer's order event %+v", evs[len(evs)-1])
	}
	hub.PublishStock(t.Context(), 2, 1) // a marker after the order
	for _, e := range ws.until(live.TypeStock) {
		if e.typ == live.TypeOrder {
			t.Errorf("the watcher saw another session's order: %+v", e)
		}
	}
}

// TestEventsResumeWithLastEventID: a browser that reconnects with the id
// of the last event it got is sent what it missed, first.
func TestEventsResumeWithLastEventID(t *testing.T) {
	hub := live.NewLocal(live.Options{})
	shop := liveShop(t, hub, web.Config{})
	c := shop.client()
	s := c.openEvents("")
	s.next() // ready
	hub.PublishStock(t.Context(), 1, 10)
	last := s.until(live.TypeStock)[0].id
	s.close()
	hub.PublishStock(t.Context(), 1, 9)
	hub.PublishStock(t.Context(), 3, 30)

	again := c.openEvents(last)
	if e, _ := again.next(); e.typ != live.TypeReady || e.id != last {
		t.Errorf("resumed stream opens with %+v, want ready at %s", e, last)
	}
	for _, want := range []string{`{"product_id":1,"stock":9}`, `{"product_id":3,"stock":30}`} {
		if e, _ := again.next(); e.data != want {
			t.Errorf("resumed: %+v, want %s", e, want)
		}
	}
	// An id from another replica's history: a missed notice, with an id.
	other := c.openEvents("zzzz:7")
	other.next()
	if e, _ := other.next(); e.typ != live.TypeNotice || !strings.Contains(e.data, `"state":"missed"`) || e.id == "" {
		t.Errorf("foreign Last-Event-ID: %+v, want a missed notice with an id", e)
	}
	if r := c.get("/events?last_event_id=" + strings.Repeat("x", 65)); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Last-Event-ID") {
		t.Errorf("an overlong Last-Event-ID: %d, want 400 naming it", r.status)
	}
}

// TestEventsBoundHeartbeatAndDrain: past -live-max-streams a 503 with
// Retry-After; an idle stream gets heartbeats; the drain ends streams
// with a retry: hint and refuses new ones.
func TestEventsBoundHeartbeatAndDrain(t *testing.T) {
	hub := live.NewLocal(live.Options{MaxStreams: 1})
	srv := web.NewServer(web.Config{Replica: "shop1", LiveHeartbeat: 50 * time.Millisecond}, mustDB(t), session.NewMemory(session.Options{}), hub, diskPhotos(t, "shop1"))
	hs := newHTTPTest(srv)
	defer hs.Close()
	c := (&testShop{t: t, srv: hs}).client()

	s := c.openEvents("")
	s.next()
	if r := c.get("/events"); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("a second stream over the bound of 1: %d, Retry-After %q; want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	select {
	case e := <-s.events:
		if !e.comment {
			t.Errorf("idle stream: %+v, want a heartbeat comment", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat within 10s at a 50ms period")
	}
	// Past the server's read and write timeouts (1 s here), the stream
	// still carries events.
	time.Sleep(1500 * time.Millisecond)
	hub.PublishStock(t.Context(), 4, 44)
	if evs := s.until(live.TypeStock); evs[len(evs)-1].data != `{"product_id":4,"stock":44}` {
		t.Errorf("after the server timeouts: %+v", evs[len(evs)-1])
	}

	srv.Drain()
	var sawRetry bool
	for e, ok := s.next(); ok; e, ok = s.next() {
		sawRetry = sawRetry || e.retry != ""
	}
	if !sawRetry {
		t.Error("the drain ended the stream without a retry: hint")
	}
	// A stream asked of a draining replica: not a 503, which would end
	// an EventSource for good, but a retry: hint and nothing else.
	if r := c.get("/events"); r.status != http.StatusOK || !strings.HasPrefix(r.body, "retry: ") || strings.Contains(r.body, "event:") {
		t.Errorf("a stream while draining: %d %q, want 200 with only a retry: hint", r.status, r.body)
	}
}

// TestEventsDropAClientThatNeverReads: a browser that stops reading is
// dropped once its small buffer is full, whatever is published after.
func TestEventsDropAClientThatNeverReads(t *testing.T) {
	hub := live.NewLocal(live.Options{Buffer: 8, History: 16})
	shop := liveShop(t, hub, web.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(shop.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: shop\r\n\r\n")
	// The stream is open once the hub counts it.
	for deadline := time.Now().Add(10 * time.Second); hub.Stats().Open != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not open")
		}
	}
	// Far more than the socket buffers hold: the writes block, the
	// buffer fills, and the hub drops the stream rather than queue more.
	payload := 0
	for i := 0; hub.Stats().Dropped == 0 && i < 2_000_000; i++ {
		hub.PublishStock(t.Context(), int64(i%24+1), i)
		payload = i
		if i%1000 == 999 {
			time.Sleep(time.Millisecond) // let the writer fill the socket
		}
	}
	if st := hub.Stats(); st.Dropped != 1 {
		t.Fatalf("after %d events to a client that never reads: %+v, want it dropped", payload, st)
	}
	for deadline := time.Now().Add(10 * time.Second); hub.Stats().Open != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dropped stream is still counted open")
		}
	}
}

// newHTTPTest serves h with short server timeouts, as cmd/shop sets longer
// ones: a stream must outlive both (it lifts them per stream).
func newHTTPTest(h http.Handler) *httptest.Server {
	hs := httptest.NewUnstartedServer(h)
	hs.Config.ReadTimeout = time.Second
	hs.Config.WriteTimeout = time.Second
	hs.Start()
	return hs
}

func mustDB(t *testing.T) *store.DB {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestPagesCarryLiveStock: the product page's stock is marked for live.js
// and works without it; with -live local every page says live updates are
// this replica's only; the script is served from self (the CSP allows
// only that).
func TestPagesCarryLiveStock(t *testing.T) {
	shop := liveShop(t, live.NewLocal(live.Options{}), web.Config{})
	c := shop.client()
	p, _ := shop.db.Product(t.Context(), 1)
	r := c.get("/products/" + p.Slug)
	if got := r.doc.Find(`[data-testid="stock"] [data-live-stock="1"]`).Text(); got != fmt.Sprint(p.Stock) || !strings.HasSuffix(r.testid("stock"), "left") {
		t.Errorf("product page stock %q (%q), want %d marked data-live-stock=1, then 'left'", got, r.testid("stock"), p.Stock)
	}
	for _, path := range []string{"/", "/products/" + p.Slug, "/cart"} {
		page := c.get(path)
		if l := page.doc.Find(`[data-testid="live-line"]`); l.AttrOr("data-live", "") != "local" || !strings.Contains(l.Text(), "this replica's only") {
			t.Errorf("%s: live line %q (%s), want the local one saying this replica's only", path, l.Text(), l.AttrOr("data-live", ""))
		}
		if page.doc.Find(`script[src="/static/live.js"]`).Length() != 1 {
			t.Errorf("%s: no /static/live.js", path)
		}
	}
	if n := c.get("/").doc.Find(`[data-live-card] [data-live-stock]`).Length(); n < 24 {
		t.Errorf("catalog: %d cards with a live stock slot, want every product's", n)
	}
	var st struct{ Stock map[string]int }
	if r := c.get("/api/stock"); r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &st) != nil || st.Stock["1"] != p.Stock || len(st.Stock) < 24 {
		t.Errorf("/api/stock: %d %s, want every product's stock, product 1 at %d", r.status, r.body, p.Stock)
	}
	js := c.get("/static/live.js")
	if js.status != http.StatusOK || !strings.Contains(js.header.Get("Content-Type"), "javascript") || !strings.Contains(js.body, "EventSource") {
		t.Errorf("/static/live.js: %d %s", js.status, js.header.Get("Content-Type"))
	}
	if csp := js.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q does not allow scripts from self", csp)
	}
}

// TestEventsFreeTheirPlaceWhenTheClientLeaves: a browser that closes its
// stream frees its place in -live-max-streams at once, not at the next
// heartbeat (15 s here).
func TestEventsFreeTheirPlaceWhenTheClientLeaves(t *testing.T) {
	hub := live.NewLocal(live.Options{MaxStreams: 1})
	shop := liveShop(t, hub, web.Config{})
	c := shop.client()
	s := c.openEvents("")
	s.next()
	s.close()
	for deadline := time.Now().Add(5 * time.Second); hub.Stats().Open != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a closed stream still holds its place after 5s")
		}
	}
	if again := c.openEvents(""); again.resp.StatusCode != http.StatusOK {
		t.Errorf("a new stream after the first left: %d, want 200", again.resp.StatusCode)
	}
}

// TestMetricsLiveStreams: /metrics/live no longer reloads itself when
// scripts run (its meta refresh is inside noscript), has the favicon, and
// its stream sends the page's content as an event with an id.
func TestMetricsLiveStreams(t *testing.T) {
	shop := liveShop(t, live.NewLocal(live.Options{}), web.Config{})
	c := shop.client()
	page := c.get("/metrics/live")
	if page.doc.Find(`head > meta[http-equiv="refresh"]`).Length() != 0 {
		t.Error("/metrics/live has a meta refresh outside noscript")
	}
	if !strings.Contains(page.body, `<noscript><meta http-equiv="refresh"`) {
		t.Error("/metrics/live without JavaScript does not reload any more")
	}
	if page.doc.Find(`link[rel="icon"]`).Length() != 1 || page.doc.Find(`script[src="/static/metrics-live.js"]`).Length() != 1 {
		t.Error("/metrics/live lacks the favicon link or its script")
	}
	req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/metrics/live/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &sseStream{t: t, resp: resp, events: make(chan sseEvent, 16), cancel: func() {}}
	defer resp.Body.Close()
	go s.parse(resp.Body)
	e, _ := s.next()
	if e.typ != "live" || e.id == "" || !strings.Contains(e.data, `live-table`) {
		t.Errorf("/metrics/live/stream: %+v, want a live event with an id carrying the table", e)
	}
}

// noHijack hides the connection from the handler, as HTTP/2 would: the
// stream is then served on the request's own goroutine.
type noHijack struct{ w http.ResponseWriter }

func (n noHijack) Header() http.Header         { return n.w.Header() }
func (n noHijack) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noHijack) WriteHeader(status int)      { n.w.WriteHeader(status) }
func (n noHijack) Flush()                      { n.w.(http.Flusher).Flush() }

// TestEventsWithoutTakingTheConnectionOver: where the connection cannot be
// taken over, the stream still carries events and ends at the drain.
func TestEventsWithoutTakingTheConnectionOver(t *testing.T) {
	hub := live.NewLocal(live.Options{})
	srv := web.NewServer(web.Config{Replica: "shop1"}, mustDB(t), session.NewMemory(session.Options{}), hub, diskPhotos(t, "shop1"))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { srv.ServeHTTP(noHijack{w}, r) }))
	defer hs.Close()
	c := (&testShop{t: t, srv: hs}).client()
	s := c.openEvents("")
	if e, _ := s.next(); e.typ != live.TypeReady {
		t.Fatalf("first event %+v, want ready", e)
	}
	hub.PublishStock(t.Context(), 7, 70)
	if evs := s.until(live.TypeStock); evs[len(evs)-1].data != `{"product_id":7,"stock":70}` {
		t.Errorf("stock event %+v", evs[len(evs)-1])
	}
	srv.Drain()
	var sawRetry bool
	for e, ok := s.next(); ok; e, ok = s.next() {
		sawRetry = sawRetry || e.retry != ""
	}
	if !sawRetry {
		t.Error("the drain ended the stream without a retry: hint")
	}
}

// TestCheckoutReplayAnnouncesStockAgain: a checkout whose first attempt
// committed the order and died unanswered (a kill -9 before its events
// reached Redis) is retried with the same key; the replay announces the
// stock as it is now, so a tab is not left with the number from before.
// The browser resends the cookie it had before the first attempt (the
// cart in it still holds the lines, as if that answer never came).
func TestCheckoutReplayAnnouncesStockAgain(t *testing.T) {
	hub := live.NewLocal(live.Options{})
	shop := liveShopWith(t, session.Cookie, hub, web.Config{})
	buyer, watcher := shop.client(), shop.client()
	form := checkoutForm(buyer) // one of product 1
	unanswered := buyer.cookieValue("session")
	ws := watcher.openEvents("")
	ws.next() // ready

	if r := buyer.post("/checkout", form); r.status != http.StatusSeeOther {
		t.Fatalf("checkout: %d", r.status)
	}
	now, _ := shop.db.Product(t.Context(), 1)
	want := fmt.Sprintf(`{"product_id":1,"stock":%d}`, now.Stock)
	if evs := ws.until(live.TypeStock); evs[len(evs)-1].data != want {
		t.Fatalf("after the checkout: %+v, want %s", evs[len(evs)-1], want)
	}

	buyer.setCookie("session", unanswered)
	if r := buyer.post("/checkout", form); r.status != http.StatusSeeOther {
		t.Fatalf("the retry of the unanswered checkout: %d", r.status)
	}
	if got, _ := shop.db.Product(t.Context(), 1); got.Stock != now.Stock {
		t.Fatalf("the replay changed the stock %d → %d: it placed another order", now.Stock, got.Stock)
	}
	if evs := ws.until(live.TypeStock); evs[len(evs)-1].data != want {
		t.Errorf("after the replay: %+v, want the stock now, %s", evs[len(evs)-1], want)
	}
}

// TestCheckoutWhileLiveRedisStalls: with -live redis and Redis stalled,
// a checkout still places its order and answers 303 within about the
// Redis timeout (the event is a notification; the order is the work), a
// tab is told updates are paused, and gets the stock once Redis answers.
func TestCheckoutWhileLiveRedisStalls(t *testing.T) {
	r := testenv.StartRedis(t)
	rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
	hub := live.NewRedis(rc, live.Options{}, nil)
	t.Cleanup(func() { hub.Close(); rc.Close() })
	shop := liveShop(t, hub, web.Config{})
	// The server's own timeouts (cmd/shop: 30 s to write), not liveShop's
	// 1 s, which a checkout that waits the Redis timeout would exceed.
	shop.srv.Close()
	shop.srv = httptest.NewServer(shop.srv.Config.Handler)
	t.Cleanup(shop.srv.Close)
	buyer, watcher := shop.client(), shop.client()
	form := checkoutForm(buyer)
	// The hub's reader must have reached Redis: a stream opened before
	// starts at 0-0, as does one on a Stream that does not exist yet (a
	// product that does not exist makes it).
	var ws *sseStream
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hub.Publish(t.Context(), live.StockChanged(999, 0))
		ws = watcher.openEvents("")
		if e, _ := ws.next(); e.id != "0-0" {
			break
		}
		ws.close()
		if time.Now().After(deadline) {
			t.Fatal("the hub's reader did not reach Redis within 10s")
		}
	}

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			r.Resume()
		}
	}()
	start := time.Now()
	res := buyer.post("/checkout", form)
	if took, limit := time.Since(start), redisclient.DefaultTimeout+2*time.Second; took > limit {
		t.Errorf("checkout with Redis stalled took %s, want at most %s", took.Round(time.Millisecond), limit)
	}
	if res.status != http.StatusSeeOther {
		t.Fatalf("checkout with the live Redis stalled: %d, want 303 (the order stands)", res.status)
	}
	now, _ := shop.db.Product(t.Context(), 1)
	evs := ws.until(live.TypeNotice)
	if e := evs[len(evs)-1]; !strings.Contains(e.data, `"state":"paused"`) {
		t.Errorf("with Redis stalled the tab got %+v, want a paused notice", e)
	}

	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	want := fmt.Sprintf(`{"product_id":1,"stock":%d}`, now.Stock)
	if evs := ws.until(live.TypeStock); evs[len(evs)-1].data != want {
		t.Errorf("once Redis answered: %+v, want %s", evs[len(evs)-1], want)
	}
}
