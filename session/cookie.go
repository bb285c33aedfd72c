package session

// The cookie store: the whole session sealed (encrypted and authenticated
// by gorilla/securecookie: AES-256-CTR and HMAC-SHA256) in the browser's
// session cookie. No server keeps anything, so any replica with the keys
// serves any request without a round trip. Its costs are the lesson: a
// browser keeps about 4 KB, logout cannot take back a copied cookie without
// state on the server (here an account's session epoch in the database),
// concurrent tabs overwrite each other with no lock to stop them, every
// replica must share the keys, and the cookie travels on every request.

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

const (
	// CookieLimit is what a browser keeps of one cookie, name and value
	// together: a write whose sealed session would pass it is refused.
	CookieLimit = 4096
	// MinKeyLen is the shortest secret -session-keys accepts.
	MinKeyLen = 32
	// cookieName is the cookie the sealed session travels in; it is also
	// sealed into the value, so a value cannot be replayed under another
	// cookie's name.
	cookieName = "session"
)

// Epochs tells an account's current session epoch. Logout and a password
// change bump it in the database, and a sealed cookie from an older epoch is
// anonymous: revocation, which needs state on the server after all.
type Epochs interface {
	SessionEpoch(ctx context.Context, accountID int64) (int64, error)
}

// TooLargeError is a write refused because its sealed session would not fit
// in one cookie.
type TooLargeError struct {
	Size, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the session would be %d bytes sealed in its cookie, over the %d bytes a browser keeps", e.Size, e.Limit)
}

// ParseKeys splits comma-separated secrets, each at least MinKeyLen
// characters; the first seals, every one opens.
func ParseKeys(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("no keys: want comma-separated secrets of at least %d characters each (e.g. the output of openssl rand -hex 32)", MinKeyLen)
	}
	var keys []string
	for i, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("key %d has %d characters, want at least %d", i+1, len(k), MinKeyLen)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// cookieKind is the cookie store as it registers itself.
var cookieKind = Kind{
	Name: Cookie,
	Traits: Traits{
		Place: InBrowser, NeedsKeys: true,
		ReplicaDeath: func(replica string) string {
			return fmt.Sprintf(
				"Nothing would happen to it. The session lives in your browser's cookie, sealed with a key every replica shares; %[1]s keeps nothing. "+
					"If %[1]s died, the next replica opens the same cookie with the same key and serves the same cart, with no store to ask and none to lose. "+
					"The state moved to the client and into the keys: lose or change the keys and every session is gone at once.", replica)
		},
		RedisOutage: "Nothing happens to it: no replica reads Redis to serve it. A replica that is configured with a Redis uses it only for shared services (login limits, who is up), and those say so when it is gone.",
		KeyChange: "Rolled out as new,old, every cookie sealed with the old key still opens, and each is resealed with the new one on its next write; once old is dropped, a cookie still sealed with it opens nothing and its session is lost. " +
			"A replica started with a wrong key loses every session it meets: the keys are state too, and every replica must share them.",
	},
	Open: func(d Deps) (Store, error) { return NewCookie(d.Cookie, d.Options) },
}

// CookieStore seals the session into its cookie.
type CookieStore struct {
	codecs       []*securecookie.SecureCookie // codecs[0] seals
	fingerprints []string                     // a short hash of each key, for pages
	epochs       Epochs
	obs          Observer
	limit        int
}

// CookieOptions are what only the cookie store takes.
type CookieOptions struct {
	// Keys are the secrets (see ParseKeys): the first seals, all open.
	Keys []string
	// Epochs reads an account's session epoch for revocation.
	Epochs Epochs
	// Limit is the most a sealed cookie may take; 0 means CookieLimit.
	// Tests lower it to reach it with the seeded catalog.
	Limit int
}

