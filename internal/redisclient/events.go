package redisclient

// The live events' fan-out (package live, -live redis): one capped Redis
// Stream is both the channel every replica follows and the bounded history
// a browser resumes from with Last-Event-ID, on whichever replica it lands.
// Why a Stream rather than PUBLISH and a capped list: docs/architecture.md.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// StreamEvent is one entry of an EventLog.
type StreamEvent struct {
	// ID is the stream entry's id ("1733480000000-0"), given by Redis on
	// Append: increasing, and the same on every replica.
	ID string
	// Kind, Scope and Data are the event as the live package keeps it
	// (its type, who may see it, its JSON); the log does not read them.
	Kind, Scope string
	Data        []byte
	// Once, for AppendOnce, names this event: it is appended at most once
	// per name within OnceFor, however often it is sent.
	Once string
}

// EventLog is a capped Redis Stream of events.
type EventLog struct {
	c      *Client
	key    string
	maxLen int
}

// EventLog returns the stream at key, trimmed to about maxLen entries as
// it grows (XADD MAXLEN ~: Redis trims whole nodes, so a few more stay).
func (c *Client) EventLog(key string, maxLen int) *EventLog {
	return &EventLog{c: c, key: key, maxLen: maxLen}
}

// Key is the stream's key.
func (l *EventLog) Key() string { return l.key }

// Append adds the events in one round trip and returns their ids. Every
// reply is checked: a pipeline returns Redis's refusals inside its replies.
func (l *EventLog) Append(ctx context.Context, evs []StreamEvent) ([]string, error) {
	ids := make([]string, 0, len(evs))
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		for _, e := range evs {
			if err := conn.Send("XADD", l.key, "MAXLEN", "~", l.maxLen, "*", "k", e.Kind, "s", e.Scope, "d", e.Data); err != nil {
				return err
			}
		}
		replies, err := redis.Values(redis.DoContext(conn, ctx, ""))
		if err != nil {
			return err
		}
		for _, r := range replies {
			if e, ok := r.(redis.Error); ok {
				return e
			}
			id, err := redis.String(r, nil)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis event log %s: append: %w", l.key, err)
	}
	return ids, nil
}

// OnceFor is how long AppendOnce remembers an event's name. The clock
// starts when Redis runs the append, so an attempt that timed out on the
// client but ran late (a stalled Redis resuming) and the retry that follows
// it within seconds see each other, however long the stall was.
const OnceFor = 2 * time.Minute

// appendOnceScript appends each event whose name (a key, KEYS[2..]) it has
// not seen within ARGV[2] ms, to the stream KEYS[1] capped at about
// ARGV[1]; ARGV[3..] are each event's kind, scope and data. It returns
// each event's id, or "" for one already appended. One script, so that the
// check and the append are one step.
var appendOnceScript = redis.NewScript(-1, `
local out = {}
for i = 2, #KEYS do
  local a = 3 * (i - 2) + 3
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[a], 's', ARGV[a + 1], 'd', ARGV[a + 2])
  else
    out[#out + 1] = ''
  end
end
return out`)

// AppendOnce adds the events in one round trip, each at most once per its
// Once name (which every event must have) within OnceFor: a retry of an
// append whose answer was lost (a timeout on a stalled Redis that then ran
// it) adds nothing twice. It returns each event's id, "" for one that was
// already there.
func (l *EventLog) AppendOnce(ctx context.Context, evs []StreamEvent) ([]string, error) {
	args := make([]any, 0, 2+len(evs)*4+2)
	args = append(args, 1+len(evs), l.key)
	for _, e := range evs {
		if e.Once == "" {
			return nil, fmt.Errorf("redis event log %s: append once: an event without a name", l.key)
		}
		args = append(args, l.key+":once:"+e.Once)
	}
	args = append(args, l.maxLen, OnceFor.Milliseconds())
	for _, e := range evs {
		args = append(args, e.Kind, e.Scope, e.Data)
	}
	var ids []string
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		ids, err = redis.Strings(appendOnceScript.DoContext(ctx, conn, args...))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redis event log %s: append once: %w", l.key, err)
	}
	return ids, nil
}

// LogState is where an EventLog stands.
type LogState struct {
	// Last is the id of the newest entry ever added ("0-0" for a stream
	// that does not exist): where a new follower starts.
	Last string
	// Trimmed is the newest id trimming has dropped ("0-0" for none): a
	// reader positioned before it has missed entries.
	Trimmed string
}

// State reads the stream's last and trimmed ids (XINFO STREAM).
func (l *EventLog) State(ctx context.Context) (LogState, error) {
	var st LogState
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) (err error) {
		st, err = l.state(ctx, conn)
		return err
	})
	if err != nil {
		return LogState{}, fmt.Errorf("redis event log %s: state: %w", l.key, err)
	}
	return st, nil
}

