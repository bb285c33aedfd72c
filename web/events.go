package web

// GET /events: Server-Sent Events. The one response that is not rendered
// into a buffer and written once: it flushes as it goes, and ends itself
// at the start of a drain so that its browser reconnects elsewhere.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/statelab/shop/live"
	"github.com/statelab/shop/state"
	"github.com/statelab/shop/store"
)

// Live is what the web layer needs of the live events (package live): a
// stream per browser, a place to announce what changed, and the drain.
// main hands the Server a live.LocalHub or a live.RedisHub.
type Live interface {
	// Kind is live.Local or live.Redis.
	Kind() string
	// Open registers a stream for v, resuming after lastID ("" for none).
	Open(ctx context.Context, lastID string, v live.Viewer) (*live.Stream, error)
	// Publish announces evs (live.StockChanged, live.OrderChanged) in one
	// go, and returns once they outlive this replica: with live.Redis,
	// once they are in the Stream, else live.ErrDelayed within the Redis
	// timeout (they wait in this replica's memory). The caller's request
	// succeeds either way: the events only tell about the work.
	Publish(ctx context.Context, evs ...live.Event) error
	// Drain ends every stream and refuses new ones.
	Drain()
	// Stats counts streams and events, for /metrics.
	Stats() live.Stats
	// Describe is the live state this replica holds, for /state.
	Describe(ctx context.Context) state.Description
}

// DefaultLiveHeartbeat is how often an idle stream gets a comment, so that
// nginx (proxy_read_timeout) and the browser see it alive.
const DefaultLiveHeartbeat = 15 * time.Second

// liveWriteTimeout bounds one write to a stream: a browser that stops
// reading blocks the write once the socket buffers fill, and is dropped
// then (the hub has already stopped queueing for it).
const liveWriteTimeout = 10 * time.Second

// maxLastEventID bounds the Last-Event-ID a browser may send back.
const maxLastEventID = 64

// handleEvents is GET /events: a text/event-stream of stock changes, the
// viewing session's own order changes and notices about the stream, each
// with an id; resumable with Last-Event-ID (the header EventSource sends
// when it reconnects, or ?last_event_id= from a page that starts a new
// EventSource).
func (s *Server) handleEvents() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			drained(w)
			return
		}
		lastID := r.Header.Get("Last-Event-ID")
		if lastID == "" {
			lastID = r.URL.Query().Get("last_event_id")
		}
		if len(lastID) > maxLastEventID {
			s.serveError(w, r, &Error{Status: http.StatusBadRequest, Field: "Last-Event-ID", Message: "longer than " + strconv.Itoa(maxLastEventID) + " characters; this server never sends such an id"})
			return
		}
		st, err := s.live.Open(r.Context(), lastID, s.liveViewer(r))
		if errors.Is(err, live.ErrDraining) {
			drained(w)
			return
		}
		if err != nil {
			s.serveError(w, r, err)
			return
		}

		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // nginx: pass it on as it comes
		var buf bytes.Buffer
		pos := st.Start
		ready, _ := json.Marshal(map[string]string{"replica": s.cfg.Replica, "live": s.live.Kind()})
		appendEvent(&buf, &pos, live.Event{ID: st.Start, Type: live.TypeReady, Data: ready})
		for _, e := range st.Backlog {
			appendEvent(&buf, &pos, e)
		}

		// Take the connection over, so that the open stream costs no
		// goroutine and no net/http buffers (streampump.go). The body
		// then ends when the connection closes.
		if conn, _, err := rc.Hijack(); err == nil {
			h.Set("Connection", "close")
			var head bytes.Buffer
			head.WriteString("HTTP/1.1 200 OK\r\n")
			h.Write(&head)
			head.WriteString("\r\n")
			head.Write(buf.Bytes())
			conn.SetReadDeadline(time.Time{})
			conn.SetWriteDeadline(time.Now().Add(pumpWriteStall))
			if _, err := conn.Write(head.Bytes()); err != nil {
				conn.Close()
				st.Close()
				return
			}
			s.pump.add(conn, st, pos)
			return
		}
		defer st.Close()
		s.serveStream(w, r, rc, st, &buf, pos)
	})
}