// NewCookie returns a cookie store. Options.Lock has no effect: there is
// nothing on a server to lock.
func NewCookie(co CookieOptions, o Options) (*CookieStore, error) {
	if len(co.Keys) == 0 {
		return nil, errors.New("session: cookie store: no keys")
	}
	if co.Epochs == nil {
		return nil, errors.New("session: cookie store: no epochs to revoke sessions with")
	}
	c := &CookieStore{epochs: co.Epochs, obs: o.observer(), limit: co.Limit}
	if c.limit <= 0 {
		c.limit = CookieLimit
	}
	for i, k := range co.Keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("session: cookie store: key %d has %d characters, want at least %d", i+1, len(k), MinKeyLen)
		}
		// Two keys from one secret, each for its own purpose.
		hashKey, err := hkdf.Key(sha256.New, []byte(k), nil, "statelab session cookie hmac", 32)
		if err != nil {
			return nil, fmt.Errorf("session: cookie store: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, []byte(k), nil, "statelab session cookie aes-256", 32)
		if err != nil {
			return nil, fmt.Errorf("session: cookie store: %w", err)
		}
		codec := securecookie.New(hashKey, blockKey).
			SetSerializer(securecookie.NopEncoder{}). // the value is our JSON
			MaxAge(0).                                // the expiry is in the value itself
			MaxLength(2 * c.limit)                    // bounds what Decode reads
		c.codecs = append(c.codecs, codec)
		sum := sha256.Sum256([]byte(k))
		c.fingerprints = append(c.fingerprints, hex.EncodeToString(sum[:4]))
	}
	return c, nil
}

// Kind is Cookie.
func (c *CookieStore) Kind() string { return Cookie }

// cookieState is what the cookie store knows of one session: where its
// cookie came from and the last seal, kept in the store's own type.
type cookieState struct {
	c        *CookieStore
	bytes    int // size of the cookie as loaded or saved
	sealedBy int // which key opened it, -1 for none
	// The last seal of this session: its plain bytes and the cookie value.
	sealedFrom []byte
	sealedAs   string
}

func (st *cookieState) cookieBytes() int      { return st.bytes }
func (st *cookieState) fits(s *Session) error { _, err := st.c.seal(s, st); return err }
func (st *cookieState) source() string        { return "" }

// stateOf is s's cookieState; a session from another store gets a fresh one.
func (c *CookieStore) stateOf(s *Session) *cookieState {
	if st, ok := s.state.(*cookieState); ok {
		return st
	}
	st := &cookieState{c: c, sealedBy: -1}
	s.state = st
	return st
}

