package web

// The ribbon's client-side memory: two small cookies the browser keeps, so
// that the ribbon can tell a story the server-side session cannot. They
// survive when the session does not (a killed replica, a flushed Redis),
// which is itself the lesson: state the client holds outlives the server.
//
//   - trail=shop1.shop3.shop2: the last few replicas that served this browser,
//     oldest first.
//   - session_home=shop1.1a2b3c4d: the replica that last handed this browser
//     its session token, and a short hash of that token. With memory sessions
//     that replica is where the session lives (only it can have written it),
//     so a replica that does not know the token can say where the cart is.
//     The hash ties the claim to one token: after the token changes, an old
//     cookie claims nothing.
//
// Neither cookie is trusted for anything but display, and both are parsed
// strictly: a forged cookie can only show names of the shape a replica name
// has, never markup, and never more than trailLen of them.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/statelab/shop/session"
)

const (
	trailCookie = "trail"
	homeCookie  = "session_home"
	// trailLen is how many replicas the trail remembers.
	trailLen = 5
	// maxTrailName bounds one name in the cookies.
	maxTrailName = 32
	// clientCookieAge matches the session lifetime: the cookies describe a
	// session and need not outlive it.
	clientCookieAge = session.Lifetime
	// homeTagLen is how many hex digits of the token's hash session_home keeps:
	// enough to tell tokens apart, far too few to learn anything about one.
	homeTagLen = 8
)

type trailCtxKey struct{}

// cookieName is how a replica appears in the client cookies: letters, digits,
// '-' and '_', at most maxTrailName. Anything else (a host name with dots)
// becomes '-', so the '.' separator stays unambiguous.
func cookieName(replica string) string {
	b := []byte(replica)
	if len(b) > maxTrailName {
		b = b[:maxTrailName]
	}
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// validName reports whether s has the shape cookieName produces.
func validName(s string) bool {
	if s == "" || len(s) > maxTrailName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

// parseTrail reads a trail cookie value. Anything malformed (a bad name, an
// empty part, too many parts) discards the whole cookie: a trail is either
// one we could have written or nothing.
func parseTrail(v string) []string {
	if v == "" || len(v) > trailLen*(maxTrailName+1) {
		return nil
	}
	parts := strings.Split(v, ".")
	if len(parts) > trailLen {
		return nil
	}
	for _, p := range parts {
		if !validName(p) {
			return nil
		}
	}
	return parts
}

// extendTrail appends name and keeps the last trailLen entries.
func extendTrail(trail []string, name string) []string {
	out := append(append(make([]string, 0, len(trail)+1), trail...), name)
	if len(out) > trailLen {
		out = out[len(out)-trailLen:]
	}
	return out
}

// tokenTag is the short hash of a session token that session_home keeps.
func tokenTag(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:homeTagLen]
}

// sessionHome returns the replica that, as this browser remembers, handed
// it the session token it sent now; "" when the browser does not know (no
// cookie, a malformed one, or one about another token).
func sessionHome(r *http.Request) string {
	token := sessionCookie(r)
	c, err := r.Cookie(homeCookie)
	if token == "" || err != nil {
		return ""
	}
	name, tag, ok := strings.Cut(c.Value, ".")
	if !ok || !validName(name) || tag != tokenTag(token) {
		return ""
	}
	return name
}

// homeOf is sessionHome as a replica name: this replica's own name when the
// cookie names it, even if cookieName had to change that name.
func (s *Server) homeOf(r *http.Request) string {
	home := sessionHome(r)
	if home != "" && home == cookieName(s.cfg.Replica) {
		return s.cfg.Replica
	}
	return home
}

// trailOf is the trail for this request's page, this replica last; nil
// outside withTrail.
func trailOf(ctx context.Context) []string {
	t, _ := ctx.Value(trailCtxKey{}).([]string)
	return t
}

// withTrail adds this replica to the browser's trail and, when the response
// hands out a session token, remembers this replica as the session's home.
// It sits outside withSession and learns about the token from the response's
// own Set-Cookie, so the session code needs to know nothing about it.
func (s *Server) withTrail(next http.Handler) http.Handler {
	me := cookieName(s.cfg.Replica)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var old string
		if c, err := r.Cookie(trailCookie); err == nil {
			old = c.Value
		}
		trail := extendTrail(parseTrail(old), me)
		r = r.WithContext(context.WithValue(r.Context(), trailCtxKey{}, trail))
		tw := &trailWriter{ResponseWriter: w, s: s, r: r, me: me, oldTrail: old, trail: strings.Join(trail, ".")}
		next.ServeHTTP(tw, r)
	})
}

// trailWriter sets the client cookies just before the response's header is
// written, when the session cookie (if any) is already in the header.
type trailWriter struct {
	http.ResponseWriter
	s               *Server
	r               *http.Request
	me              string
	oldTrail, trail string
	wrote           bool
}

func (tw *trailWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }

func (tw *trailWriter) WriteHeader(status int) {
	tw.setCookies()
	tw.ResponseWriter.WriteHeader(status)
}

func (tw *trailWriter) Write(p []byte) (int, error) {
	tw.setCookies()
	return tw.ResponseWriter.Write(p)
}

func (tw *trailWriter) setCookies() {
	if tw.wrote {
		return
	}
	tw.wrote = true
	secure := tw.s.cameOverTLS(tw.r)
	// Unchanged trail (a sticky browser on its replica): no cookie, no noise.
	if tw.trail != tw.oldTrail {
		http.SetCookie(tw, &http.Cookie{Name: trailCookie, Value: tw.trail, Path: "/", MaxAge: int(clientCookieAge.Seconds()),
			HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
	}
	for _, line := range tw.Header().Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != "session" {
			continue
		}
		home := &http.Cookie{Name: homeCookie, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
		if c.Value == "" || c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) {
			home.MaxAge = -1 // the session cookie is being deleted
		} else {
			home.Value = tw.me + "." + tokenTag(c.Value)
			home.MaxAge = int(clientCookieAge.Seconds())
		}
		http.SetCookie(tw, home)
	}
}
