// Package live keeps the shop's live connections: the Server-Sent Event
// streams behind GET /events, and the events they carry (stock changes,
// a session's own order changes). A live connection is the most stateful
// thing a replica holds: it pins a browser to one process, and an event
// that happens on another replica must still reach it.
//
// Two hubs sit side by side, chosen by -live:
//
//   - LocalHub (local) keeps everything in this process: events reach only
//     the browsers connected to the replica where they happened, and the
//     history a reconnecting browser resumes from dies with the replica.
//   - RedisHub (redis) fans every event out through one capped Redis
//     Stream that each replica follows with one reader (not one per
//     browser); the same Stream is the history, so a browser resumes with
//     Last-Event-ID on any replica. Publish returns once the event is in
//     the Stream, so the request that made it is answered only after it is
//     safe from this replica's death (see RedisHub.Publish for when Redis
//     does not answer in time).
//
// Both bound what they hold: at most MaxStreams streams, and at most
// Buffer events waiting for one stream, past which the stream is dropped
// (its browser reconnects and resumes) rather than buffered without bound.
package live

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// The kinds of hub, as -live names them.
const (
	Local = "local"
	Redis = "redis"
)

// CheckKind reports whether kind is a hub kind, for -live.
func CheckKind(kind string) error {
	if kind == Local || kind == Redis {
		return nil
	}
	return fmt.Errorf("allowed values are %s and %s", Local, Redis)
}

// The event types a stream carries (the SSE "event:" field).
const (
	// TypeReady opens every stream: its id is where the stream starts.
	TypeReady = "ready"
	// TypeStock is {"product_id":N,"stock":M}: a product's stock changed.
	TypeStock = "stock"
	// TypeOrder is {"order_id":"...","status":"..."}: one of the viewing
	// session's own orders changed.
	TypeOrder = "order"
	// TypeNotice is {"state":"...","message":"..."} about the stream
	// itself: NoticePaused, NoticeLive, NoticeMissed.
	TypeNotice = "notice"
)

// The states a notice announces.
const (
	// NoticePaused: events cannot arrive for now (Redis is away); the
	// stream stays open and they resume by themselves.
	NoticePaused = "paused"
	// NoticeLive: events arrive again after a pause.
	NoticeLive = "live"
	// NoticeMissed: the stream could not resume where the browser left
	// off; what happened in between is not coming. Reload for the truth.
	NoticeMissed = "missed"
)

// Errors a stream ends with, or Open refuses with.
var (
	// ErrTooManyStreams: the replica holds MaxStreams streams already.
	ErrTooManyStreams = errors.New("live: too many open streams on this replica")
	// ErrDraining: the replica is stopping; the browser should reconnect
	// elsewhere.
	ErrDraining = errors.New("live: replica draining")
	// ErrSlow: the browser did not read its stream fast enough; the
	// stream was dropped instead of buffered further.
	ErrSlow = errors.New("live: stream dropped: the client is not reading")
	// ErrResume: the stream opened while its history could not be read;
	// reconnecting (with Last-Event-ID) now reads it.
	ErrResume = errors.New("live: reconnect to resume")
	// ErrClosed: the hub is closed.
	ErrClosed = errors.New("live: hub closed")
	// ErrDelayed: Redis did not take the events within its timeout (or is
	// known to be away). They wait in this replica's memory and are
	// appended when Redis answers; a kill -9 before then loses them.
	ErrDelayed = errors.New("live: Redis did not take the events in time; they wait in this replica's memory")
)

// Event is one event as a stream writes it.
type Event struct {
	// ID is the event's id: a Redis stream id with RedisHub, "boot:seq"
	// with LocalHub. A notice has none of its own: the stream writes its
	// current position, so a browser's Last-Event-ID never moves past an
	// event it did not get.
	ID string
	// Type is one of the Type constants.
	Type string
	// Data is the event's JSON.
	Data []byte
	// scope is who may see it: "" everyone, else a viewer scope.
	scope string
	// once names the event while it is being published (RedisHub), so
	// that a retried append adds it once.
	once string
}

// Viewer is whom a stream is for: order events reach only their owner's
// streams, by the session's stable id or the logged-in account.
type Viewer struct {
	SessionID string
	AccountID int64
}

// sees reports whether the viewer may see an event of scope.
func (v Viewer) sees(scope string) bool {
	return scope == "" ||
		v.SessionID != "" && scope == sessionScope(v.SessionID) ||
		v.AccountID != 0 && scope == accountScope(v.AccountID)
}

func (v Viewer) scopes() []string {
	var s []string
	if v.SessionID != "" {
		s = append(s, sessionScope(v.SessionID))
	}
	if v.AccountID != 0 {
		s = append(s, accountScope(v.AccountID))
	}
	return s
}

func sessionScope(sid string) string { return "session:" + sid }
func accountScope(id int64) string   { return "account:" + strconv.FormatInt(id, 10) }

