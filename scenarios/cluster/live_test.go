package cluster_test

// Live events (GET /events, -live redis) through real nginx in front of
// real replicas and one real Redis: fan-out between replicas, a browser
// resuming with Last-Event-ID on another replica after a kill -9, the
// drain with open streams, the bound, and a client that never reads.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/scenarios/cluster"
)

// event is one server-sent event as a browser sees it.
type event struct {
	id, typ, data, retry string
}

// eventStream is one open GET /events, read in the background.
type eventStream struct {
	t        *testing.T
	servedBy string
	status   int
	header   http.Header
	events   chan event
	cancel   context.CancelFunc
}

// openStream opens GET base/events with lastID as Last-Event-ID.
func openStream(t *testing.T, base, lastID string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s/events: %v", base, err)
	}
	s := &eventStream{t: t, servedBy: resp.Header.Get("X-Served-By"), status: resp.StatusCode, header: resp.Header,
		events: make(chan event, 4096), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		readEvents(resp.Body, func(e event) { s.events <- e })
	}()
	return s
}

// readEvents reads a text/event-stream until it ends, handing each event
// to emit at the blank line that ends it.
func readEvents(body io.Reader, emit func(event)) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var e event
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), ": ")
		switch name {
		case "":
			if e != (event{}) {
				emit(e)
			}
			e = event{}
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

// next is the next event; ok is false once the stream ended.
func (s *eventStream) next() (event, bool) {
	s.t.Helper()
	select {
	case e, ok := <-s.events:
		return e, ok
	case <-time.After(20 * time.Second):
		s.t.Fatalf("stream on %s: no event within 20s", s.servedBy)
		return event{}, false
	}
}

// stock reads up to n stock events, with the last event's id.
func (s *eventStream) stock(n int) (data []string, lastID string) {
	s.t.Helper()
	for len(data) < n {
		e, ok := s.next()
		if !ok {
			s.t.Fatalf("stream on %s ended after %v", s.servedBy, data)
		}
		if e.typ == live.TypeStock {
			data = append(data, e.data)
		}
		lastID = e.id
	}
	return data, lastID
}

// buy checks out one unit of productID through base; the stock left
// follows in the event.
func buy(t *testing.T, base string, productID int) {
	t.Helper()
	s := newShopper(t, base)
	r, err := s.do(http.MethodPost, "/checkout", checkoutForm(t, s, productID))
	if err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("checkout through %s: %v %d", base, err, r.status)
	}
}

var stockRE = regexp.MustCompile(`^\{"product_id":(\d+),"stock":(\d+)\}$`)

