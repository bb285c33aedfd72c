package web

// GET /cluster and the announcer behind it. Replicas know nothing of each
// other by design; with a shared Redis they have a place to meet, so each
// one announces itself there with a short TTL and /cluster lists who is
// alive. Without one there is no shared place, and the page says so.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/templates"
)

const (
	// announcePrefix + replica name is a replica's announcement key.
	announcePrefix = "replicas:"
	// announceIndex is a sorted set of announced names scored by when their
	// announcement expires (Unix ms), so /cluster finds them without a SCAN
	// over every session in Redis. The keys themselves stay the truth: a name
	// whose key expired is skipped, so clock skew between hosts is harmless.
	announceIndex = "replicas"
	// announceTTL: an announcement not refreshed for this long vanishes, so a
	// replica killed with -9 leaves the list within seconds.
	announceTTL = 5 * time.Second
	// announceEvery is the refresh period, well inside announceTTL so one
	// slow refresh does not make a live replica blink out.
	announceEvery = 2 * time.Second
	// maxAnnounced bounds how many announcements /cluster reads.
	maxAnnounced = 100
	// goneFor is how long /cluster keeps a row for a replica whose
	// announcement expired or was withdrawn, so a class sees it go.
	goneFor = 30 * time.Second
)

// announcement is the JSON under replicas:<name>.
type announcement struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	Store     string    `json:"store"`
	StartedAt time.Time `json:"started_at"`
	Ready     bool      `json:"ready"`
}

// Announce makes this replica visible on the other replicas' /cluster page:
// every announceEvery it writes replicas:<name> to Redis with a TTL of
// announceTTL, until ctx ends, when it withdraws the announcement. addr is
// the address to show for this replica. Without a shared Redis there is
// nowhere to announce, and it returns at once.
//
// Run it in its own goroutine. It shares nothing with requests but the Redis
// client's pool, which never waits for a connection, so it cannot hold one up; a
// Redis error is logged at debug level and retried on the next tick.
func (s *Server) Announce(ctx context.Context, addr string) {
	if s.redis == nil {
		return
	}
	a := announcement{Name: s.cfg.Replica, Addr: addr, Store: s.sessions.Kind(), StartedAt: time.Now().UTC().Truncate(time.Second)}
	tick := time.NewTicker(announceEvery)
	defer tick.Stop()
	for {
		a.Ready = s.readyErr(ctx) == nil
		if err := s.announceOnce(ctx, a); err != nil && ctx.Err() == nil {
			s.log.DebugContext(ctx, "announce failed", "err", err)
		}
		// The live board too: an idle replica is alive, and says so with
		// zeros, instead of turning "gone" on /metrics/live for want of
		// traffic to carry its counters.
		s.publishLiveIdle(time.Now())
		select {
		case <-ctx.Done():
			s.withdraw()
			return
		case <-tick.C:
		}
	}
}

func (s *Server) announceOnce(ctx context.Context, a announcement) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.redis.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		expires := time.Now().Add(announceTTL).UnixMilli()
		conn.Send("SET", announcePrefix+s.cfg.Replica, b, "PX", announceTTL.Milliseconds())
		conn.Send("ZADD", announceIndex, expires, s.cfg.Replica)
		// The index outlives its members by their gone rows, and no longer:
		// when every replica is gone, so is the index.
		_, err := redis.DoContext(conn, ctx, "PEXPIRE", announceIndex, (announceTTL + goneFor).Milliseconds())
		return err
	})
}

// withdraw deletes the announcement as the replica stops, so the others see
// it leave at once instead of after the TTL: its index entry expires now,
// which makes it a gone row.
func (s *Server) withdraw() {
	// A fresh context: the replica's is done. On failure it expires by itself.
	s.redis.Do(context.Background(), func(ctx context.Context, conn redis.Conn) error {
		conn.Send("DEL", announcePrefix+s.cfg.Replica)
		_, err := redis.DoContext(conn, ctx, "ZADD", announceIndex, "XX", time.Now().UnixMilli(), s.cfg.Replica)
		return err
	})
}

// readyErr is what /readyz checks: not draining, database and store answer.
func (s *Server) readyErr(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return err
	}
	return s.sessions.Ping(ctx)
}

// handleClusterView lists the replicas this replica can tell are up.
func (s *Server) handleClusterView(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	v := templates.ClusterView{Replica: s.cfg.Replica, Store: s.sessions.Kind(), Shared: s.redis != nil, Photos: s.photosText(r.Context())}
	v.Lives, _ = s.lives()
	self := templates.ClusterMember{
		Name: s.cfg.Replica, ColorClass: replicaColorClass(s.cfg.Replica), Store: s.sessions.Kind(),
		Ready: sessionOf(ctx).available() && s.readyErr(ctx) == nil, Self: true,
	}
	switch {
	case s.redis != nil && session.TraitsOf(s.sessions).NeedsRedis && !sessionOf(ctx).available():
		// main hands a redis session store the same Redis: the session load
		// just found it down, and asking again would only make the page wait
		// another timeout for the same answer. (A cookie session fails to
		// load only when the database does, which says nothing of Redis.)
		v.Error = clusterBlind(sessionOf(ctx).err)
		v.Members = []templates.ClusterMember{self}
	case s.redis != nil:
		members, err := s.announced(ctx)
		if err != nil {
			s.log.DebugContext(ctx, "reading announcements failed", "err", err)
			v.Error = clusterBlind(err)
		}
		found := false
		for _, m := range members {
			if m.Name == s.cfg.Replica && m.Gone {
				continue // this replica is here: its old announcement is history
			}
			if m.Name == s.cfg.Replica {
				m.Self, found = true, true
				m.Ready = self.Ready // fresher than the announcement
			}
			v.Members = append(v.Members, m)
		}
		if !found {
			self.ExpiresIn = "not announced"
			v.Members = append(v.Members, self)
		}
	default:
		v.Members = []templates.ClusterMember{self}
	}
	if s.redis != nil && s.redis.Sentinel() {
		v.Redis = s.redisTier(ctx, sessionOf(ctx).available())
	}
	if !s.trustedClient(r) {
		hideAddresses(&v)
	}
	slices.SortFunc(v.Members, func(a, b templates.ClusterMember) int { return cmp.Compare(a.Name, b.Name) })
	v.Page = s.page(r, "The cluster")
	s.clearFlash(w, r)
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, templates.ClusterPage(v))
	return nil
}