// Order is an order's change as its publisher (checkout, the background
// jobs) announces it. Exactly its owner's streams get it: the account when
// AccountID is set, else the session that placed it.
type Order struct {
	ID        string
	AccountID int64
	SessionID string
	// Status is the order's new state, e.g. "placed", "receipt ready".
	Status string
}

func (o Order) scope() string {
	if o.AccountID != 0 {
		return accountScope(o.AccountID)
	}
	return sessionScope(o.SessionID)
}

// StockChanged is the event that a product's stock is now stock.
func StockChanged(productID int64, stock int) Event {
	data, _ := json.Marshal(struct {
		ProductID int64 `json:"product_id"`
		Stock     int   `json:"stock"`
	}{productID, stock})
	return Event{Type: TypeStock, Data: data}
}

// OrderChanged is the event that an order changed, for its owner only.
func OrderChanged(o Order) Event {
	data, _ := json.Marshal(struct {
		OrderID string `json:"order_id"`
		Status  string `json:"status"`
	}{o.ID, o.Status})
	return Event{Type: TypeOrder, Data: data, scope: o.scope()}
}

// key is what a newer event of the same thing replaces, while events wait
// to be published: only the latest stock of a product matters.
func (e Event) key() string {
	if e.Type == TypeStock || e.Type == TypeOrder {
		var v struct {
			ProductID int64  `json:"product_id"`
			OrderID   string `json:"order_id"`
		}
		if json.Unmarshal(e.Data, &v) == nil {
			return e.Type + ":" + strconv.FormatInt(v.ProductID, 10) + ":" + v.OrderID
		}
	}
	return ""
}

func notice(state, message string) Event {
	data, _ := json.Marshal(struct {
		State   string `json:"state"`
		Message string `json:"message"`
	}{state, message})
	return Event{Type: TypeNotice, Data: data}
}

// Options bound a hub.
type Options struct {
	// MaxStreams is how many streams the replica holds at most; 0 means
	// DefaultMaxStreams.
	MaxStreams int
	// Buffer is how many events may wait for one stream before it is
	// dropped; 0 means DefaultBuffer.
	Buffer int
	// History is how many events the hub keeps for browsers that resume:
	// LocalHub in memory, RedisHub as the Stream's MAXLEN. 0 means
	// DefaultHistory.
	History int
}

// Defaults for Options.
const (
	DefaultMaxStreams = 10000
	DefaultBuffer     = 64
	DefaultHistory    = 10000
)

func (o Options) withDefaults() Options {
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	return o
}

// Stats counts what a hub did since it started.
type Stats struct {
	Open      int   // streams open now
	Opened    int64 // streams ever opened
	Refused   int64 // Opens refused by MaxStreams
	Dropped   int64 // streams dropped for not reading (ErrSlow)
	Delivered int64 // events handed to streams
	Published int64 // events published from this replica
	// Delayed counts events Redis did not take before their request was
	// answered: they waited in this replica's memory (RedisHub only).
	Delayed int64
	Lost    int64 // events this replica could not publish (queue full)
}

// Stream is one open stream. Its owner writes Start, then Backlog, then
// whatever Next hands out, until Next returns an error.
type Stream struct {
	// Start is where the stream begins: the id of its ready event.
	Start string
	// Backlog is what the stream writes right after its ready event:
	// the events the browser missed since its Last-Event-ID, and any
	// notice (missed, paused) that applies from the start.
	Backlog []Event

	hub    *streams
	viewer Viewer
	wake   chan struct{} // one token: there is something for Next
	// notify, when set, is called (under mu, so it must not block) each
	// time the stream has something for Next: for owners that serve many
	// streams from a few goroutines instead of waiting on Wake.
	notify func()

	mu    sync.Mutex
	queue []Event
	err   error  // why the stream ended; nil while open
	after string // the last id handed out: older events are duplicates
	// gap: the backlog could not be read (Redis away); the stream must
	// not hand out anything newer, which would move the browser's
	// position past what it missed, and ends with ErrResume instead.
	gap bool
}

// Wake is signalled whenever Next has something to return.
func (s *Stream) Wake() <-chan struct{} { return s.wake }

// SetNotify makes f be called whenever Next has something to return, and
// once now. f must not block.
func (s *Stream) SetNotify(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = f
	f()
}

// Next returns the events waiting for the stream, or why it ended.
func (s *Stream) Next() ([]Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	evs := s.queue
	s.queue = nil
	return evs, nil
}

// Close ends the stream and forgets it.
func (s *Stream) Close() {
	s.end(ErrClosed)
	s.hub.remove(s)
}

// Drop ends the stream as one whose client does not read (ErrSlow, counted
// in Stats.Dropped): its owner found a write to it blocked.
func (s *Stream) Drop() {
	s.end(ErrSlow)
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if _, ok := s.hub.all[s]; ok {
		s.hub.dropped.Add(1)
		s.hub.removeLocked(s)
	}
}

