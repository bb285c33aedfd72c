package live

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"

	"github.com/statelab/shop/state"
)

// LocalHub is -live local, the violation: events reach only the streams of
// this replica, and the history a reconnecting browser resumes from lives
// in this process. A browser that lands on another replica (its own died,
// or drained) resumes nothing: the other replica never saw its ids, and
// says so with a missed notice. Safe for concurrent use.
type LocalHub struct {
	*streams
	// boot names this process's history: an id from another process (or
	// from before a restart) is not in it.
	boot string
	seq  uint64
	// ring holds the last History events, oldest at head.
	ring []Event
	head int
}

// NewLocal returns a hub that keeps everything in this process.
func NewLocal(opts Options) *LocalHub {
	var b [5]byte
	rand.Read(b[:])
	h := &LocalHub{boot: strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))}
	h.streams = newStreams(opts, h.newer)
	return h
}

// Kind is Local.
func (h *LocalHub) Kind() string { return Local }

func (h *LocalHub) id(seq uint64) string { return h.boot + ":" + strconv.FormatUint(seq, 10) }

// seqOf reads an id of this process's; ok is false for any other.
func (h *LocalHub) seqOf(id string) (uint64, bool) {
	boot, seq, found := strings.Cut(id, ":")
	if !found || boot != h.boot {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil
}

func (h *LocalHub) newer(a, b string) bool {
	x, ok1 := h.seqOf(a)
	y, ok2 := h.seqOf(b)
	return ok1 && ok2 && x > y
}

// Publish hands evs to this replica's streams and its history, in order.
// It never fails: the events live in this process, and only as long as it
// does (a kill -9 loses them with the history; Describe says so).
func (h *LocalHub) Publish(_ context.Context, evs ...Event) error {
	for _, e := range evs {
		h.publish(e)
	}
	return nil
}

// PublishStock announces a product's new stock to this replica's streams.
func (h *LocalHub) PublishStock(ctx context.Context, productID int64, stock int) error {
	return h.Publish(ctx, StockChanged(productID, stock))
}

// PublishOrder announces an order's change to its owner's streams on this
// replica.
func (h *LocalHub) PublishOrder(ctx context.Context, o Order) error {
	return h.Publish(ctx, OrderChanged(o))
}

func (h *LocalHub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e.ID = h.id(h.seq)
	if len(h.ring) < h.opts.History {
		h.ring = append(h.ring, e)
	} else {
		h.ring[h.head] = e
		h.head = (h.head + 1) % len(h.ring)
	}
	h.published.Add(1)
	h.deliverLocked(e)
}

// Open registers a stream for v. With a lastID from this process's
// history, the stream starts there and its backlog is what v missed since;
// with any other lastID it starts now, after a missed notice.
func (h *LocalHub) Open(_ context.Context, lastID string, v Viewer) (*Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.addLocked(v, h.id(h.seq))
	if err != nil || lastID == "" {
		return s, err
	}
	oldest := h.seq - uint64(len(h.ring)) // the id before the oldest kept
	last, ok := h.seqOf(lastID)
	if !ok || last > h.seq || last < oldest {
		s.Backlog = []Event{notice(NoticeMissed, h.missedMessage(ok && last <= h.seq))}
		return s, nil
	}
	s.Start = lastID
	for i := last - oldest; i < uint64(len(h.ring)); i++ {
		if e := h.ring[(h.head+int(i))%len(h.ring)]; v.sees(e.scope) {
			s.Backlog = append(s.Backlog, e)
		}
	}
	return s, nil
}

func (h *LocalHub) missedMessage(trimmed bool) string {
	if trimmed {
		return fmt.Sprintf("You were away for more than the last %d updates this replica keeps; some were missed. Reload for current numbers.", h.opts.History)
	}
	return "This replica never saw the updates your page had (live updates here are this replica's only); any that happened meanwhile were missed. Reload for current numbers."
}

// Close ends every stream.
func (h *LocalHub) Close() {
	h.Drain()
}

// Describe says what this replica holds of live state.
func (h *LocalHub) Describe(context.Context) state.Description {
	n := h.Streams()
	return state.Description{
		Kind:         "live",
		Lives:        state.Replica,
		HeldHere:     n,
		LostIfKilled: n > 0,
		Note: fmt.Sprintf("%d open event streams, and the last %d events they resume from, in this process: events reach only browsers connected to this replica, "+
			"and a kill -9 drops the streams and the history, so a browser that reconnects elsewhere misses what happened meanwhile.", n, h.opts.History),
	}
}