// serveStream serves a stream on the request's own goroutine, where the
// connection cannot be taken over (an HTTP/2 connection, a test's
// recorder).
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, st *live.Stream, first *bytes.Buffer, pos string) {
	// The server's ReadTimeout would end the request's context once it
	// passes, and its WriteTimeout the response: a stream lives longer.
	// Writes get a deadline each instead (flush below).
	rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	sw := sseWriter{w: w, rc: rc, pos: pos}
	sw.buf.Write(first.Bytes())
	if sw.flush() != nil {
		return
	}
	heartbeat := time.NewTicker(s.cfg.LiveHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-heartbeat.C:
			sw.buf.WriteString(": heartbeat\n\n")
		case <-st.Wake():
			evs, err := st.Next()
			switch {
			case errors.Is(err, live.ErrDraining):
				sw.buf.WriteString("retry: " + strconv.Itoa(250+rand.IntN(1000)) + "\n\n")
				sw.flush()
				return
			case errors.Is(err, live.ErrResume):
				sw.buf.WriteString("retry: 250\n\n")
				sw.flush()
				return
			case err != nil:
				return // dropped as slow, or closed
			}
			for _, e := range evs {
				appendEvent(&sw.buf, &sw.pos, e)
			}
		}
		if sw.flush() != nil {
			return
		}
	}
}

// drained answers a stream asked of a draining replica: not a 503, which
// would end an EventSource for good (it reconnects only after a 200), but
// an empty stream with a retry: hint, so that the browser reconnects by
// itself, keeping its Last-Event-ID, and lands on another replica.
func drained(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("retry: " + strconv.Itoa(250+rand.IntN(1000)) + "\n\n"))
}

// liveViewer is whom this request's stream is for: its session's identity
// and account, read without locking or saving anything. Without a session
// store the stream still carries stock; it has no orders to show.
func (s *Server) liveViewer(r *http.Request) live.Viewer {
	cookie := sessionCookie(r)
	if cookie == "" {
		return live.Viewer{}
	}
	sess, err := s.sessions.Load(r.Context(), cookie, false)
	if err != nil || sess == nil {
		return live.Viewer{}
	}
	defer sess.Release()
	id, _ := sess.Account()
	return live.Viewer{SessionID: sess.SID(), AccountID: id}
}

// sseWriter writes events in the text/event-stream format into a buffer,
// and the buffer to the client with a deadline per write.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	// pos is the id of the last event written: notices carry it, so that
	// every event has an id and the browser's position stays true.
	pos string
}

func (sw *sseWriter) flush() error {
	if sw.buf.Len() == 0 {
		return nil
	}
	sw.rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	_, err := sw.w.Write(sw.buf.Bytes())
	sw.buf.Reset()
	if err == nil {
		err = sw.rc.Flush()
	}
	return err
}

// handleAPIStock is GET /api/stock: every product's stock now, as
// {"stock":{"1":97,...}}. The catalog's grid is rendered once for everyone
// and carries no stock; live.js reads this once when the page loads, then
// follows the events.
func (s *Server) handleAPIStock(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.db.Products(r.Context())
	if err != nil {
		return err
	}
	stock := make(map[string]int, len(ps))
	for _, p := range ps {
		stock[strconv.FormatInt(p.ID, 10)] = p.Stock
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(map[string]any{"stock": stock})
}

// publishOrderPlaced announces a new order's stock changes to every
// stream, and the order to its owner's, before the checkout is answered
// (Live.Publish says why). An event Redis did not take in time is not the
// checkout's failure: the order stands and the page says so.
func (s *Server) publishOrderPlaced(ctx context.Context, sid string, accountID int64, orderID string, stockLeft map[int64]int) {
	evs := make([]live.Event, 0, len(stockLeft)+1)
	for id, left := range stockLeft {
		evs = append(evs, live.StockChanged(id, left))
	}
	evs = append(evs, live.OrderChanged(live.Order{ID: orderID, AccountID: accountID, SessionID: sid, Status: "placed"}))
	if err := s.live.Publish(ctx, evs...); err != nil {
		s.log.WarnContext(ctx, "checkout: live events delayed", "order", orderID, "err", err)
	}
}

// republishStock announces the stock of a replayed order's products as it
// is now. The first attempt may have died between the order's commit and
// its events' append, unanswered (so the shopper retried): without this,
// the tabs would never hear of that order's stock. A replay whose first
// attempt did announce only repeats the truth. The order's own "placed"
// is not repeated: the shopper lands on the order's page, which shows its
// status, and an old "placed" would hide a newer one ("receipt ready").
func (s *Server) republishStock(ctx context.Context, o store.Order) {
	evs := make([]live.Event, 0, len(o.Lines))
	for _, l := range o.Lines {
		p, err := s.db.Product(ctx, l.ProductID)
		if err != nil {
			s.log.WarnContext(ctx, "checkout replay: stock not announced again", "order", o.ID, "err", err)
			return
		}
		evs = append(evs, live.StockChanged(p.ID, p.Stock))
	}
	if err := s.live.Publish(ctx, evs...); err != nil {
		s.log.WarnContext(ctx, "checkout replay: live events delayed", "order", o.ID, "err", err)
	}
}
