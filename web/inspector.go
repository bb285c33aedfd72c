package web

// GET /session: the session inspector. It shows the session exactly as this
// replica sees it, so that two reloads served by two replicas tell the whole
// stateful-versus-stateless story side by side.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/templates"
)

// redisSessionPrefix is where redisstore keeps sessions (its default).
const redisSessionPrefix = "scs:session:"

// handleSessionInspector shows the session as this replica sees it. It only
// reads: showing a session must not change it.
func (s *Server) handleSessionInspector(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	info, err := s.session(ctx)
	if err != nil {
		return err
	}
	m := s.sessions.manager
	v := templates.InspectorView{
		Replica: s.cfg.Replica,
		Store:   s.sessions.Kind(),
		State:   templates.SessionNone,
	}
	token := m.Token(ctx)
	sent := sessionCookie(r)
	switch {
	case info.Known:
		v.State = templates.SessionKnown
	case info.HadCookie:
		v.State = templates.SessionUnknown
		v.SentToken = shortToken(sent)
		v.Home = s.homeOf(r)
	}
	if info.Known {
		v.Token = shortToken(token)
		v.Born, v.BornAt, v.LastWriter = info.Born, info.BornAt, info.LastWriter
		v.Renewed = m.GetString(ctx, keyRenewed)
		deadline := m.Deadline(ctx)
		ttl := time.Until(deadline)
		if s.sessions.pool != nil {
			// What Redis itself will do, which is what matters to every replica.
			if ms, err := s.redisPTTL(ctx, redisSessionPrefix+token); err == nil && ms > 0 {
				ttl = time.Duration(ms) * time.Millisecond
			}
		}
		v.TTL = formatTTL(ttl)
		v.Expires = deadline.UTC().Format("2006-01-02 15:04 MST")
		values := make(map[string]any)
		keys := m.Keys(ctx)
		slices.Sort(keys)
		for _, k := range keys {
			val := m.Get(ctx, k)
			values[k] = val
			raw, err := jsonCodec{}.Encode(time.Time{}, map[string]any{k: val})
			if err != nil {
				continue
			}
			var st storedSession
			if json.Unmarshal(raw, &st) != nil {
				continue
			}
			b := st.Values[k]
			v.Keys = append(v.Keys, templates.SessionKey{Name: k, Bytes: len(b), Value: truncate(string(b), 160)})
		}
		// The size is what the store holds: the whole session encoded as
		// jsonCodec encodes it on commit.
		if b, err := (jsonCodec{}).Encode(deadline, values); err == nil {
			v.SizeBytes = len(b)
		}
	}
	v.Lock = s.lockState(ctx, token)
	v.Stories = s.deathStories()
	trail := trailOf(ctx)
	for _, name := range trail {
		v.Trail = append(v.Trail, templates.TrailStop{Replica: name, ColorClass: replicaColorClass(name)})
	}
	v.ClientState = clientStateText(trail, s.homeOf(r))
	v.Page = s.page(r, "Your session")
	s.clearFlash(w, r)
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, templates.InspectorPage(v))
	return nil
}

// shortToken shows enough of a token to tell two apart and never the whole
// of it: the token is the key to the session.
func shortToken(t string) string {
	if len(t) < 12 {
		return "(none)"
	}
	return t[:6] + "…" + fmt.Sprintf(" (%d characters)", len(t))
}

func formatTTL(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	d = d.Round(time.Second)
	h, m := int(d.Hours()), int(d.Minutes())%60
	if h > 0 {
		return fmt.Sprintf("%dh %02dm", h, m)
	}
	return d.String()
}

// lockState says whether the session's write lock is held right now. A GET
// never takes it, so it is free unless a write is in flight.
func (s *Server) lockState(ctx context.Context, token string) string {
	return s.lockStateOf(ctx, s.sessions.locks, token)
}

func (s *Server) lockStateOf(ctx context.Context, lk locker, token string) string {
	switch l := lk.(type) {
	case *timedLocker:
		// The metrics wrapper (metrics.go): the lock is what it wraps.
		return s.lockStateOf(ctx, l.inner, token)
	case noLocks:
		return "off (-session-lock off): concurrent writes to one cart may overwrite each other"
	case *memoryLocks:
		held := false
		if token != "" {
			l.mu.Lock()
			_, held = l.locks[token]
			l.mu.Unlock()
		}
		if held {
			return "held right now by a write in this process (an in-process mutex: memory sessions only ever change here)"
		}
		return "free: an in-process mutex, taken only while a write to this session runs (memory sessions only ever change here)"
	case redisLocks:
		if token == "" {
			return "none: no session yet"
		}
		ms, err := s.redisPTTL(ctx, "lock:session:"+token)
		switch {
		case err != nil:
			return "unknown: Redis did not answer"
		case ms == -2:
			return "free: no lock:session:<token> key in Redis; a write takes it for at most 5 s"
		default:
			return fmt.Sprintf("held: lock:session:<token> exists in Redis and expires in %d ms unless its holder releases it first", ms)
		}
	}
	return "unknown"
}

// redisPTTL is PTTL key: milliseconds to live, -1 without expiry, -2 absent.
func (s *Server) redisPTTL(ctx context.Context, key string) (ms int64, err error) {
	err = withRedis(ctx, s.sessions.pool, func(ctx context.Context, conn redis.Conn) error {
		ms, err = redis.Int64(redis.DoContext(conn, ctx, "PTTL", key))
		return err
	})
	return ms, err
}

// deathStories explains, for each store, what this replica's death would do
// to the session; the store in use comes first.
func (s *Server) deathStories() []templates.StoreStory {
	me := s.cfg.Replica
	stories := []templates.StoreStory{
		{Store: StoreMemory, Text: fmt.Sprintf(
			"The session lives in %[1]s's memory and nowhere else. If %[1]s died, the session would die with it, and so would every cart %[1]s holds. "+
				"Your browser would keep its cookie, but the next replica nginx picks has never seen that token: it shows an empty cart, "+
				"and a restarted %[1]s starts with empty memory too. This is what stateful means: the replica is the only copy of your data.", me)},
		{Store: StoreRedis, Text: fmt.Sprintf(
			"The session lives in Redis, not in %[1]s. If %[1]s died, nginx would send your next request to another replica, which reads the same session "+
				"from Redis: nothing is lost, and only the ribbon's name changes. The replicas are stateless and interchangeable. "+
				"The risk moved rather than vanished: if Redis died, every replica would lose every session at once.", me)},
	}
	if s.sessions.Kind() == StoreRedis {
		stories[0], stories[1] = stories[1], stories[0]
	}
	stories[0].Current = true
	return stories
}

// clientStateText explains the browser's own cookies (trail.go).
func clientStateText(trail []string, home string) string {
	var b strings.Builder
	b.WriteString("Besides the session cookie, your browser keeps two small cookies of its own, which survive when a session does not. ")
	if len(trail) > 0 {
		fmt.Fprintf(&b, "The trail cookie lists which replica served each of your last requests, oldest first: %s. ", strings.Join(trail, ", "))
	}
	if home != "" {
		fmt.Fprintf(&b, "The session_home cookie says %s issued your current session token: with memory sessions, that is where your cart lives.", home)
	} else {
		b.WriteString("The session_home cookie names the replica that issued your session token; it is set with the token.")
	}
	return b.String()
}
