package live_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/state"
)

// hub is what both hubs offer; the tests run the same claims on each.
type hub interface {
	Kind() string
	Open(ctx context.Context, lastID string, v live.Viewer) (*live.Stream, error)
	PublishStock(ctx context.Context, productID int64, stock int) error
	PublishOrder(ctx context.Context, o live.Order) error
	Drain()
	Close()
	Stats() live.Stats
	Describe(ctx context.Context) state.Description
}

// reader reads one stream event by event, skipping the hubs' warm-up
// events (product 999).
type reader struct {
	t   *testing.T
	s   *live.Stream
	buf []live.Event
}

func read(t *testing.T, s *live.Stream) *reader {
	r := &reader{t: t, s: s}
	for _, e := range s.Backlog {
		r.add(e)
	}
	return r
}

func (r *reader) add(e live.Event) {
	if e.Type == live.TypeStock && strings.Contains(string(e.Data), `"product_id":999`) {
		return
	}
	r.buf = append(r.buf, e)
}

// one returns the next event, failing after a generous wait.
func (r *reader) one() live.Event {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for len(r.buf) == 0 {
		evs, err := r.s.Next()
		if err != nil {
			r.t.Fatalf("stream ended: %v", err)
		}
		for _, e := range evs {
			r.add(e)
		}
		if len(r.buf) > 0 {
			break
		}
		select {
		case <-r.s.Wake():
		case <-deadline:
			r.t.Fatal("no event within 10s")
		}
	}
	e := r.buf[0]
	r.buf = r.buf[1:]
	return e
}

// until returns the events up to and including the first of type typ.
func (r *reader) until(typ string) []live.Event {
	r.t.Helper()
	var got []live.Event
	for {
		e := r.one()
		got = append(got, e)
		if e.Type == typ {
			return got
		}
	}
}

// ended waits for the stream to end and returns why.
func ended(t *testing.T, s *live.Stream) error {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := s.Next(); err != nil {
			return err
		}
		select {
		case <-s.Wake():
		case <-deadline:
			t.Fatal("stream still open after 10s")
		}
	}
}

func stockOf(t *testing.T, e live.Event) (id int64, stock int) {
	t.Helper()
	var v struct {
		ProductID int64 `json:"product_id"`
		Stock     int   `json:"stock"`
	}
	if err := json.Unmarshal(e.Data, &v); err != nil || e.Type != live.TypeStock {
		t.Fatalf("event %s %s: not a stock event (%v)", e.Type, e.Data, err)
	}
	return v.ProductID, v.Stock
}

func noticeState(e live.Event) string {
	var v struct{ State string }
	json.Unmarshal(e.Data, &v)
	return v.State
}

// eachHub runs f on a LocalHub and on a RedisHub over a fresh Redis.
func eachHub(t *testing.T, opts live.Options, f func(t *testing.T, newHub func() hub)) {
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		h := live.NewLocal(opts)
		t.Cleanup(h.Close)
		f(t, func() hub { return h })
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedis(t)
		f(t, func() hub { return newRedisHub(t, r.Addr(), opts) })
	})
}

func newRedisHub(t *testing.T, addr string, opts live.Options) *live.RedisHub {
	rc := redisclient.New(redisclient.Config{Addr: addr})
	h := live.NewRedis(rc, opts, nil)
	t.Cleanup(func() { h.Close(); rc.Close() })
	waitLive(t, h)
	return h
}

// waitLive waits until a Redis hub's reader has reached Redis: a stream
// opened before starts at 0-0.
func waitLive(t *testing.T, h *live.RedisHub) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s, err := h.Open(t.Context(), "", live.Viewer{})
		if err != nil {
			t.Fatal(err)
		}
		start := s.Start
		s.Close()
		if start != "0-0" {
			return
		}
		// A fresh Redis has no stream: publish once so it has a position.
		h.PublishStock(t.Context(), 999, 0)
	}
	t.Fatal("the hub's reader did not reach Redis within 10s")
}