func TestLiveEventsThroughNginx(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Env: []string{"SHOP_LIVE=redis", "SHOP_LIVE_MAX_STREAMS=3"}})
	nginx := c.URL()

	t.Run("fan-out", func(t *testing.T) {
		viaNginx := openStream(t, nginx, "")
		if viaNginx.status != http.StatusOK || viaNginx.servedBy == "" {
			t.Fatalf("GET /events through nginx: %d from %q", viaNginx.status, viaNginx.servedBy)
		}
		if e, _ := viaNginx.next(); e.typ != live.TypeReady || e.id == "" {
			t.Fatalf("first event %+v, want ready with an id", e)
		}
		// Bought on a replica other than the stream's.
		var other *cluster.Replica
		for _, r := range c.Replicas() {
			if r.Name() != viaNginx.servedBy {
				other = r
			}
		}
		buy(t, other.URL(), 3)
		data, id := viaNginx.stock(1)
		m := stockRE.FindStringSubmatch(data[0])
		if m == nil || m[1] != "3" || id == "" {
			t.Errorf("stream on %s after a checkout on %s: %q id %q, want product 3's stock with an id", viaNginx.servedBy, other.Name(), data[0], id)
		}
	})

	t.Run("resume on another replica after kill -9", func(t *testing.T) {
		s := openStream(t, nginx, "")
		ready, _ := s.next()
		holder := c.Replica(s.servedBy)
		if err := holder.Kill(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := holder.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		}()
		// While the browser is away: two changes, made through nginx.
		buy(t, nginx, 5)
		buy(t, nginx, 5)
		again := openStream(t, nginx, ready.id)
		if again.servedBy == holder.Name() || again.status != http.StatusOK {
			t.Fatalf("reconnect through nginx: %d from %q, the killed replica was %s", again.status, again.servedBy, holder.Name())
		}
		if e, _ := again.next(); e.typ != live.TypeReady || e.id != ready.id {
			t.Errorf("resumed on %s: %+v, want ready at the browser's id %s", again.servedBy, e, ready.id)
		}
		data, _ := again.stock(2)
		m1, m2 := stockRE.FindStringSubmatch(data[0]), stockRE.FindStringSubmatch(data[1])
		if m1 == nil || m2 == nil || m1[1] != "5" || m2[1] != "5" || atoi(m2[2]) != atoi(m1[2])-1 {
			t.Errorf("resumed on %s: %v, want both changes of product 5 made while away, in order", again.servedBy, data)
		}
	})

	t.Run("drain ends streams with retry", func(t *testing.T) {
		s := openStream(t, nginx, "")
		s.next()
		holder := c.Replica(s.servedBy)
		start := time.Now()
		if err := holder.Term(); err != nil {
			t.Fatal(err)
		}
		var retry string
		for e, ok := s.next(); ok; e, ok = s.next() {
			if e.retry != "" {
				retry = e.retry
			}
		}
		took := time.Since(start)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		code, err := holder.Wait(ctx)
		if retry == "" {
			t.Error("the draining replica ended the stream without a retry: hint")
		}
		// The stream ends at the start of the drain (300 ms here), not
		// when the process exits; generous for a loaded machine.
		if took > 5*time.Second {
			t.Errorf("the stream ended %v after SIGTERM; want at the start of the drain", took)
		}
		if err != nil || code != 0 {
			t.Errorf("replica with an open stream exited %d (%v), want 0 within its shutdown timeout", code, err)
		}
		if err := holder.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bound", func(t *testing.T) {
		// SHOP_LIVE_MAX_STREAMS=3: fill every replica directly...
		for _, r := range c.Replicas() {
			for range 3 {
				if s := openStream(t, r.URL(), ""); s.status != http.StatusOK {
					t.Fatalf("stream %s: %d", r.Name(), s.status)
				} else {
					defer s.cancel()
				}
			}
		}
		// ... then one more through nginx: a 503 with Retry-After.
		s := openStream(t, nginx, "")
		if s.status != http.StatusServiceUnavailable || s.header.Get("Retry-After") == "" {
			t.Errorf("a stream past every replica's bound through nginx: %d Retry-After %q, want 503 with Retry-After", s.status, s.header.Get("Retry-After"))
		}
	})

	t.Run("client that never reads", func(t *testing.T) {
		// The bound's streams were just closed: a replica frees their
		// places once it notices, so a 503 may come first.
		var conn net.Conn
		var resp *http.Response
		for start := time.Now(); ; {
			var err error
			conn, err = net.Dial("tcp", strings.TrimPrefix(nginx, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(nginx, "http://"))
			resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
			conn.Close()
			if time.Since(start) > 10*time.Second {
				t.Fatalf("GET /events: %v %v", err, resp)
			}
			time.Sleep(200 * time.Millisecond)
		}
		defer conn.Close()
		holder := c.Replica(resp.Header.Get("X-Served-By"))
		// From here on the client reads nothing. Big events, as another
		// replica would append them, fill nginx's and the sockets'
		// buffers until the replica's writes block and it drops the
		// stream rather than queue more.
		rc := redisclient.New(redisclient.Config{Addr: c.Redis().Addr()})
		defer rc.Close()
		log := rc.EventLog(live.StreamKey, 100)
		big := []byte(`{"product_id":1,"stock":1,"pad":"` + strings.Repeat("x", 64<<10) + `"}`)
		deadline := time.Now().Add(60 * time.Second)
		for dropped(t, holder) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("a client that never read was not dropped within 60s")
			}
			batch := make([]redisclient.StreamEvent, 16)
			for i := range batch {
				batch[i] = redisclient.StreamEvent{Kind: live.TypeStock, Data: big}
			}
			if _, err := log.Append(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The replica still serves: pages and other streams.
		if r, err := http.Get(holder.URL() + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
			t.Errorf("%s after dropping the stream: %v", holder.Name(), err)
		}
	})
}

// dropped reads shop_live_streams_dropped_total from r's /metrics.
func dropped(t *testing.T, r *cluster.Replica) int {
	t.Helper()
	resp, err := http.Get(r.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^shop_live_streams_dropped_total\{[^}]*\} (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s /metrics has no shop_live_streams_dropped_total", r.Name())
	}
	return atoi(string(m[1]))
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