// push queues e; it reports false when the stream must be dropped for not
// reading.
func (s *Stream) push(e Event) bool {
	if !s.viewer.sees(e.scope) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return true
	}
	if s.gap {
		s.err = ErrResume
		s.signal()
		return true
	}
	if e.ID != "" {
		if s.after != "" && !s.hub.newer(e.ID, s.after) {
			return true // already in the backlog
		}
		s.after = e.ID
	}
	if len(s.queue) >= s.hub.opts.Buffer {
		s.err = ErrSlow
		s.queue = nil
		s.signal()
		return false
	}
	s.queue = append(s.queue, e)
	s.signal()
	return true
}

// settle records the backlog read after the stream was registered: what
// the queue already holds up to floor (the browser's own position, or the
// backlog's last event if later) is dropped, and nothing up to it is
// queued from now on. gap marks a backlog that could not be read.
func (s *Stream) settle(backlog []Event, floor string, gap bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Backlog = backlog
	s.gap = gap
	for _, e := range backlog {
		if e.ID != "" && (floor == "" || s.hub.newer(e.ID, floor)) {
			floor = e.ID
		}
	}
	if floor != "" {
		kept := s.queue[:0]
		for _, e := range s.queue {
			if e.ID == "" || s.hub.newer(e.ID, floor) {
				kept = append(kept, e)
			}
		}
		s.queue = kept
		if s.hub.newer(floor, s.after) {
			s.after = floor
		}
	}
	if gap && len(s.queue) > 0 {
		s.err = ErrResume
		s.queue = nil
	}
}

func (s *Stream) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.queue = nil
	}
	s.signal()
}

func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.notify != nil {
		s.notify()
	}
}

// streams is the registry both hubs keep their open streams in.
type streams struct {
	opts Options
	// newer reports whether id a comes after id b in this hub's order.
	newer func(a, b string) bool

	// mu guards the sets and is held while an event is delivered, so
	// that a hub can register a stream and read its position in one step
	// with respect to delivery.
	mu       sync.Mutex
	all      map[*Stream]struct{}
	scoped   map[string]map[*Stream]struct{}
	draining bool
	paused   bool

	opened, refused, dropped, delivered, published, delayed, lost atomic.Int64
}

func newStreams(opts Options, newer func(a, b string) bool) *streams {
	return &streams{opts: opts.withDefaults(), newer: newer,
		all: make(map[*Stream]struct{}), scoped: make(map[string]map[*Stream]struct{})}
}

// addLocked registers a new stream for v; h.mu is held.
func (h *streams) addLocked(v Viewer, start string) (*Stream, error) {
	if h.draining {
		return nil, ErrDraining
	}
	if len(h.all) >= h.opts.MaxStreams {
		h.refused.Add(1)
		return nil, ErrTooManyStreams
	}
	s := &Stream{Start: start, hub: h, viewer: v, wake: make(chan struct{}, 1), after: start}
	h.all[s] = struct{}{}
	for _, sc := range v.scopes() {
		m := h.scoped[sc]
		if m == nil {
			m = make(map[*Stream]struct{})
			h.scoped[sc] = m
		}
		m[s] = struct{}{}
	}
	h.opened.Add(1)
	return s, nil
}

func (h *streams) remove(s *Stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *streams) removeLocked(s *Stream) {
	delete(h.all, s)
	for _, sc := range s.viewer.scopes() {
		if m := h.scoped[sc]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(h.scoped, sc)
			}
		}
	}
}

// deliverLocked hands e to every stream that may see it; h.mu is held.
// A stream whose buffer is full is dropped.
func (h *streams) deliverLocked(e Event) {
	targets := h.all
	if e.scope != "" {
		targets = h.scoped[e.scope]
	}
	var slow []*Stream
	for s := range targets {
		if s.push(e) {
			h.delivered.Add(1)
		} else {
			slow = append(slow, s)
		}
	}
	for _, s := range slow {
		h.dropped.Add(1)
		h.removeLocked(s)
	}
}

// setPaused announces a change of the hub's delivery to every stream.
func (h *streams) setPaused(paused bool, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.paused == paused {
		return
	}
	h.paused = paused
	if paused {
		h.deliverLocked(notice(NoticePaused, why))
	} else {
		h.deliverLocked(notice(NoticeLive, "Live updates are back."))
	}
}

// Drain ends every stream with ErrDraining and refuses new ones: the
// replica is stopping, and its browsers should reconnect elsewhere now,
// not when the process exits.
func (h *streams) Drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
	for s := range h.all {
		s.end(ErrDraining)
		h.removeLocked(s)
	}
}

// Streams is how many streams are open.
func (h *streams) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.all)
}

// Stats reports the hub's counters.
func (h *streams) Stats() Stats {
	return Stats{Open: h.Streams(), Opened: h.opened.Load(), Refused: h.refused.Load(),
		Dropped: h.dropped.Load(), Delivered: h.delivered.Load(), Published: h.published.Load(),
		Delayed: h.delayed.Load(), Lost: h.lost.Load()}
}
