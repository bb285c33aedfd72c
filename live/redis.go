package live

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
// Publish returns once the events are in the Stream. Redis away: events
// wait in a bounded queue in this replica (only the latest event per
// product or order is kept) and are appended when it answers, the reader
// retries, and every stream gets a paused notice, then a live one when
// Redis answers again; nothing the Stream holds is missed. Safe for
// concurrent use.
type RedisHub struct {
	*streams
	log    *redisclient.EventLog
	logger *slog.Logger

	// cursor is the id of the last entry the reader handed out; "" before
	// the reader first reached Redis. Guarded by streams.mu, so that a
	// new stream's start and what it is handed next agree.
	cursor string

	pubMu   sync.Mutex
	pending []Event // waiting to be appended, oldest first
	// inflight is how many events the publisher is appending now, taken
	// out of pending.
	inflight int
	// behind: events wait for the publisher (Redis did not take them in
	// time), so Publish queues behind them instead of appending first.
	behind bool
	// boot and onceSeq name each event published here (Event.once).
	boot     string
	onceSeq  atomic.Uint64
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
	var b [8]byte
	rand.Read(b[:])
	h := &RedisHub{log: rc.EventLog(StreamKey, opts.History), logger: logger,
		pubWake: make(chan struct{}, 1), maxQueue: opts.History, boot: hex.EncodeToString(b[:])}
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

// Publish appends evs to the Stream in one round trip and returns once
// Redis has them: the request that made them is answered only after they
// outlive this replica, so a kill -9 after the answer loses none of them.
// It waits at most the Redis client's timeout (about 1 s), whatever ctx
// says: the request's cancellation (its client hung up after the order
// was committed) must not keep the order's events from the Stream.
//
// Why a synchronous append rather than a transactional outbox (the
// events written as rows in the order's own database transaction and
// relayed to the Stream by any replica): the outbox needs a table, a
// relay, a lease and an order-preserving cursor in both databases
// (PostgreSQL's concurrent transactions commit their ids out of order),
// and it adds a row write and a delete to the database's one writer,
// which is already the checkout's bottleneck; the append costs one Redis
// round trip. What the append leaves open, and how each is covered:
//
//   - A kill -9 between the order's commit and the append: the checkout
//     was not answered, the shopper retries it with the same idempotency
//     key, and the replay announces the stock as it is then (web).
//   - Redis away or slow: below.
//
// When Redis does not take the events in time, or is already known to be
// away (the publisher is still retrying older ones), Publish does not
// wait: it queues evs behind those (a newer event of the same product or
// order replaces a waiting one) and returns ErrDelayed at once; the
// publisher appends them when Redis answers. The caller's request still
// succeeds: an order is the shopper's work, its event only a notification.
// With Redis away, the replicas' readers cannot reach it either, so their
// streams get a paused notice, then a live one when Redis is back, on
// which the pages read every stock afresh: a tab learns it may have missed
// something even when the waiting events die with this replica. Describe
// counts them. Every attempt appends with AppendOnce under the event's own
// name, so an attempt that timed out here but ran in Redis later is not
// repeated by the retry.
func (h *RedisHub) Publish(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	// Each event gets its name before the first attempt: an attempt that
	// timed out here may still run in Redis, and the retry must not add
	// the event twice (an old stock number after a newer one would lie).
	evs = slices.Clone(evs)
	for i := range evs {
		evs[i].once = h.newName()
	}
	h.pubMu.Lock()
	behind := h.behind
	h.pubMu.Unlock()
	err := ErrDelayed
	if !behind {
		_, err = h.log.AppendOnce(context.WithoutCancel(ctx), streamEvents(evs))
		if err == nil {
			h.published.Add(int64(len(evs)))
			return nil
		}
		h.logger.Warn("live: Redis did not take the events in time; they wait in memory", "events", len(evs), "err", err)
		err = fmt.Errorf("%w: %w", ErrDelayed, err)
	}
	h.delayed.Add(int64(len(evs)))
	h.enqueue(evs...)
	return err
}

// PublishStock announces a product's new stock to every replica's
// streams, as Publish.
func (h *RedisHub) PublishStock(ctx context.Context, productID int64, stock int) error {
	return h.Publish(ctx, StockChanged(productID, stock))
}

// PublishOrder announces an order's change to its owner's streams on
// every replica, as Publish.
func (h *RedisHub) PublishOrder(ctx context.Context, o Order) error {
	return h.Publish(ctx, OrderChanged(o))
}

// newName names one event for AppendOnce: unique to this process.
func (h *RedisHub) newName() string {
	return h.boot + ":" + strconv.FormatUint(h.onceSeq.Add(1), 36)
}

// withLateNotice is a batch of events that waited for Redis, followed by
// a live notice in the Stream: they land after whatever other replicas
// appended meanwhile, so a stock number among them may be older than one
// a tab already has. On the notice every page reads the stock afresh
// (static/live.js), after the late events, so it ends with the truth.
func (h *RedisHub) withLateNotice(batch []Event) []redisclient.StreamEvent {
	n := notice(NoticeLive, "Updates that waited for Redis arrived late; the numbers are read afresh.")
	n.once = h.newName()
	return streamEvents(append(slices.Clip(batch), n))
}

func streamEvents(evs []Event) []redisclient.StreamEvent {
	out := make([]redisclient.StreamEvent, len(evs))
	for i, e := range evs {
		out[i] = redisclient.StreamEvent{Kind: e.Type, Scope: e.scope, Data: e.Data, Once: e.once}
	}
	return out
}

// enqueue queues evs for the publisher, and makes Publish queue behind
// them until they are appended. A newer event of the same product or
// order replaces a waiting one (only the latest state matters); past
// maxQueue the oldest is given up and counted as lost.
func (h *RedisHub) enqueue(evs ...Event) {
	h.pubMu.Lock()
	h.behind = true
	for _, e := range evs {
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
	}
	h.pubMu.Unlock()
	select {
	case h.pubWake <- struct{}{}:
	default:
	}
}

// publishLoop appends what is queued, in one round trip per batch, and
// retries with backoff while Redis does not answer. Once the queue is
// empty, Publish appends by itself again.
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
			h.pending, h.inflight = nil, len(batch)
			if len(batch) == 0 {
				h.behind = false
			}
			h.pubMu.Unlock()
			if len(batch) == 0 {
				break
			}
			if _, err := h.log.AppendOnce(ctx, h.withLateNotice(batch)); err != nil {
				h.logger.Warn("live: publish failed; retrying", "events", len(batch), "err", err)
				h.requeue(batch)
				if !backoff.wait(ctx) {
					return
				}
				continue
			}
			h.pubMu.Lock()
			h.inflight = 0
			h.pubMu.Unlock()
			backoff.reset()
			h.published.Add(int64(len(batch)))
		}
	}
}