// Load opens the sealed session. A cookie that was tampered with, sealed
// with a key this replica lacks, expired or revoked is a fresh session;
// only the database failing to say an account's epoch is an error.
func (c *CookieStore) Load(ctx context.Context, cookie string, _ bool) (*Session, error) {
	if cookie == "" {
		return c.fresh(false, ""), nil
	}
	start := time.Now()
	s, err := c.open(ctx, cookie)
	c.obs.ObserveStore("find", time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *CookieStore) open(ctx context.Context, cookie string) (*Session, error) {
	var b []byte
	key := -1
	for i, codec := range c.codecs {
		if codec.Decode(cookieName, cookie, &b) == nil {
			key = i
			break
		}
	}
	if key < 0 {
		return c.fresh(true, "the cookie could not be opened: it was tampered with, or sealed with a key this replica does not have"), nil
	}
	deadline, vals, err := decode(b)
	if err != nil {
		return c.fresh(true, "the sealed session could not be decoded"), nil
	}
	if !time.Now().Before(deadline) {
		return c.fresh(true, "the session expired at "+deadline.UTC().Format(time.RFC3339)+": its expiry is sealed inside the cookie, so a copy dies on time too"), nil
	}
	s := &Session{sent: true, known: true, deadline: deadline, vals: vals,
		state: &cookieState{c: c, sealedBy: key, bytes: len(cookieName) + 1 + len(cookie)}}
	if id, _ := s.Account(); id != 0 {
		// Revocation: the one server-side read this store makes, on every
		// logged-in request.
		current, err := c.epochs.SessionEpoch(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: session epoch of account %d: %w", ErrUnavailable, id, err)
		}
		if current != s.epoch() {
			return c.fresh(true, "the cookie was revoked: its account logged out or changed its password since it was sealed"), nil
		}
	}
	return s, nil
}

// fresh is an empty session, replacing a cookie that could not be used
// when there was one (why says why).
func (c *CookieStore) fresh(sent bool, why string) *Session {
	s := newSession(sent, why)
	s.state = &cookieState{c: c, sealedBy: -1}
	return s
}

// seal encrypts and authenticates s with the first key and checks the size.
func (c *CookieStore) seal(s *Session, st *cookieState) (string, error) {
	b, err := s.encode()
	if err != nil {
		return "", fmt.Errorf("session: encode: %w", err)
	}
	// Fits sealed this very session a moment ago (the cart changed, then
	// nothing else): the same bytes need no second encryption.
	if st.sealedFrom != nil && bytes.Equal(st.sealedFrom, b) {
		return st.sealedAs, nil
	}
	plain := bytes.Clone(b) // Encode encrypts b in place
	sealed, err := c.codecs[0].Encode(cookieName, b)
	if err != nil {
		// A value far past the limit trips the codec's MaxLength; sealing
		// roughly multiplies the JSON's size by 16/9 (two base64 passes).
		if estimate := len(cookieName) + 1 + len(plain)*16/9; estimate > c.limit {
			return "", &TooLargeError{Size: estimate, Limit: c.limit}
		}
		return "", fmt.Errorf("session: seal: %w", err)
	}
	if size := len(cookieName) + 1 + len(sealed); size > c.limit {
		return "", &TooLargeError{Size: size, Limit: c.limit}
	}
	st.sealedFrom, st.sealedAs = plain, sealed
	return sealed, nil
}

// Save seals the session into the value of its cookie. A session that
// would not fit fails with a *TooLargeError and changes nothing.
func (c *CookieStore) Save(_ context.Context, s *Session) (string, time.Time, error) {
	defer s.Release() // there is no lock; the rule is the same for every store
	st := c.stateOf(s)
	start := time.Now()
	sealed, err := c.seal(s, st)
	c.obs.ObserveStore("commit", time.Since(start), nil)
	if err != nil {
		return "", time.Time{}, err
	}
	s.known, st.sealedBy, st.bytes = true, 0, len(cookieName)+1+len(sealed)
	s.renew, s.modified = false, false
	return sealed, s.deadline, nil
}

// Ping always answers: the store is the browser.
func (c *CookieStore) Ping(context.Context) error { return nil }

// Describe tells what the browser holds and what would end it.
func (c *CookieStore) Describe(_ context.Context, s *Session, replica string) Description {
	st := c.stateOf(s)
	d := Description{
		TTL:          time.Until(s.Deadline()),
		SizeBytes:    st.bytes,
		Size:         fmt.Sprintf("%d bytes in your browser's cookie, sealed (encrypted and authenticated), sent with every request; a browser keeps at most %d", st.bytes, c.limit),
		Lock:         "none: -session-lock has no effect with cookies. Nothing on a server holds the session, so there is nothing to lock: two tabs that change the cart at once each get their own sealed copy back, and the last cookie the browser stores wins (lost updates).",
		ReplicaDeath: cookieKind.Traits.ReplicaDeath(replica),
		RedisOutage:  cookieKind.Traits.RedisOutage,
		Logout: "Logging out bumps the account's session epoch in the database, so a copy of an older logged-in cookie opens as anonymous: revocation needs a database read on every logged-in request, which is state creeping back. " +
			"An anonymous cart cannot be revoked: a replayed older cookie shows the older cart (checkout stays idempotent, so it cannot place the same order twice).",
	}
	if !s.known {
		d.Size = "no sealed session yet: the first change creates the cookie"
	}
	if st.sealedBy >= 0 && st.sealedBy < len(c.codecs) && s.known {
		d.Key = fmt.Sprintf("key %d of %d (fingerprint %s)", st.sealedBy+1, len(c.codecs), c.fingerprints[st.sealedBy])
		if st.sealedBy == 0 {
			d.Key += ", the newest, which seals every write"
		} else {
			d.Key += ", an older key this replica still opens with; the next write reseals it with key 1"
		}
	}
	d.KeyChange = cookieKind.Traits.KeyChange
	return d
}

// Close does nothing: the cookie store holds nothing.
func (c *CookieStore) Close() error { return nil }
