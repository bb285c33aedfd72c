package web

// What only the shop's own networks see: the addresses of replicas and of
// the Redis tier, and /metrics (which also names the Go version and the
// process's resources). Everyone else sees the rest of /cluster.

import (
	"net/http"
	"net/netip"
)

// trustedClient reports whether the request comes from a network in
// TrustedProxies (-trusted-proxies): the connection's own address, or,
// when that is a trusted proxy (nginx), the address it forwarded in
// X-Forwarded-For. A client cannot talk its way in: a forwarded address is
// believed only from a trusted peer.
func (s *Server) trustedClient(r *http.Request) bool {
	ip, err := netip.ParseAddr(s.clientIP(r))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// onlyTrusted serves next to trusted clients and a 403 saying why to
// everyone else.
func (s *Server) onlyTrusted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.trustedClient(r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("403 Forbidden: " + r.URL.Path + " is shown only to the shop's own networks (-trusted-proxies).\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// addressHidden stands in for an address an untrusted client may not see.
const addressHidden = "hidden"