// waiting is how many events wait for Redis in this replica's memory.
func (h *RedisHub) waiting() int {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	return len(h.pending) + h.inflight
}

// requeue puts a failed batch back before what was queued meanwhile,
// unless a newer event of the same thing replaced it.
func (h *RedisHub) requeue(batch []Event) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.inflight = 0
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
// still queued for Redis get one last append (bounded by the client's
// timeout), so that a graceful stop loses none while Redis answers; what
// it refuses is given up and counted as lost.
func (h *RedisHub) Close() {
	h.Drain()
	h.stop()
	h.done.Wait()
	h.pubMu.Lock()
	batch := h.pending
	h.pending = nil
	h.pubMu.Unlock()
	if len(batch) == 0 {
		return
	}
	if _, err := h.log.AppendOnce(context.Background(), h.withLateNotice(batch)); err != nil {
		h.lost.Add(int64(len(batch)))
		h.logger.Warn("live: events given up at close: Redis did not take them", "events", len(batch), "err", err)
		return
	}
	h.published.Add(int64(len(batch)))
}

// Describe says what this replica holds of live state.
func (h *RedisHub) Describe(context.Context) state.Description {
	n := h.Streams()
	d := state.Description{
		Kind:     "live",
		Lives:    state.Shared,
		HeldHere: n,
		Note: fmt.Sprintf("%d open event streams here; the events and their history (about %d) live in a Redis Stream that every replica follows with one reader. "+
			"Every event is in the Stream before the request that made it is answered: a kill -9 drops these connections, whose browsers resume on another replica with Last-Event-ID, "+
			"and the events of requests it cut off before their answer (a checkout's retry announces its stock again).", n, h.opts.History),
	}
	if w := h.waiting(); w > 0 {
		d.LostIfKilled = true
		d.Loses = fmt.Sprintf("%d live events waiting for Redis", w)
		if w == 1 {
			d.Loses = "1 live event waiting for Redis"
		}
		d.Note += fmt.Sprintf(" Now %d events wait in this replica's memory because Redis did not take them in time: a kill -9 before Redis answers loses them "+
			"(the tabs were told updates are paused, and read the stock afresh when they resume).", w)
	}
	return d
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
