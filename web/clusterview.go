package web

// GET /cluster and the announcer behind it. Replicas know nothing of each
// other by design; with a shared presence (Redis) they have a place to meet,
// so each one announces itself there with a short TTL and /cluster lists who
// is alive. Without one there is no shared place, and the page says so.

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/templates"
)

// announceEvery is how often a replica announces itself, well inside
// redisclient.AnnounceTTL so one slow refresh does not make a live replica
// blink out.
const announceEvery = 2 * time.Second

// Announce makes this replica visible on the other replicas' /cluster page:
// every announceEvery it announces itself to the shared presence, until ctx
// ends, when it withdraws the announcement. addr is the address to show for
// this replica. Without a shared presence there is nowhere to announce, and
// it returns at once.
//
// Run it in its own goroutine. It shares nothing with requests but the Redis
// client's pool, which never waits for a connection, so it cannot hold one up; a
// Redis error is logged at debug level and retried on the next tick.
func (s *Server) Announce(ctx context.Context, addr string) {
	if !s.presence.Shared() {
		return
	}
	a := redisclient.Announcement{Name: s.cfg.Replica, Addr: addr, Store: s.sessions.Kind(), StartedAt: s.started.UTC().Truncate(time.Second)}
	tick := time.NewTicker(announceEvery)
	defer tick.Stop()
	for {
		a.Ready = s.readyErr(ctx) == nil
		if err := s.presence.Announce(ctx, a); err != nil && ctx.Err() == nil {
			s.log.DebugContext(ctx, "announce failed", "err", err)
		}
		// The live board too: an idle replica is alive, and says so with
		// zeros, instead of turning "gone" on /metrics/live for want of
		// traffic to carry its counters.
		s.publishLiveIdle(time.Now())
		select {
		case <-ctx.Done():
			// A fresh context: the replica's is done. On failure the
			// announcement expires by itself.
			s.presence.Withdraw(context.Background(), s.cfg.Replica)
			return
		case <-tick.C:
		}
	}
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
	v := templates.ClusterView{Replica: s.cfg.Replica, Store: s.sessions.Kind(), Shared: s.presence.Shared(), Photos: s.photosText(r.Context())}
	v.Lives, _ = s.lives()
	self := templates.ClusterMember{
		Name: s.cfg.Replica, ColorClass: replicaColorClass(s.cfg.Replica), Store: s.sessions.Kind(),
		Ready: sessionOf(ctx).available() && s.readyErr(ctx) == nil, Self: true,
	}
	switch {
	case v.Shared && errors.Is(sessionOf(ctx).err, redisclient.ErrUnavailable):
		// This request already waited its timeout on a Redis that did not
		// answer (the session store's): asking presence now would make the
		// page wait a second timeout, likely for the same answer.
		v.Error = clusterBlind(sessionOf(ctx).err)
		v.Members = []templates.ClusterMember{self}
	case v.Shared:
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
	if s.cfg.Sentinel != nil {
		v.Redis = s.redisTier(ctx, !errors.Is(sessionOf(ctx).err, redisclient.ErrUnavailable))
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

// redisTier asks the sentinels for the Redis tier. When this request
// already found Redis down, the sentinels are not asked: the page shows what
// this replica last heard instead of waiting another timeout.
func (s *Server) redisTier(ctx context.Context, ask bool) *templates.RedisTier {
	tier := s.cfg.Sentinel
	var t redisclient.Topology
	var err error
	if ask {
		t, _, err = tier.Topology(ctx)
	}
	if !ask || err != nil {
		if err != nil {
			s.log.DebugContext(ctx, "asking the sentinels failed", "err", err)
		}
		t = redisclient.Topology{Primary: tier.Addr(), Failover: tier.LastFailover()}
	}
	v := &templates.RedisTier{Master: tier.Master(), Primary: t.Primary, Sentinels: t.Sentinels}
	if len(v.Sentinels) == 0 {
		v.Sentinels = tier.Sentinels()
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

// announced reads every live announcement as /cluster rows.
func (s *Server) announced(ctx context.Context) ([]templates.ClusterMember, error) {
	found, err := s.presence.Members(ctx)
	if err != nil {
		return nil, err
	}
	members := make([]templates.ClusterMember, 0, len(found))
	for _, m := range found {
		if m.Gone {
			members = append(members, templates.ClusterMember{Name: m.Name, ColorClass: replicaColorClass(m.Name),
				Gone: true, GoneFor: m.GoneFor.Round(time.Second).String()})
			continue
		}
		members = append(members, templates.ClusterMember{
			Name: m.Name, ColorClass: replicaColorClass(m.Name), Addr: m.Addr, Store: m.Store,
			StartedAt: m.StartedAt.Format("15:04:05 MST"), Ready: m.Ready,
			ExpiresIn: m.ExpiresIn.Round(100 * time.Millisecond).String(),
		})
	}
	return members, nil
}
