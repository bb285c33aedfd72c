package web

import (
	"encoding/json"
	"net/http"
)

// apiSession is /api/session's JSON: the session as this replica sees it.
type apiSession struct {
	Replica string      `json:"replica"`
	Store   string      `json:"store"`
	Session apiSessMeta `json:"session"`
	Cart    apiCart     `json:"cart"`
}

type apiSessMeta struct {
	// State is none (no cookie), known, or unknown (a cookie this replica's
	// store has never seen).
	State      string `json:"state"`
	Born       string `json:"born,omitempty"`
	BornAt     string `json:"born_at,omitempty"`
	LastWriter string `json:"last_writer,omitempty"`
	LoggedIn   bool   `json:"logged_in"`
	// NearCache says where a replica with a near-cache found the session:
	// hit (its own copy, Redis not asked), miss, stale, bypass (Redis);
	// absent without a near-cache.
	NearCache string `json:"near_cache,omitempty"`
	// Version is the session's write count in a shared store.
	Version int64 `json:"version,omitempty"`
}

type apiCart struct {
	Count int        `json:"count"`
	Rev   int        `json:"rev"`
	Items []CartItem `json:"items"`
}

// handleAPISession answers the session as JSON; 503 (JSON) without a store.
func (s *Server) handleAPISession(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	state := "none"
	switch {
	case info.Known:
		state = "known"
	case info.HadCookie:
		state = "unknown"
	}
	items := info.Cart.Items
	if items == nil {
		items = []CartItem{}
	}
	body, err := json.Marshal(apiSession{
		Replica: s.cfg.Replica,
		Store:   s.sessions.Kind(),
		Session: apiSessMeta{State: state, Born: info.Born, BornAt: info.BornAt, LastWriter: info.LastWriter, LoggedIn: info.AccountID != 0, NearCache: info.NearCache, Version: info.Version},
		Cart:    apiCart{Count: info.Cart.Count(), Rev: info.Cart.Rev, Items: items},
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
	return nil
}
