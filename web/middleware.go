package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxBodyBytes caps every request body; more is a 413.
const MaxBodyBytes = 64 << 10

// recorder buffers a whole response so the session can be committed before a
// single byte reaches the client.
type recorder struct {
	header http.Header
	status int
	body   *bytes.Buffer
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newRecorder() *recorder {
	b := bufferPool.Get().(*bytes.Buffer)
	b.Reset()
	return &recorder{header: make(http.Header), body: b}
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(p)
}

func (rec *recorder) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range rec.header {
		if k == "Set-Cookie" {
			// Cookies set before the handler ran (the sticky route) stay.
			h[k] = append(h[k], v...)
			continue
		}
		h[k] = v
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	// The length up front spares net/http the chunked encoding of a body it
	// would otherwise see only in pieces: one write fewer per page, and
	// nothing for nginx to de-chunk.
	if rec.status != http.StatusNoContent && rec.status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	}
	w.WriteHeader(rec.status)
	w.Write(rec.body.Bytes())
}

func (rec *recorder) free() {
	// Don't keep huge buffers alive in the pool.
	if rec.body.Cap() <= 1<<20 {
		bufferPool.Put(rec.body)
	}
	rec.body = nil
}

// statusWriter remembers the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (sw *statusWriter) WriteHeader(status int) {
	if sw.status == 0 {
		sw.status = status
	}
	sw.ResponseWriter.WriteHeader(status)
}

func (sw *statusWriter) Write(p []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	return sw.ResponseWriter.Write(p)
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

type requestIDKey struct{}

// requestID is nginx's X-Request-ID for this request (or one made up here).
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// withRequestLog gives the request an id, counts it and logs one line for it.
func (s *Server) withRequestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 {
			id = randomToken(8)
		}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		// r.Pattern: the mux set it on this very request value on the way in.
		s.observe(r.Pattern, sw.status, time.Since(start))
		if s.log.Enabled(r.Context(), slog.LevelInfo) {
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method),
				slog.String("route", r.Pattern),
				slog.String("path", r.URL.Path),
				slog.Int("status", sw.status),
				slog.Duration("duration", time.Since(start)))
		}
	})
}

// withHeaders sets the headers every response carries: who served it, which
// session store it used, and the security headers.
func (s *Server) withHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Served-By", s.cfg.Replica)
		h.Set("X-Session-Store", s.sessions.Kind())
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if r.Header.Get("X-Shop-Sticky") == "1" {
			s.pinRoute(w, r)
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = s.boundBody(w, r)
		}
		next.ServeHTTP(w, r)
	})
}

// DefaultBodyTimeout is how long a request body may take to arrive; see
// Config.BodyTimeout.
const DefaultBodyTimeout = 5 * time.Second

// boundBody caps the body at MaxBodyBytes and gives it BodyTimeout to
// arrive: a client that announces 100 bytes and sends 10 gets a 408 then,
// instead of holding a handler (and its session's lock) until the server's
// ReadTimeout. Once the whole body is read the deadline is lifted again:
// left in place it would end the request's context for a handler that is
// merely slow after reading (net/http watches the connection with it).
//
// A review's body may carry a photo: MaxReviewBytes and UploadTimeout.
func (s *Server) boundBody(w http.ResponseWriter, r *http.Request) io.ReadCloser {
	limit, timeout := int64(MaxBodyBytes), s.cfg.BodyTimeout
	if isReviewPost(r) {
		limit, timeout = MaxReviewBytes, s.cfg.UploadTimeout
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return body // a writer without deadlines (a test recorder): nothing to lift
	}
	return &deadlineBody{ReadCloser: body, rc: rc, header: w.Header()}
}

// deadlineBody lifts the connection's read deadline when the body ends, and
// closes the connection after the reply when it does not: the rest of a
// broken body must not be read as the next request.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	header http.Header
	done   bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if err == io.EOF {
			b.rc.SetReadDeadline(time.Time{})
		} else {
			b.header.Set("Connection", "close")
		}
	}
	return n, err
}

// withNoStore keeps every page out of caches: each one shows this visitor's
// session (the cart count, the account once logged in), so a shared cache,
// or the browser's own after a logout on a shared computer, must not keep it.
func withNoStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// pinRoute sets the routing cookie nginx's sticky policy maps to this replica.
// The app sets it (not nginx) so that the very first response pins the
// browser to the replica that created its session, and the replica a dead
// one's traffic falls back to re-pins it to itself.
func (s *Server) pinRoute(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("shop_route"); err == nil && c.Value == s.cfg.Replica {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     "shop_route",
		Value:    s.cfg.Replica,
		Path:     "/",
		HttpOnly: true,
		Secure:   s.cameOverTLS(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// defaultTrustedProxies: loopback and the private ranges, where nginx sits in
// the Procfile and compose clusters.
var defaultTrustedProxies = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
}

// fromTrustedProxy reports whether the connection came from a proxy whose
// forwarding headers we believe. Anyone else could forge them.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// cameOverTLS reports whether the browser's connection used TLS: ours, or
// nginx's as it says in X-Forwarded-Proto, believed only from a trusted proxy.
func (s *Server) cameOverTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return r.Header.Get("X-Forwarded-Proto") == "https" && s.fromTrustedProxy(r)
}

// clientIP is the browser's address: the connection's, or, behind a trusted
// proxy, the last address that proxy appended to X-Forwarded-For (earlier
// entries come from the client and may be forged).
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.fromTrustedProxy(r) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return host
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if ip, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
		return ip.String()
	}
	return host
}
