package live

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/state"
)

// StreamKey is the Redis Stream every replica publishes to and follows.
const StreamKey = "live:events"

// followBlock is how long one XREAD waits for news: a replica cut off from
// Redis by a stalled (not closed) connection notices within it plus the
// client's timeout.
const followBlock = 2 * time.Second

// RedisHub is -live redis: every event goes through one capped Redis
// Stream (StreamKey). Each replica follows it with one reader, whatever
// its number of streams, and hands each entry to its own streams; the
// Stream is also the history a browser resumes from, on any replica.
//
// Redis away: publishing waits in a bounded queue (only the latest event
// per product or order is kept), the reader retries, and every stream
// gets a paused notice, then a live one when Redis answers again; nothing
// it kept in the Stream is missed. Safe for concurrent use.
type RedisHub struct {
	*streams
	log    *redisclient.EventLog
	logger *slog.Logger

	// cursor is the id of the last entry the reader handed out; "" before
	// the reader first reached Redis. Guarded by streams.mu, so that a
	// new stream's start and what it is handed next agree.
	cursor string

	pubMu    sync.Mutex
	pending  []Event // waiting to be appended, oldest first
	pubWake  chan struct{}
	stop     context.CancelFunc
	done     sync.WaitGroup
	maxQueue int
}

// NewRedis returns a hub over rc and starts its reader and publisher,
// which run until Close. Redis need not be up.
func NewRedis(rc *redisclient.Client, opts Options, logger *slog.Logger) *RedisHub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts = opts.withDefaults()
	h := &RedisHub{log: rc.EventLog(StreamKey, opts.History), logger: logger,
		pubWake: make(chan struct{}, 1), maxQueue: opts.History}
	h.streams = newStreams(opts, newerStreamID)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.done.Add(2)
	go func() { defer h.done.Done(); h.follow(ctx) }()
	go func() { defer h.done.Done(); h.publishLoop(ctx) }()
	return h
}

func newerStreamID(a, b string) bool {
	c, ok := redisclient.CompareStreamIDs(a, b)
	return ok && c > 0
}

// Kind is Redis.
func (h *RedisHub) Kind() string { return Redis }

// PublishStock announces a product's new stock to every replica's streams.
// It does not wait for Redis: the event is queued and appended as soon as
// Redis answers.
func (h *RedisHub) PublishStock(_ context.Context, productID int64, stock int) {
	h.enqueue(stockEvent(productID, stock))
}

// PublishOrder announces an order's change to its owner's streams on every
// replica, without waiting for Redis.
func (h *RedisHub) PublishOrder(_ context.Context, o Order) { h.enqueue(orderEvent(o)) }

// enqueue queues e for the publisher. A newer event of the same product or
// order replaces a waiting one (only the latest state matters); past
// maxQueue the oldest is given up and counted as lost.
func (h *RedisHub) enqueue(e Event) {
	h.pubMu.Lock()
	if k := e.key(); k != "" {
		for i, p := range h.pending {
			if p.key() == k {
				h.pending = append(h.pending[:i], h.pending[i+1:]...)
				break
			}
		}
	}
	if len(h.pending) >= h.maxQueue {
		h.pending = h.pending[1:]
		h.lost.Add(1)
	}
	h.pending = append(h.pending, e)
	h.pubMu.Unlock()
	select {
	case h.pubWake <- struct{}{}:
	default:
	}
}

// publishLoop appends what is queued, in one round trip per batch, and
// retries with backoff while Redis does not answer.
func (h *RedisHub) publishLoop(ctx context.Context) {
	backoff := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.pubWake:
		}
		for {
			h.pubMu.Lock()
			batch := h.pending
			h.pending = nil
			h.pubMu.Unlock()
			if len(batch) == 0 {
				break
			}
			evs := make([]redisclient.StreamEvent, len(batch))
			for i, e := range batch {
				evs[i] = redisclient.StreamEvent{Kind: e.Type, Scope: e.scope, Data: e.Data}
			}
			if _, err := h.log.Append(ctx, evs); err != nil {
				h.logger.Warn("live: publish failed; retrying", "events", len(batch), "err", err)
				h.requeue(batch)
				if !backoff.wait(ctx) {
					return
				}
				continue
			}
			backoff.reset()
			h.published.Add(int64(len(batch)))
		}
	}
}

// requeue puts a failed batch back before what was queued meanwhile,
// unless a newer event of the same thing replaced it.
func (h *RedisHub) requeue(batch []Event) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	newer := make(map[string]bool)
	for _, e := range h.pending {
		if k := e.key(); k != "" {
			newer[k] = true
		}
	}
	var kept []Event
	for _, e := range batch {
		if k := e.key(); k == "" || !newer[k] {
			kept = append(kept, e)
		}
	}
	h.pending = append(kept, h.pending...)
	if over := len(h.pending) - h.maxQueue; over > 0 {
		h.pending = h.pending[over:]
		h.lost.Add(int64(over))
	}
}

