package web

// GET /state and GET /api/state: the state audit. Each part of this replica
// that keeps a kind of state (the session store, uploads, jobs, the
// schedule, live streams, caches, the login limits, the configuration)
// says where that state lives and how much of it this replica holds; the
// page adds it up into the one question the seeds end on: what would a
// kill -9 of this replica lose right now?

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/statelab/shop/state"
	"github.com/statelab/shop/state/price"
	"github.com/statelab/shop/templates"
)

// StateHolder is a part of the replica that keeps a kind of state and can
// say where it lives. main hands web every one it wires (Config.State).
type StateHolder interface {
	Describe(ctx context.Context) state.Description
}

// StateFunc makes a function a StateHolder.
type StateFunc func(ctx context.Context) state.Description

// Describe calls f.
func (f StateFunc) Describe(ctx context.Context) state.Description { return f(ctx) }

// stateKinds is the order /state lists the kinds in; a kind not named here
// comes after them, by name.
var stateKinds = []string{"sessions", "uploads", "jobs", "schedule", "live", "caches", "rate-limits", "configuration"}

// lossNouns say what a kill -9 loses of a kind, in the headline's words:
// one and many.
var lossNouns = map[string][2]string{
	"sessions":    {"cart", "carts"},
	"uploads":     {"photo", "photos"},
	"jobs":        {"receipt", "receipts"},
	"schedule":    {"scheduled report", "scheduled reports"},
	"live":        {"live stream's missed events", "live streams' missed events"},
	"rate-limits": {"login-limit count", "login-limit counts"},
}

// apiState is /api/state's JSON.
type apiState struct {
	Replica string              `json:"replica"`
	Profile string              `json:"profile"`
	Kinds   []state.Description `json:"kinds"`
	// Loses is the headline: what a kill -9 now would lose, in words.
	Loses string `json:"loses"`
	// MeasuredPrice is what running stateless costs, as `make bench`
	// measured it on its machine (Config.Price); null if never measured.
	MeasuredPrice *price.Measured `json:"measured_price"`
}

// audit asks every holder, merges holders of one kind into one row (their
// counts add up; the kind is lost if any part of it is), and orders the rows.
func (s *Server) audit(ctx context.Context) apiState {
	a := apiState{Replica: s.cfg.Replica, Profile: s.cfg.Profile, Kinds: []state.Description{}, MeasuredPrice: s.cfg.Price}
	if a.Profile == "" {
		a.Profile = "custom"
	}
	byKind := map[string]int{}
	for _, h := range s.stateHolders() {
		d := h.Describe(ctx)
		i, ok := byKind[d.Kind]
		if !ok {
			byKind[d.Kind] = len(a.Kinds)
			a.Kinds = append(a.Kinds, d)
			continue
		}
		k := &a.Kinds[i]
		k.HeldHere += d.HeldHere
		k.LostIfKilled = k.LostIfKilled || d.LostIfKilled
		if d.Loses != "" {
			k.Loses = strings.TrimPrefix(k.Loses+", "+d.Loses, ", ")
		}
		if k.Lives != d.Lives && d.Lives != "" {
			k.Lives += "+" + d.Lives
		}
		k.Note = strings.TrimSpace(k.Note + " " + d.Note)
	}
	rank := func(kind string) int {
		if i := slices.Index(stateKinds, kind); i >= 0 {
			return i
		}
		return len(stateKinds)
	}
	slices.SortStableFunc(a.Kinds, func(x, y state.Description) int {
		if d := rank(x.Kind) - rank(y.Kind); d != 0 {
			return d
		}
		return strings.Compare(x.Kind, y.Kind)
	})
	a.Loses = lossSentence(a.Kinds)
	return a
}

// lossSentence is "14 carts, 3 photos, 1 receipt", or "nothing". A kind
// that names its own loss (Loses) is said in its words.
func lossSentence(kinds []state.Description) string {
	var parts []string
	for _, k := range kinds {
		if !k.LostIfKilled {
			continue
		}
		if k.Loses != "" {
			parts = append(parts, k.Loses)
			continue
		}
		if k.HeldHere <= 0 {
			continue
		}
		noun, ok := lossNouns[k.Kind]
		if !ok {
			noun = [2]string{k.Kind, k.Kind}
		}
		if k.HeldHere == 1 {
			parts = append(parts, "1 "+noun[0])
		} else {
			parts = append(parts, fmt.Sprintf("%d %s", k.HeldHere, noun[1]))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// stateHolders are main's holders and the server's own: the review photos
// it was given, its rendered catalog, a cache that any replica rebuilds,
// and the login limits.
func (s *Server) stateHolders() []StateHolder {
	return append(slices.Clip(s.cfg.State), s.photos, StateFunc(s.catalog.describe), s.limiter)
}

// describe is the catalog cache's account of itself for /state.
func (c *catalogCache) describe(context.Context) state.Description {
	d := state.Description{Kind: "caches", Lives: state.Replica, Note: "The rendered catalog is rebuilt from the database by any replica on its first request: losing it costs one slower page, nothing else."}
	if cat := c.snap.Load(); cat != nil {
		d.HeldHere = len(cat.bodies)
	}
	return d
}

// handleState is GET /state, the audit as a page.
func (s *Server) handleState(w http.ResponseWriter, r *http.Request) error {
	a := s.audit(r.Context())
	v := templates.StateView{Replica: a.Replica, Profile: a.Profile, Loses: a.Loses, Page: s.page(r, "What this replica holds"), Price: priceView(a.MeasuredPrice)}
	for _, k := range a.Kinds {
		v.Kinds = append(v.Kinds, templates.StateKind{Kind: k.Kind, Lives: k.Lives, HeldHere: k.HeldHere, Lost: k.LostIfKilled && (k.HeldHere > 0 || k.Loses != ""), LostIfKilled: k.LostIfKilled, Note: k.Note})
	}
	s.clearFlash(w, r)
	s.render(w, r, http.StatusOK, templates.StatePage(v))
	return nil
}

// priceView words the bench's figures for /state; nil when there are
// none for both profiles.
func priceView(m *price.Measured) *templates.PriceView {
	if m == nil || !m.Complete() {
		return nil
	}
	full, _ := m.Find("stateful")
	less, _ := m.Find("stateless")
	mb := func(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	profile := func(p price.Profile) templates.PriceProfile {
		pp := templates.PriceProfile{Name: p.Name, LB: p.LB, Throughput: fmt.Sprintf("%.0f", p.Throughput),
			P50: fmt.Sprintf("%.1f ms", p.P50Ms), P99: fmt.Sprintf("%.1f ms", p.P99Ms), Replicas: p.Replicas,
			ReplicaRSS: mb(p.ReplicaRSS), Total: mb(p.TotalRSS)}
		for _, part := range p.Shared {
			pp.Shared = append(pp.Shared, part.Name+" "+mb(part.RSS))
		}
		return pp
	}
	return &templates.PriceView{
		At: m.At.UTC().Format("2006-01-02 15:04 UTC"), Machine: m.Machine, Load: m.Load, Command: m.Command, Flow: m.Flow,
		Clients: m.Clients, Rate: m.Rate, Ratio: fmt.Sprintf("%.0f%%", m.ThroughputRatio*100),
		Stateful: profile(full), Stateless: profile(less),
	}
}

// handleAPIState is GET /api/state, the audit as JSON.
func (s *Server) handleAPIState(w http.ResponseWriter, r *http.Request) error {
	body, err := json.Marshal(s.audit(r.Context()))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
	return nil
}
