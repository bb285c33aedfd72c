package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/statelab/shop/store"
)

// handleHealthz answers 200 while the process serves.
func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
}

// handleReadyz answers 200 when this replica should get traffic: the
// database and session store answer and it is not draining.
func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.draining.Load() {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), StoreTimeout)
		defer cancel()
		if err := s.db.Ping(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(databaseTrouble(err) + "\n"))
			return
		}
		if err := s.sessions.Ping(ctx); err != nil {
			short, _ := storeTrouble(err)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(short + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
}

// databaseTrouble says in a few words why the database did not answer a
// readiness check: a refused login is not mended by waiting as a restart
// is, and the one who reads /readyz should know which it is.
func databaseTrouble(err error) string {
	switch {
	case errors.Is(err, store.ErrPasswordRefused):
		return "database refused the password"
	case errors.Is(err, store.ErrLoginRefused):
		return "database refused the login"
	}
	return "database not answering"
}