func (l *EventLog) state(ctx context.Context, conn redis.Conn) (LogState, error) {
	v, err := redis.Values(redis.DoContext(conn, ctx, "XINFO", "STREAM", l.key))
	var reply redis.Error
	if errors.As(err, &reply) && strings.Contains(string(reply), "no such key") {
		return LogState{Last: "0-0", Trimmed: "0-0"}, nil
	}
	if err != nil {
		return LogState{}, err
	}
	st := LogState{Last: "0-0", Trimmed: "0-0"}
	for i := 0; i+1 < len(v); i += 2 {
		name, _ := redis.String(v[i], nil)
		switch name {
		case "last-generated-id":
			st.Last, _ = redis.String(v[i+1], nil)
		case "max-deleted-entry-id": // Redis 7.0 and later
			st.Trimmed, _ = redis.String(v[i+1], nil)
		}
	}
	return st, nil
}

// Since returns up to limit entries after the id after, oldest first, and
// the log's state read in the same round trip: the caller tells from it
// whether entries after its position are gone (trimmed, or the stream
// lost with a Redis that restarted empty).
func (l *EventLog) Since(ctx context.Context, after string, limit int) ([]StreamEvent, LogState, error) {
	var evs []StreamEvent
	var st LogState
	err := l.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		v, err := redis.Values(redis.DoContext(conn, ctx, "XRANGE", l.key, "("+after, "+", "COUNT", limit))
		if err != nil {
			return err
		}
		if evs, err = parseEntries(v); err != nil {
			return err
		}
		st, err = l.state(ctx, conn)
		return err
	})
	if err != nil {
		return nil, LogState{}, fmt.Errorf("redis event log %s: read since %s: %w", l.key, after, err)
	}
	return evs, st, nil
}

// Follow reads the log after the id after as it grows, on a connection of
// its own (a blocking XREAD holds it), until ctx ends or Redis fails. It
// calls fn with nil once the connection is up, then with every batch of
// new entries, in order. It returns the id of the last entry it passed to
// fn (after, if none) and why it stopped.
func (l *EventLog) Follow(ctx context.Context, after string, block time.Duration, fn func([]StreamEvent)) (string, error) {
	conn, err := l.c.Dial(ctx)
	if err != nil {
		return after, fmt.Errorf("redis event log %s: follow: %w", l.key, err)
	}
	// A blocking read ends when ctx does: closing the connection from here
	// is the only way to interrupt it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		if stop() {
			conn.Close()
		}
	}()
	fn(nil)
	for ctx.Err() == nil {
		// The read may take the whole block, then the usual bound.
		v, err := redis.Values(redis.DoWithTimeout(conn, block+l.c.cfg.Timeout,
			"XREAD", "COUNT", 1000, "BLOCK", block.Milliseconds(), "STREAMS", l.key, after))
		if errors.Is(err, redis.ErrNil) {
			continue // the block ended with nothing new
		}
		if err != nil {
			if ctx.Err() != nil {
				return after, ctx.Err()
			}
			return after, fmt.Errorf("redis event log %s: follow: %w: %w", l.key, ErrUnavailable, err)
		}
		// One stream asked for: [[key, [entries...]]].
		for _, s := range v {
			kv, err := redis.Values(s, nil)
			if err != nil || len(kv) != 2 {
				return after, fmt.Errorf("redis event log %s: follow: unexpected reply %v", l.key, s)
			}
			entries, err := redis.Values(kv[1], nil)
			if err != nil {
				return after, fmt.Errorf("redis event log %s: follow: %w", l.key, err)
			}
			evs, err := parseEntries(entries)
			if err != nil {
				return after, fmt.Errorf("redis event log %s: follow: %w", l.key, err)
			}
			if len(evs) > 0 {
				after = evs[len(evs)-1].ID
				fn(evs)
			}
		}
	}
	return after, ctx.Err()
}

// parseEntries reads XRANGE's and XREAD's entries: [id, [field, value...]].
func parseEntries(v []any) ([]StreamEvent, error) {
	evs := make([]StreamEvent, 0, len(v))
	for _, item := range v {
		entry, err := redis.Values(item, nil)
		if err != nil || len(entry) != 2 {
			return nil, fmt.Errorf("unexpected stream entry %v", item)
		}
		id, err := redis.String(entry[0], nil)
		if err != nil {
			return nil, err
		}
		fields, err := redis.Values(entry[1], nil)
		if err != nil {
			return nil, err
		}
		e := StreamEvent{ID: id}
		for i := 0; i+1 < len(fields); i += 2 {
			name, _ := redis.String(fields[i], nil)
			val, _ := redis.Bytes(fields[i+1], nil)
			switch name {
			case "k":
				e.Kind = string(val)
			case "s":
				e.Scope = string(val)
			case "d":
				e.Data = val
			}
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// CompareStreamIDs orders two stream ids ("ms-seq") as Redis does: -1, 0
// or +1. ok is false when either is not a stream id.
func CompareStreamIDs(a, b string) (cmp int, ok bool) {
	am, as, ok1 := parseStreamID(a)
	bm, bs, ok2 := parseStreamID(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	switch {
	case am < bm || am == bm && as < bs:
		return -1, true
	case am == bm && as == bs:
		return 0, true
	}
	return 1, true
}

func parseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}