func TestPublishReachesStreamsAndOrdersOnlyTheirOwner(t *testing.T) {
	eachHub(t, live.Options{}, func(t *testing.T, newHub func() hub) {
		h := newHub()
		ann, err := h.Open(t.Context(), "", live.Viewer{SessionID: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		defer ann.Close()
		bob, _ := h.Open(t.Context(), "", live.Viewer{SessionID: "bob", AccountID: 7})
		defer bob.Close()

		h.PublishOrder(t.Context(), live.Order{ID: "o-ann", SessionID: "ann", Status: "placed"})
		h.PublishOrder(t.Context(), live.Order{ID: "o-bob", AccountID: 7, SessionID: "other-device", Status: "placed"})
		h.PublishStock(t.Context(), 3, 97)

		for _, c := range []struct {
			name   string
			s      *live.Stream
			wantID string
		}{{"ann", ann, "o-ann"}, {"bob", bob, "o-bob"}} {
			// Events arrive in publishing order: once the stock event is
			// here, every order event this stream will get is too.
			evs := read(t, c.s).until(live.TypeStock)
			if id, stock := stockOf(t, evs[len(evs)-1]); id != 3 || stock != 97 {
				t.Errorf("%s: stock event %d=%d, want 3=97", c.name, id, stock)
			}
			var orders []string
			for _, e := range evs {
				if e.Type == live.TypeOrder {
					var v struct {
						OrderID string `json:"order_id"`
					}
					json.Unmarshal(e.Data, &v)
					orders = append(orders, v.OrderID)
				}
			}
			if len(orders) != 1 || orders[0] != c.wantID {
				t.Errorf("%s got orders %v, want only [%s]", c.name, orders, c.wantID)
			}
		}
	})
}

func TestResumeAfterLastEventID(t *testing.T) {
	eachHub(t, live.Options{}, func(t *testing.T, newHub func() hub) {
		h := newHub()
		first, _ := h.Open(t.Context(), "", live.Viewer{})
		// watcher stays: once it has an event, the hub has handed it out.
		watcher, _ := h.Open(t.Context(), "", live.Viewer{})
		defer watcher.Close()
		w := read(t, watcher)
		h.PublishStock(t.Context(), 1, 10)
		seen := read(t, first).until(live.TypeStock)
		last := seen[len(seen)-1].ID
		first.Close()
		w.one()

		// Gone while two more changes happen, then back with its id.
		h.PublishStock(t.Context(), 1, 9)
		h.PublishStock(t.Context(), 2, 50)
		w.one()
		w.one()

		again, err := h.Open(t.Context(), last, live.Viewer{})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if again.Start != last {
			t.Errorf("resumed stream starts at %q, want the browser's %q", again.Start, last)
		}
		r := read(t, again)
		for _, want := range [][2]int64{{1, 9}, {2, 50}} {
			if id, stock := stockOf(t, r.one()); id != want[0] || int64(stock) != want[1] {
				t.Errorf("resumed event %d=%d, want %d=%d", id, stock, want[0], want[1])
			}
		}

		// An id this hub never gave: a missed notice, then events go on.
		other, _ := h.Open(t.Context(), "nobody:42", live.Viewer{})
		defer other.Close()
		or := read(t, other)
		if e := or.one(); e.Type != live.TypeNotice || noticeState(e) != live.NoticeMissed {
			t.Errorf("foreign Last-Event-ID: first event %s %s, want a missed notice", e.Type, e.Data)
		}
	})
}

func TestBoundsAndDrain(t *testing.T) {
	eachHub(t, live.Options{MaxStreams: 2, Buffer: 4}, func(t *testing.T, newHub func() hub) {
		h := newHub()
		slow, err := h.Open(t.Context(), "", live.Viewer{})
		if err != nil {
			t.Fatal(err)
		}
		fast, err := h.Open(t.Context(), "", live.Viewer{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Open(t.Context(), "", live.Viewer{}); !errors.Is(err, live.ErrTooManyStreams) {
			t.Fatalf("third stream over MaxStreams 2: err %v, want ErrTooManyStreams", err)
		}
		// slow never reads: past 4 waiting events it is dropped, and fast,
		// which reads, gets all of them.
		fr := read(t, fast)
		for i := range 6 {
			h.PublishStock(t.Context(), 1, 100-i)
			if _, stock := stockOf(t, fr.one()); stock != 100-i {
				t.Fatalf("fast stream got stock %d, want %d", stock, 100-i)
			}
		}
		if err := ended(t, slow); !errors.Is(err, live.ErrSlow) {
			t.Errorf("a stream that never reads ended with %v, want ErrSlow", err)
		}
		if st := h.Stats(); st.Dropped != 1 || st.Refused != 1 || st.Open != 1 {
			t.Errorf("stats %+v, want 1 dropped, 1 refused, 1 open", st)
		}
		// Its place is free again.
		s3, err := h.Open(t.Context(), "", live.Viewer{})
		if err != nil {
			t.Fatalf("a stream after the slow one was dropped: %v", err)
		}
		if d := h.Describe(t.Context()); d.Kind != "live" || d.HeldHere != 2 {
			t.Errorf("Describe = %+v, want kind live holding 2", d)
		}

		h.Drain()
		for _, s := range []*live.Stream{fast, s3} {
			if err := ended(t, s); !errors.Is(err, live.ErrDraining) {
				t.Errorf("stream after Drain ended with %v, want ErrDraining", err)
			}
		}
		if _, err := h.Open(t.Context(), "", live.Viewer{}); !errors.Is(err, live.ErrDraining) {
			t.Errorf("Open while draining: %v, want ErrDraining", err)
		}
	})
}

// Two replicas' hubs on one Redis: what one publishes reaches the other's
// streams, a browser resumes on the other with the first one's id, and
// while Redis is away streams stay open, paused, and resume by themselves
// with what was published meanwhile.
func TestRedisFanOutResumeAndOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	a := newRedisHub(t, r.Addr(), live.Options{})
	c := newRedisHub(t, r.Addr(), live.Options{})

	onA, _ := a.Open(t.Context(), "", live.Viewer{})
	onC, _ := c.Open(t.Context(), "", live.Viewer{})
	defer onC.Close()
	ra, rc := read(t, onA), read(t, onC)
	a.PublishStock(t.Context(), 5, 42)
	if id, stock := stockOf(t, rc.until(live.TypeStock)[0]); id != 5 || stock != 42 {
		t.Errorf("C's stream got %d=%d from A, want 5=42", id, stock)
	}
	got := ra.until(live.TypeStock)
	last := got[len(got)-1].ID
	onA.Close() // A dies, its browser's position in hand

	a.PublishStock(t.Context(), 5, 41)
	rc.until(live.TypeStock)
	resumed, _ := c.Open(t.Context(), last, live.Viewer{})
	defer resumed.Close()
	if id, stock := stockOf(t, read(t, resumed).one()); id != 5 || stock != 41 {
		t.Errorf("resumed on C after A's id: %d=%d, want the missed 5=41", id, stock)
	}

	// Redis away: a paused notice; a change published meanwhile waits.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if e := rc.one(); e.Type != live.TypeNotice || noticeState(e) != live.NoticePaused {
		t.Fatalf("with Redis stopped: %s %s, want a paused notice", e.Type, e.Data)
	}
	a.PublishStock(t.Context(), 6, 7)
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := rc.until(live.TypeStock)
	if e := evs[0]; e.Type != live.TypeNotice || noticeState(e) != live.NoticeLive {
		t.Errorf("with Redis back: first %s %s, want a live notice", e.Type, e.Data)
	}
	if id, stock := stockOf(t, evs[len(evs)-1]); id != 6 || stock != 7 {
		t.Errorf("after the outage: %d=%d, want the change made during it, 6=7", id, stock)
	}
}

// A browser away longer than the Stream's history is told it missed
// events, rather than silently handed what is left.
func TestRedisTrimmedHistoryIsMissed(t *testing.T) {
	r := testenv.StartRedis(t)
	h := newRedisHub(t, r.Addr(), live.Options{History: 10})
	s, _ := h.Open(t.Context(), "", live.Viewer{})
	rs := read(t, s)
	h.PublishStock(t.Context(), 1, 1000)
	first := rs.one().ID
	for i := range 300 {
		h.PublishStock(t.Context(), int64(i%20+1), i)
		rs.one()
	}
	s.Close()
	late, _ := h.Open(t.Context(), first, live.Viewer{})
	defer late.Close()
	if e := read(t, late).one(); e.Type != live.TypeNotice || noticeState(e) != live.NoticeMissed {
		t.Errorf("resuming before the trimmed history: %s %s, want a missed notice", e.Type, e.Data)
	}
}

// slowLink is a TCP link to Redis that a test can slow down and cut, for
// a hub that stands for a replica: bytes from the hub wait delay before
// they go on, and kill drops the link with whatever is still on its way,
// as a kill -9 drops what a replica had not yet got to Redis.
type slowLink struct {
	ln    net.Listener
	up    string
	delay atomic.Int64 // nanoseconds

	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

func newSlowLink(t *testing.T, upstream string) *slowLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln, up: upstream}
	t.Cleanup(l.kill)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			if !l.track(c, u) {
				return
			}
			go io.Copy(c, u)
			go l.forward(u, c)
		}
	}()
	return l
}

