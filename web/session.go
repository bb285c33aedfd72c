package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/alexedwards/scs/v2"
)

// ErrSessionStore wraps every failure of the session store: it becomes a 503.
var ErrSessionStore = errors.New("session store unavailable")

// Session keys. Values are strings or json.RawMessage (see jsonCodec).
const (
	keySID     = "sid"        // stable identity, survives token renewal; owns anonymous orders
	keyBorn    = "born"       // replica that created the session
	keyBornAt  = "born_at"    // RFC 3339
	keyWriter  = "writer"     // replica that last wrote it
	keyCart    = "cart"       // json.RawMessage, see EncodeCart
	keyAccount = "account_id" // decimal account id once logged in
)

type ctxKey int

const sessionStateKey ctxKey = iota

// requestSession is what the session middleware learned about this request's
// session, kept in its context.
type requestSession struct {
	// available is false when the store did not answer: the context then
	// carries no scs data and every scs call would panic.
	available bool
	// hadCookie: the browser sent a well-formed session cookie.
	hadCookie bool
}

func sessionOf(ctx context.Context) requestSession {
	rs, _ := ctx.Value(sessionStateKey).(requestSession)
	return rs
}

// sessionCookie returns the token from a well-formed session cookie, or "".
// scs tokens are 43 characters of unpadded base64url; anything else is
// garbage and is treated as no cookie (a fresh session, never a 5xx).
func sessionCookie(r *http.Request) string {
	c, err := r.Cookie("session")
	if err != nil || len(c.Value) != 43 {
		return ""
	}
	for i := 0; i < len(c.Value); i++ {
		switch ch := c.Value[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			return ""
		}
	}
	return c.Value
}

// isWrite reports whether a request may change its session.
func isWrite(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// withSession loads the session, runs next into a buffer, commits the session
// if next changed it, and only then writes the response. It replaces scs's
// LoadAndSave, which turns a store error into a bare 500 before the handler
// runs and saves on the first Write, tearing the response if the save fails.
//
// With the session lock on, a write takes its session's lock before the load
// and holds it past the commit, so two replicas never interleave
// read-modify-write cycles on one cart.
func (s *Server) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := sessionCookie(r)
		rs := requestSession{hadCookie: token != ""}
		if token != "" && isWrite(r) {
			ctx, cancel := context.WithTimeout(r.Context(), LockWait)
			unlock, err := s.sessions.locks.Lock(ctx, token)
			cancel()
			if err != nil {
				s.serveError(w, r, err)
				return
			}
			defer unlock()
		}

		ctx, err := s.sessions.manager.Load(r.Context(), token)
		switch {
		case errors.Is(err, errBadSessionData):
			s.log.WarnContext(r.Context(), "undecodable session; starting a fresh one", "err", err)
			ctx, err = s.sessions.manager.Load(r.Context(), "")
		case err != nil:
			// Degrade: the request goes on without a session; pages that can
			// live without one show a notice, the others answer 503.
			s.log.WarnContext(r.Context(), "session store unavailable", "err", err)
			ctx = r.Context()
		}
		rs.available = err == nil
		r = r.WithContext(context.WithValue(ctx, sessionStateKey, rs))

		rec := newRecorder()
		defer rec.free()
		next.ServeHTTP(rec, r)

		if rs.available && s.sessions.manager.Status(r.Context()) != scs.Unmodified {
			token, expiry, err := s.sessions.manager.Commit(r.Context())
			if err != nil {
				s.serveError(w, r, errors.Join(ErrSessionStore, err))
				return
			}
			s.setSessionCookie(rec, r, token, expiry)
		}
		rec.writeTo(w)
	})
}

// setSessionCookie writes the session cookie. Secure follows how the browser
// reached us (directly over TLS, or TLS at a trusted nginx), which scs's
// static cookie settings cannot express.
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, expiry time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     "session",
		Value:    token,
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
	Available  bool
	HadCookie  bool
	Known      bool // the store had this browser's session
	SID        string
	Born       string
	BornAt     string
	LastWriter string
	Cart       Cart
	AccountID  int64
}

// session reads this request's session. It fails with ErrSessionStore when the
// store did not answer.
func (s *Server) session(ctx context.Context) (sessionInfo, error) {
	rs := sessionOf(ctx)
	info := sessionInfo{Available: rs.available, HadCookie: rs.hadCookie}
	if !rs.available {
		return info, ErrSessionStore
	}
	m := s.sessions.manager
	info.Known = m.Token(ctx) != ""
	info.SID = m.GetString(ctx, keySID)
	info.Born = m.GetString(ctx, keyBorn)
	info.BornAt = m.GetString(ctx, keyBornAt)
	info.LastWriter = m.GetString(ctx, keyWriter)
	if id, err := strconv.ParseInt(m.GetString(ctx, keyAccount), 10, 64); err == nil {
		info.AccountID = id
	}
	if raw, ok := m.Get(ctx, keyCart).(json.RawMessage); ok {
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
	s.touchSession(ctx)
	b := EncodeCart(cart)
	s.sessions.manager.Put(ctx, keyCart, json.RawMessage(b))
	if accountID != 0 {
		return s.db.SaveCart(ctx, accountID, b)
	}
	return nil
}

// touchSession marks a write by this replica; it creates the session's
// identity on its first write.
func (s *Server) touchSession(ctx context.Context) string {
	m := s.sessions.manager
	sid := m.GetString(ctx, keySID)
	if sid == "" {
		sid = randomToken(16)
		m.Put(ctx, keySID, sid)
		m.Put(ctx, keyBorn, s.cfg.Replica)
		m.Put(ctx, keyBornAt, time.Now().UTC().Format(time.RFC3339))
	}
	m.Put(ctx, keyWriter, s.cfg.Replica)
	return sid
}