// follow is the replica's one reader of the Stream: it hands every entry
// to this replica's streams, and pauses them while Redis is away.
func (h *RedisHub) follow(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		h.mu.Lock()
		cursor := h.cursor
		h.mu.Unlock()
		st, err := h.log.State(ctx)
		if err == nil {
			switch {
			case cursor == "":
				// First contact: follow from now on.
				h.mu.Lock()
				h.cursor = st.Last
				h.mu.Unlock()
			case newerStreamID(st.Trimmed, cursor), newerStreamID(cursor, st.Last):
				// Away so long that the Stream was trimmed past this
				// replica's position, or Redis came back without it.
				h.mu.Lock()
				h.deliverLocked(notice(NoticeMissed, "Redis lost or trimmed updates while this replica could not read them; some were missed. Reload for current numbers."))
				h.cursor = st.Last
				h.mu.Unlock()
			}
			h.mu.Lock()
			cursor = h.cursor
			h.mu.Unlock()
			_, err = h.log.Follow(ctx, cursor, followBlock, func(evs []redisclient.StreamEvent) {
				if evs == nil {
					backoff.reset()
					h.setPaused(false, "")
					return
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				for _, se := range evs {
					h.cursor = se.ID
					h.deliverLocked(Event{ID: se.ID, Type: se.Kind, Data: se.Data, scope: se.Scope})
				}
			})
		}
		if ctx.Err() != nil {
			return
		}
		h.logger.Warn("live: Redis not answering; streams paused", "err", err)
		h.setPaused(true, "Live updates are paused: Redis is not answering this replica. They resume by themselves.")
		if !backoff.wait(ctx) {
			return
		}
	}
}

// Open registers a stream for v. Without lastID it starts where the
// reader is. With one it starts there, and its backlog is read from the
// Stream: what v missed since, on whichever replica it was. When the
// Stream no longer holds all of it, the stream starts now after a missed
// notice; when Redis does not answer, it opens paused and ends itself
// (ErrResume) as soon as anything arrives, so that the browser reconnects
// and reads its backlog then.
func (h *RedisHub) Open(ctx context.Context, lastID string, v Viewer) (*Stream, error) {
	h.mu.Lock()
	start := h.cursor
	if start == "" {
		start = "0-0" // the reader has not reached Redis yet
	}
	s, err := h.addLocked(v, start)
	paused := h.paused
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var pausedNotice []Event
	if paused {
		pausedNotice = []Event{notice(NoticePaused, "Live updates are paused: Redis is not answering this replica. They resume by themselves.")}
	}
	if lastID == "" {
		s.settle(pausedNotice, "", false)
		return s, nil
	}
	if _, ok := redisclient.CompareStreamIDs(lastID, "0-0"); !ok {
		s.settle(append([]Event{notice(NoticeMissed, "This page's position came from a replica whose live updates were its own; any that happened meanwhile were missed. Reload for current numbers.")}, pausedNotice...), "", false)
		return s, nil
	}
	// Twice the cap: MAXLEN ~ keeps somewhat more than History.
	limit := 2 * h.opts.History
	entries, st, err := h.log.Since(ctx, lastID, limit)
	if err != nil {
		s.Start = lastID
		s.settle([]Event{notice(NoticePaused, "Live updates are paused: Redis is not answering this replica. They resume by themselves.")}, lastID, true)
		return s, nil
	}
	if newerStreamID(st.Trimmed, lastID) || newerStreamID(lastID, st.Last) || len(entries) == limit {
		s.settle(append([]Event{notice(NoticeMissed, "You were away longer than the updates Redis keeps; some were missed. Reload for current numbers.")}, pausedNotice...), "", false)
		return s, nil
	}
	s.Start = lastID
	backlog := make([]Event, 0, len(entries)+len(pausedNotice))
	for _, se := range entries {
		if e := (Event{ID: se.ID, Type: se.Kind, Data: se.Data, scope: se.Scope}); v.sees(e.scope) {
			backlog = append(backlog, e)
		}
	}
	s.settle(append(backlog, pausedNotice...), lastID, false)
	return s, nil
}

// Close stops the reader and the publisher and ends every stream. Events
// still queued for Redis are given up.
func (h *RedisHub) Close() {
	h.Drain()
	h.stop()
	h.done.Wait()
}

// Describe says what this replica holds of live state.
func (h *RedisHub) Describe(context.Context) state.Description {
	n := h.Streams()
	return state.Description{
		Kind:     "live",
		Lives:    state.Shared,
		HeldHere: n,
		Note: fmt.Sprintf("%d open event streams here; the events and their history (about %d) live in a Redis Stream that every replica follows with one reader. "+
			"A kill -9 drops these connections, but their browsers resume on another replica with Last-Event-ID and miss nothing.", n, h.opts.History),
	}
}

// backoff waits 250 ms, doubling to 2 s, between attempts on Redis.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 250 * time.Millisecond} }

func (b *backoff) reset() { b.d = 250 * time.Millisecond }

// wait sleeps, and reports false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, 2*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