// hideAddresses takes every address out of v, for a client outside the
// shop's own networks: which replicas and Redis nodes exist, and whether
// they are up, stays on the page.
func hideAddresses(v *templates.ClusterView) {
	v.AddressesHidden = true
	for i := range v.Members {
		if v.Members[i].Addr != "" {
			v.Members[i].Addr = addressHidden
		}
	}
	if t := v.Redis; t != nil {
		if t.Primary != "" {
			t.Primary = addressHidden
		}
		for i := range t.Replicas {
			t.Replicas[i].Addr = addressHidden
		}
		if len(t.Sentinels) > 0 {
			t.Sentinels = []string{addressHidden}
		}
		t.LastFailover = t.LastFailoverAt
	}
}

// redisTier asks the sentinels for the Redis tier. When the session load
// just found Redis down, the sentinels are not asked: the page shows what
// this replica last heard instead of waiting another timeout.
func (s *Server) redisTier(ctx context.Context, ask bool) *templates.RedisTier {
	var t redisclient.Topology
	var err error
	if ask {
		t, _, err = s.redis.Topology(ctx)
	}
	if !ask || err != nil {
		if err != nil {
			s.log.DebugContext(ctx, "asking the sentinels failed", "err", err)
		}
		t = redisclient.Topology{Primary: s.redis.Addr(), Failover: s.redis.LastFailover()}
	}
	v := &templates.RedisTier{Master: s.redis.Master(), Primary: t.Primary, Sentinels: t.Sentinels}
	if len(v.Sentinels) == 0 {
		v.Sentinels = s.redis.Sentinels()
	}
	for _, n := range t.Replicas {
		v.Replicas = append(v.Replicas, templates.RedisNode{Addr: n.Addr, Up: n.Up})
	}
	if f := t.Failover; !f.At.IsZero() {
		v.LastFailover = f.From + " → " + f.To + " at " + f.At.Format("15:04:05 MST")
		v.LastFailoverAt = "at " + f.At.Format("15:04:05 MST")
	}
	if !ask || err != nil {
		v.Error = "The sentinels were not asked or did not answer: this is what " + s.cfg.Replica + " last heard."
	}
	return v
}

// clusterBlind says why /cluster cannot list the others, naming a Redis
// that answers but refuses for what it is.
func clusterBlind(err error) string {
	if errors.Is(err, redisclient.ErrAuth) {
		return "Redis refused this replica's password (NOAUTH or WRONGPASS), so it cannot tell which others are up."
	}
	return "Redis did not answer, so this replica cannot tell which others are up."
}

// announced reads every live announcement from Redis.
func (s *Server) announced(ctx context.Context) (members []templates.ClusterMember, err error) {
	err = s.redis.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		members, err = readAnnouncements(ctx, conn)
		return err
	})
	return members, err
}

// readAnnouncements reads the index (names scored by when their
// announcement expires) and each live announcement; a name whose
// announcement expired less than goneFor ago is a gone row.
func readAnnouncements(ctx context.Context, conn redis.Conn) ([]templates.ClusterMember, error) {
	now := time.Now()
	conn.Send("ZREMRANGEBYSCORE", announceIndex, "-inf", now.Add(-goneFor).UnixMilli())
	scored, err := redis.Int64Map(redis.DoContext(conn, ctx, "ZRANGE", announceIndex, 0, maxAnnounced-1, "WITHSCORES"))
	if err != nil {
		return nil, err
	}
	var members []templates.ClusterMember
	var keys []string
	for name, expires := range scored {
		if gone := now.Sub(time.UnixMilli(expires)); gone > 0 {
			members = append(members, templates.ClusterMember{Name: name, ColorClass: replicaColorClass(name),
				Gone: true, GoneFor: gone.Round(time.Second).String()})
			continue
		}
		keys = append(keys, announcePrefix+name)
	}
	for _, key := range keys {
		conn.Send("GET", key)
		conn.Send("PTTL", key)
	}
	if err := conn.Flush(); err != nil {
		return nil, err
	}
	for _, key := range keys {
		b, errGet := redis.Bytes(redis.ReceiveContext(conn, ctx))
		ms, errTTL := redis.Int64(redis.ReceiveContext(conn, ctx))
		var a announcement
		if errGet != nil || errTTL != nil || json.Unmarshal(b, &a) != nil {
			continue // expired since it was indexed, or not ours
		}
		if a.Name == "" {
			a.Name = strings.TrimPrefix(key, announcePrefix)
		}
		members = append(members, templates.ClusterMember{
			Name: a.Name, ColorClass: replicaColorClass(a.Name), Addr: a.Addr, Store: a.Store,
			StartedAt: a.StartedAt.Format("15:04:05 MST"), Ready: a.Ready,
			ExpiresIn: (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String(),
		})
	}
	return members, nil
}
