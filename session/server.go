package session

// What every server-side store shares: scs.SessionManager manages the
// session (its token, the token's renewal, the lifetime, the values and
// whether they changed) over the store's scs.Store, with the codec of
// codec.go. A store adds where the bytes live and, with the lock on, how
// writes to one session wait for each other.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alexedwards/scs/v2"
)

// scsSessions is one store's scs.SessionManager and what goes around it.
type scsSessions struct {
	mgr   *scs.SessionManager
	codec *codec
	obs   Observer
	// classify names a store error (Redis out of memory, say) before it
	// is wrapped in ErrUnavailable; nil leaves it as it is.
	classify func(error) error
}

// newSCS returns the session manager over store.
func newSCS(store scs.Store, obs Observer) *scsSessions {
	c := &codec{}
	mgr := scs.New()
	mgr.Store = store
	mgr.Codec = c
	mgr.Lifetime = Lifetime
	// No idle timeout: with one, scs re-commits every session it loads,
	// so every page view would be a write and set a cookie, and the
	// contract says a request that changes nothing sets none.
	mgr.IdleTimeout = 0
	// The cookie as scs would write it. The web layer writes it itself:
	// Secure follows each request (TLS here or at a trusted nginx), where
	// scs has one setting per process, and a near-cache's cookie carries
	// the session's version after the token.
	mgr.Cookie.Name = cookieName
	mgr.Cookie.HttpOnly = true
	return &scsSessions{mgr: mgr, codec: c, obs: obs}
}

// withData is a context whose values come first from data (scs's session
// data, the store's per-request state) and whose deadline and
// cancellation come from the call's own context.
type withData struct {
	context.Context
	data context.Context
}

func (c withData) Value(key any) any {
	if v := c.data.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

// load has scs load the session token names ("" for none). A store's
// per-request state travels in ctx to its scs.Store. An undecodable or
// expired session is a fresh one.
func (x *scsSessions) load(ctx context.Context, token string) (*Session, error) {
	if token == "" {
		sctx, err := x.mgr.Load(ctx, "")
		if err != nil {
			return nil, err
		}
		return &Session{mgr: x.mgr, ctx: sctx}, nil
	}
	start := time.Now()
	sctx, err := x.mgr.Load(ctx, token)
	if errors.Is(err, errUndecodable) {
		x.obs.ObserveStore("find", time.Since(start), nil)
		s, err := x.load(ctx, "")
		if s != nil {
			s.sent, s.dropped = true, "the stored session could not be decoded; starting a fresh one"
		}
		return s, err
	}
	if errors.Is(err, errLockBusy) {
		return nil, err // no find: the lock's holder is writing it
	}
	x.obs.ObserveStore("find", time.Since(start), err)
	if err != nil {
		return nil, x.unavailable("find", err)
	}
	s := &Session{sent: true, mgr: x.mgr, ctx: sctx}
	s.known = x.mgr.Token(sctx) != ""
	if s.known && !time.Now().Before(s.Deadline()) {
		// Stores drop a session at its expiry; one read in the very
		// moment it expires is fresh all the same.
		s, err := x.load(ctx, "")
		if s != nil {
			s.sent = true
		}
		return s, err
	}
	return s, nil
}

func (x *scsSessions) unavailable(op string, err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrLockTimeout) {
		return err
	}
	if x.classify != nil {
		err = x.classify(err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// commit has scs save the session under its token (a new one for a new
// session, and for a renewed one, whose old token scs deletes) and frees
// the session's lock: the one place a server-side write ends.
func (x *scsSessions) commit(ctx context.Context, s *Session) (token string, expires time.Time, err error) {
	defer s.Release() // unless the commit's own round trip carried it
	ctx = withData{Context: ctx, data: s.ctx}
	if s.renew {
		// A renewal keeps the session's lifetime: it changes who can
		// present the session, not how long it lives.
		deadline := s.Deadline()
		if err := x.mgr.RenewToken(ctx); err != nil {
			return "", time.Time{}, x.unavailable("renew", err)
		}
		x.mgr.SetDeadline(ctx, deadline)
	}
	start := time.Now()
	token, expires, err = x.mgr.Commit(ctx)
	x.obs.ObserveStore("commit", time.Since(start), err)
	if err != nil {
		var tooLarge *TooLargeError
		if errors.As(err, &tooLarge) {
			return "", time.Time{}, err
		}
		return "", time.Time{}, x.unavailable("commit", err)
	}
	s.renew = false
	return token, expires, nil
}
