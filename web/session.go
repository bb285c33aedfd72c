package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/statelab/shop/session"
)

// ErrSessionStore wraps every failure of the session store or of a shared
// service the request needs: it becomes a 503.
var ErrSessionStore = errors.New("session store unavailable")

// StoreTimeout bounds what /readyz and /cluster wait for the database and
// the session store: no probe waits longer, whatever state they are in.
const StoreTimeout = time.Second

type ctxKey int

const sessionStateKey ctxKey = iota

// requestSession is what the session middleware learned about this request's
// session, kept in its context.
type requestSession struct {
	// sess is the loaded session; nil when the store did not answer.
	sess *session.Session
	// hadCookie: the browser sent a session cookie the store could read.
	hadCookie bool
	// err is why sess is nil: the store's error, or the lock wait's timeout.
	err error
	// failedSave holds what the handler asked to run should the session's
	// save fail; see onFailedSave.
	failedSave *[]func(context.Context, error) error
}

// onFailedSave registers f to run if this request's session save fails
// after the handler: a handler that already changed something elsewhere (an
// order committed, an account created) takes it back, or says what may
// exist, since the request answers 503. f returns the error to answer with.
func onFailedSave(ctx context.Context, f func(context.Context, error) error) {
	if rs := sessionOf(ctx); rs.failedSave != nil {
		*rs.failedSave = append(*rs.failedSave, f)
	}
}

func sessionOf(ctx context.Context) requestSession {
	rs, _ := ctx.Value(sessionStateKey).(requestSession)
	return rs
}

// available reports whether the store answered for this request.
func (rs requestSession) available() bool { return rs.sess != nil }

// sessionCookie is the session cookie's value as the browser sent it, ""
// without one. What it means is the store's business.
func sessionCookie(r *http.Request) string {
	c, err := r.Cookie("session")
	if err != nil {
		return ""
	}
	return c.Value
}

// isWrite reports whether a request may change its session.
func isWrite(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// withSession loads the session, runs next into a buffer, saves the session
// if next changed it, and only then writes the response: a store error
// degrades the request instead of becoming a bare 500, and a failed save
// becomes a clean 503 page instead of a torn response.
//
// A write loads its session for writing: with the session lock on, the
// store takes the session's lock as it loads it and releases it as it
// saves, so two replicas never interleave read-modify-write cycles on one
// cart.
func (s *Server) withSession(next http.Handler) http.Handler {
	return s.loadSession(next, isWrite)
}

// withSessionRead is withSession for a write that never changes the
// session (a review): it loads the session without its write lock.
func (s *Server) withSessionRead(next http.Handler) http.Handler {
	return s.loadSession(next, func(*http.Request) bool { return false })
}

func (s *Server) loadSession(next http.Handler, forWrite func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.sessions.Load(r.Context(), sessionCookie(r), forWrite(r))
		switch {
		case errors.Is(err, session.ErrLockTimeout):
			// The store answers; another request holds the session. The
			// page says so, not that the store is away.
			r = r.WithContext(context.WithValue(r.Context(), sessionStateKey, requestSession{err: err}))
			s.serveError(w, r, err)
			return
		case err != nil:
			// Degrade: the request goes on without a session; pages that can
			// live without one show a notice, the others answer 503.
			short, _ := storeTrouble(err)
			s.log.WarnContext(r.Context(), short, "err", err)
		case sess.Dropped() != "":
			s.log.WarnContext(r.Context(), "session dropped", "why", sess.Dropped())
		}
		defer sess.Release() // a write that changed nothing
		var failedSave []func(context.Context, error) error
		rs := requestSession{sess: sess, hadCookie: sess != nil && sess.Sent(), err: err, failedSave: &failedSave}
		if sess == nil {
			// Whether the cookie was readable is unknown; any cookie counts.
			rs.hadCookie = sessionCookie(r) != ""
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionStateKey, rs))

		rec := newRecorder()
		defer rec.free()
		next.ServeHTTP(rec, r)

		if sess != nil && sess.Modified() {
			cookie, expires, err := s.sessions.Save(r.Context(), sess)
			if err != nil {
				err = errors.Join(ErrSessionStore, err)
				for _, f := range failedSave {
					err = f(r.Context(), err)
				}
				s.serveError(w, r, err)
				return
			}
			s.setSessionCookie(rec, r, cookie, expires)
		}
		rec.writeTo(w)
	})
}

// setSessionCookie writes the session cookie. Secure follows how the browser
// reached us (directly over TLS, or TLS at a trusted nginx).
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, value string, expiry time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     "session",
		Value:    value,
		Path:     "/",
		Expires:  time.Unix(expiry.Unix()+1, 0).UTC(),
		MaxAge:   int(time.Until(expiry).Seconds()) + 1,
		HttpOnly: true,
		Secure:   s.cameOverTLS(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// sessionInfo is the session as the ribbon and /api/session describe it.
type sessionInfo struct {
	Available    bool
	HadCookie    bool
	Known        bool // the store had this browser's session
	SID          string
	Born         string
	BornAt       string
	LastWriter   string
	Cart         Cart
	AccountID    int64
	AccountEmail string
	// NearCache is where a store with a near-cache found the session
	// (session.Session.NearCache); "" without one.
	NearCache string
	// Version is the session's write count in a shared store.
	Version int64
}

// session reads this request's session. It fails with ErrSessionStore when the
// store did not answer.
func (s *Server) session(ctx context.Context) (sessionInfo, error) {
	rs := sessionOf(ctx)
	info := sessionInfo{Available: rs.available(), HadCookie: rs.hadCookie}
	if !rs.available() {
		if rs.err != nil {
			return info, fmt.Errorf("%w: %w", ErrSessionStore, rs.err)
		}
		return info, ErrSessionStore
	}
	sess := rs.sess
	info.Known = sess.Known()
	info.SID = sess.SID()
	info.Born, info.BornAt = sess.Born()
	info.LastWriter = sess.Writer()
	info.AccountID, info.AccountEmail = sess.Account()
	info.NearCache = sess.NearCache()
	info.Version = sess.Version()
	if raw := sess.Cart(); raw != nil {
		cart, err := DecodeCart(raw)
		if err != nil {
			// A cart we cannot read is dropped rather than failing every page.
			s.log.WarnContext(ctx, "dropping undecodable cart", "err", err)
		}
		info.Cart = cart
	}
	return info, nil
}

// saveCart stores the cart and stamps the session with this replica as its
// last writer (and as its birthplace, if it is new). A logged-in cart is also
// saved with the account, so it outlives the session.
func (s *Server) saveCart(ctx context.Context, accountID int64, cart Cart) error {
	if err := s.setSessionCart(ctx, cart); err != nil {
		return err
	}
	if accountID != 0 {
		return s.db.SaveCart(ctx, accountID, EncodeCart(cart))
	}
	return nil
}

// setSessionCart is saveCart's session half: the cart and the stamp in the
// session, refused when the session would not fit where it lives (a cookie
// past 4 KB) before anything else changes.
func (s *Server) setSessionCart(ctx context.Context, cart Cart) error {
	if sess := sessionOf(ctx).sess; sess != nil {
		sess.Touch(s.cfg.Replica)
		sess.SetCart(EncodeCart(cart))
		return sess.Fits()
	}
	return nil
}

// touchSession marks a write by this replica; it creates the session's
// identity on its first write, and returns it.
func (s *Server) touchSession(ctx context.Context) string {
	if sess := sessionOf(ctx).sess; sess != nil {
		return sess.Touch(s.cfg.Replica)
	}
	return ""
}

// randomToken returns n random bytes in hex: request ids, idempotency keys.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