func (l *slowLink) addr() string { return l.ln.Addr().String() }

func (l *slowLink) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	l.conns = append(l.conns, cs...)
	return true
}

// forward copies the hub's bytes to Redis, each read after the delay; a
// read still waiting when the link is killed never arrives.
func (l *slowLink) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(time.Duration(l.delay.Load()))
			l.mu.Lock()
			dead := l.dead
			l.mu.Unlock()
			if dead {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// kill cuts the link for good: the replica behind it is gone.
func (l *slowLink) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	l.dead = true
	l.ln.Close()
	for _, c := range l.conns {
		c.Close()
	}
}

// A replica that dies right after a request answered (its events
// published) loses none of them: Publish returns only once they are in the
// Stream. The link is slow, so an event still on its way to Redis when
// Publish returns is lost with the replica.
func TestRedisPublishOutlivesTheReplica(t *testing.T) {
	r := testenv.StartRedis(t)
	link := newSlowLink(t, r.Addr())
	h := newRedisHub(t, link.addr(), live.Options{})

	link.delay.Store(int64(300 * time.Millisecond))
	err := h.Publish(t.Context(), live.StockChanged(4, 96), live.OrderChanged(live.Order{ID: "o-1", SessionID: "ann", Status: "placed"}))
	// The checkout answers here; the replica is killed right after.
	link.kill()
	h.Close()
	if err != nil {
		t.Fatalf("Publish over a slow but working Redis: %v", err)
	}

	// What any other replica finds in the Stream.
	rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
	defer rc.Close()
	entries, _, err := rc.EventLog(live.StreamKey, 100).Since(t.Context(), "0-0", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if !strings.Contains(string(e.Data), `"product_id":999`) {
			got = append(got, e.Kind+" "+string(e.Data))
		}
	}
	want := []string{`stock {"product_id":4,"stock":96}`, `order {"order_id":"o-1","status":"placed"}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the Stream after the replica died right after publishing holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Redis stalled at checkout: Publish gives up within the client's timeout
// and says the events wait in memory; while they wait it does not make
// the next request wait again, Describe says a kill -9 would lose them,
// and once Redis answers they reach the streams, in order, once each, and
// a live notice after them.
func TestRedisPublishWhileRedisStalls(t *testing.T) {
	r := testenv.StartRedis(t)
	h := newRedisHub(t, r.Addr(), live.Options{})
	s, _ := h.Open(t.Context(), "", live.Viewer{})
	defer s.Close()
	rs := read(t, s)

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
	err := h.PublishStock(t.Context(), 1, 41)
	// The bound is the client's timeout; slack for a loaded machine.
	if took := time.Since(start); took > redisclient.DefaultTimeout+2*time.Second {
		t.Errorf("Publish with Redis stalled took %s, want about the client's timeout (%s)", took.Round(time.Millisecond), redisclient.DefaultTimeout)
	}
	if !errors.Is(err, live.ErrDelayed) {
		t.Fatalf("Publish with Redis stalled: %v, want ErrDelayed", err)
	}
	// Already known to be behind: queued at once, without another attempt.
	if err := h.PublishStock(t.Context(), 2, 52); !errors.Is(err, live.ErrDelayed) {
		t.Fatalf("a second Publish while the first waits: %v, want ErrDelayed", err)
	}
	if d := h.Describe(t.Context()); !d.LostIfKilled || d.Loses != "2 live events waiting for Redis" || !strings.Contains(d.Note, "2 events wait in this replica's memory") {
		t.Errorf("Describe with 2 events waiting: %+v; want lost_if_killed, the headline's words and a note that says so", d)
	}
	if st := h.Stats(); st.Delayed != 2 {
		t.Errorf("Stats.Delayed = %d, want 2", st.Delayed)
	}

	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	var got [][2]int
	for len(got) < 2 {
		if e := rs.one(); e.Type == live.TypeStock {
			id, stock := stockOf(t, e)
			got = append(got, [2]int{int(id), stock})
		}
	}
	if got[0] != [2]int{1, 41} || got[1] != [2]int{2, 52} {
		t.Errorf("after Redis answered the stream got %v, want [1 41] then [2 52]", got)
	}
	// Late: a number among them may be older than one another replica
	// appended meanwhile, so a live notice follows them, on which the
	// pages read the stock afresh.
	// (The reader's own notices, about its connection, carry no id.)
	for {
		evs := rs.until(live.TypeNotice)
		if n := evs[len(evs)-1]; n.ID != "" {
			if noticeState(n) != live.NoticeLive {
				t.Errorf("after the late events: %+v, want a live notice from the Stream", n)
			}
			break
		}
	}
	for deadline := time.Now().Add(10 * time.Second); h.Describe(t.Context()).LostIfKilled; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Describe still says events wait: %+v", h.Describe(t.Context()))
		}
	}
	// Caught up: Publish appends by itself again, before it returns.
	if err := h.PublishStock(t.Context(), 3, 63); err != nil {
		t.Errorf("Publish after Redis came back: %v", err)
	}
}

// BenchmarkRedisPublish is what a checkout of one product spends
// announcing it: its stock and its order, appended before it answers.
func BenchmarkRedisPublish(b *testing.B) {
	r := testenv.StartRedis(b)
	rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
	h := live.NewRedis(rc, live.Options{}, nil)
	b.Cleanup(func() { h.Close(); rc.Close() })
	o := live.Order{ID: "o-1", SessionID: "ann", Status: "placed"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := h.Publish(b.Context(), live.StockChanged(int64(i%24+1), i), live.OrderChanged(o)); err != nil {
			b.Fatal(err)
		}
	}
}
