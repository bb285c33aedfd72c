package web

import (
	"context"
	"net/http"
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
			w.Write([]byte("database not answering\n"))
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
