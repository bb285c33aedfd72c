// Package session keeps the shop's sessions: one Store interface, and a
// store per place a session can live (this process's memory, a shared
// Redis). A Store loads a typed Session for one request, takes the
// session's write lock as part of loading it for a write, and saves it
// again, releasing the lock in the same step. Handlers see the Session's
// fields (cart, account, birth, last writer), never the store behind it.
package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
)

// The names of the stores this package registers, as -session-store, the
// lab, the bench and the harness name them. Nothing decides by them: what a
// store is, it declares in its Traits (registry.go).
const (
	Memory = "memory"
	Redis  = "redis"
	Cookie = "cookie"
)

const (
	// Lifetime is how long a session lives after it was created.
	Lifetime = 24 * time.Hour
	// LockWait is how long a write waits for its session's lock before
	// Load gives up with ErrLockTimeout.
	LockWait = 2 * time.Second
	// lockTTL is how long a Redis lock lives if its holder dies holding it.
	lockTTL = 5 * time.Second
)

var (
	// ErrUnavailable wraps every failure of the store to answer: the
	// request goes on without a session, and what needs one answers 503.
	ErrUnavailable = errors.New("session store unavailable")
	// ErrLockTimeout: another request held the session's lock for all of
	// LockWait.
	ErrLockTimeout = errors.New("session lock wait timed out")
	// ErrMaybeApplied marks a refused write that could not be taken back
	// (WAIT refused it, then Redis did not answer the undo): the 503 must
	// not say that nothing changed.
	ErrMaybeApplied = errors.New("the write may have been applied")
)

// Store keeps sessions. Every implementation is safe for concurrent use.
type Store interface {
	// Kind is the store's kind (Memory, Redis, Cookie).
	Kind() string
	// Load returns the session the cookie's value names. A missing,
	// malformed, unknown or undecodable cookie gives a fresh, empty
	// session (Dropped says why, when there was one). With write, and the
	// store's lock on, Load first takes the session's write lock, waiting
	// at most LockWait (then ErrLockTimeout); the lock travels with the
	// session until Save or Release. Any other error wraps ErrUnavailable.
	Load(ctx context.Context, cookie string, write bool) (*Session, error)
	// Save stores a session that was modified and releases its lock. It
	// returns the cookie value that names (or holds) the session from now on
	// and when it expires. Errors wrap ErrUnavailable, or are a
	// *TooLargeError when the session does not fit where it lives.
	Save(ctx context.Context, s *Session) (cookie string, expires time.Time, err error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Describe says, for the inspector, what the store keeps of s and what
	// would become of it; replica is this replica's name.
	Describe(ctx context.Context, s *Session, replica string) Description
	// Close releases the store's resources.
	Close() error
}

// Options are what every store takes.
type Options struct {
	// Lock serializes writes to one session (-session-lock on).
	Lock bool
	// WaitReplicas, for the redis store, acknowledges a write only once
	// that many Redis replicas confirm it (WAIT) within the store timeout;
	// otherwise the write answers ErrUnavailable (-redis-wait-replicas).
	WaitReplicas int
	// Observer is told of every store operation and lock wait; nil means
	// nobody listens.
	Observer Observer
	// MaxMemorySessions bounds the memory store (-memory-sessions); 0 is
	// DefaultMaxMemorySessions. Other stores ignore it.
	MaxMemorySessions int
}

// Observer receives the timings of a store's work: metrics listen here.
type Observer interface {
	// ObserveStore records one operation: "find", "commit", "delete" or
	// "evict" (the memory store made room for a new session).
	ObserveStore(op string, d time.Duration, err error)
	// ObserveLockWait records one wait for a session's lock.
	ObserveLockWait(d time.Duration, timedOut bool)
}

type noObserver struct{}

func (noObserver) ObserveStore(string, time.Duration, error) {}
func (noObserver) ObserveLockWait(time.Duration, bool)       {}

func (o Options) observer() Observer {
	if o.Observer == nil {
		return noObserver{}
	}
	return o.Observer
}

// Description is a store's account of one session for the inspector: the
// facts, then what each kind of trouble would do to this session.
type Description struct {
	// TTL is how long the store will keep the session.
	TTL time.Duration
	// SizeBytes is what the store holds for the session, and Size says it
	// in words.
	SizeBytes int
	Size      string
	// Lock says whether the session's write lock is held, in words.
	Lock string
	// Key says which key sealed the session, where keys matter.
	Key string
	// ReplicaDeath, RedisOutage, KeyChange and Logout say what this
	// replica's death, Redis going away, a change of keys and a logout
	// would do to the session.
	ReplicaDeath, RedisOutage, KeyChange, Logout string
	// Capacity says what bounds how many sessions the store keeps, and what
	// happens past the bound.
	Capacity string
	// NearCache says whether this answer came from the replica's
	// near-cache and how the cache stays honest; "" without one.
	NearCache string
}

// Session is one browser's session as loaded for one request. It is not
// safe for concurrent use: one request owns it.
//
// A server-side store's session is scs's: its values, token, deadline and
// whether it changed live in the scs.SessionManager's data in ctx, and the
// methods here are typed keys over them. A store that keeps the session
// itself (the cookie) holds the values in vals. What else a store knows of
// one session (the bytes it read, the key that sealed it) is its own type,
// in state.
type Session struct {
	sent    bool   // the browser sent a cookie the store could read
	known   bool   // the store had the session
	dropped string // why the browser's session was not used, if it was not
	renew   bool   // Save issues a new token and drops the old one
	lock    *Lock  // the session's write lock, while a write holds it

	mgr *scs.SessionManager // nil for a session its store keeps itself
	ctx context.Context     // scs's data for this request, with mgr

	// The values of a session kept by its store itself.
	vals     map[string]any
	deadline time.Time
	modified bool

	state sessionState // the store's own account of this session; nil for none
}

// sessionState is what a store knows of one session beyond its values,
// kept in the store's own type.
type sessionState interface {
	// cookieBytes is the size of the session's cookie, 0 when the token
	// rule applies.
	cookieBytes() int
	// fits reports whether the session fits where it lives.
	fits(s *Session) error
	// source is where a cached store found the session; "" without a cache.
	source() string
}

// newSession is a fresh session its store keeps itself, living Lifetime
// from now.
func newSession(sent bool, dropped string) *Session {
	return &Session{sent: sent, dropped: dropped, deadline: time.Now().Add(Lifetime), vals: map[string]any{}}
}

func (s *Session) get(key string) any {
	if s.mgr != nil {
		return s.mgr.Get(s.ctx, key)
	}
	return s.vals[key]
}

func (s *Session) getString(key string) string {
	v, _ := s.get(key).(string)
	return v
}

// put sets key; a zero value removes it, as the stored form omits it.
func (s *Session) put(key string, v any) {
	zero := v == "" || v == int64(0)
	if c, ok := v.(json.RawMessage); ok && c == nil {
		zero = true
	}
	switch {
	case s.mgr != nil && zero:
		s.mgr.Remove(s.ctx, key)
	case s.mgr != nil:
		s.mgr.Put(s.ctx, key, v)
	case zero:
		delete(s.vals, key)
		s.modified = true
	default:
		s.vals[key] = v
		s.modified = true
	}
}

// Token is the store's key for the session, "" for a session not saved yet
// or one that is not kept under a token (a cookie).
func (s *Session) Token() string {
	if s.mgr != nil {
		return s.mgr.Token(s.ctx)
	}
	return ""
}

// Sent reports whether the browser sent a cookie the store could read.
func (s *Session) Sent() bool { return s.sent }

// Known reports whether the store had the session the browser named.
func (s *Session) Known() bool { return s.known }

// Dropped says why the session the browser named was not used ("" when it
// was, or when there was none): it was undecodable, and later stores add
// their own reasons.
func (s *Session) Dropped() string { return s.dropped }

// Deadline is when the session expires.
func (s *Session) Deadline() time.Time {
	if s.mgr != nil {
		return s.mgr.Deadline(s.ctx)
	}
	return s.deadline
}

// Modified reports whether the session changed and must be saved.
func (s *Session) Modified() bool {
	if s.mgr != nil {
		return s.mgr.Status(s.ctx) != scs.Unmodified
	}
	return s.modified
}

// SID is the session's stable identity, "" before its first write.
func (s *Session) SID() string { return s.getString(keySID) }

// Born is the replica that created the session, and when (RFC 3339).
func (s *Session) Born() (replica, at string) { return s.getString(keyBorn), s.getString(keyBornAt) }

// Writer is the replica that last wrote the session.
func (s *Session) Writer() string { return s.getString(keyWriter) }

// Cart is the cart as the web layer encoded it, nil when there is none.
func (s *Session) Cart() json.RawMessage {
	c, _ := s.get(keyCart).(json.RawMessage)
	return c
}

// Account is the logged-in account, id 0 when anonymous.
func (s *Session) Account() (id int64, email string) {
	id, err := strconv.ParseInt(s.getString(keyAccountID), 10, 64)
	if err != nil {
		return 0, ""
	}
	return id, s.getString(keyAccountEmail)
}

// epoch is the account's session epoch at login.
func (s *Session) epoch() int64 {
	e, _ := s.get(keyEpoch).(int64)
	return e
}

// Version counts the session's saves in a shared store: the near-cache
// serves a cached copy only when it is at least the version the browser's
// cookie names (read-your-writes across replicas).
func (s *Session) Version() int64 {
	v, _ := s.get(keyVer).(int64)
	return v
}

// NearCache says where a store with a near-cache found this session: "hit"
// (this replica's cache), "miss" (Redis; cached now), "stale" (the cache
// held an older version than the browser's cookie names: Redis), "bypass"
// (invalidation from Redis is down: Redis, nothing cached), "write" (a
// write always reads Redis under the lock); "" without a near-cache.
func (s *Session) NearCache() string {
	if s.state == nil {
		return ""
	}
	return s.state.source()
}

// Renewed says why the token was last renewed: register, login, logout.
func (s *Session) Renewed() string { return s.getString(keyRenewed) }

// Touch marks a write by replica: it stamps the session as last written
// there and, on its first write, gives it an identity and a birthplace. It
// returns the session's identity.
func (s *Session) Touch(replica string) string {
	sid := s.SID()
	if sid == "" {
		sid = randomHex(16)
		s.put(keySID, sid)
		s.put(keyBorn, replica)
		s.put(keyBornAt, time.Now().UTC().Format(time.RFC3339))
	}
	s.put(keyWriter, replica)
	return sid
}

// NewIdentity gives the session a new stable identity: what belonged to
// the old one (anonymous orders) stays with it.
func (s *Session) NewIdentity() { s.put(keySID, randomHex(16)) }

// SetCart replaces the cart.
func (s *Session) SetCart(cart json.RawMessage) { s.put(keyCart, cart) }

// SetAccount records a login, with the account's session epoch at the
// time: a store that cannot delete a session (a cookie) revokes it by
// comparing epochs.
func (s *Session) SetAccount(id int64, email string, epoch int64) {
	s.put(keyAccountID, strconv.FormatInt(id, 10))
	s.put(keyAccountEmail, email)
	s.put(keyEpoch, epoch)
}

// Fits reports whether the session, as it is now, fits where it lives: a
// *TooLargeError when its sealed cookie would pass what a browser keeps.
// Call it before a change has effects elsewhere (a database write), so a
// refused write changes nothing.
func (s *Session) Fits() error {
	if s.state == nil {
		return nil
	}
	return s.state.fits(s)
}

// Bytes is the size of the session's cookie, as the browser sent it or as
// it will be set: a token for a server-side store, the whole sealed session
// for a cookie.
func (s *Session) Bytes() int {
	if s.state != nil {
		if n := s.state.cookieBytes(); n > 0 {
			return n
		}
	}
	if !s.known {
		return 0
	}
	return len(cookieName) + 1 + len(s.Token())
}

// Clear forgets everything the session holds: identity, cart, account. Its
// write count stays: a shared store's versions only go up.
func (s *Session) Clear() {
	ver := s.Version()
	if s.mgr != nil {
		s.mgr.Clear(s.ctx)
	} else {
		clear(s.vals)
		s.modified = true
	}
	if ver != 0 {
		s.put(keyVer, ver)
	}
}

// Renew gives the session a new token when it is saved and drops the old
// one, so that a token someone saw or planted before opens nothing (session
// fixation); why is kept for the inspector.
func (s *Session) Renew(why string) {
	s.renew = true
	s.put(keyRenewed, why)
}

// Release frees the session's write lock if it still holds it: after a
// write that changed nothing, or whose Save failed. It may be called more
// than once, and on a nil Session. It is the only way a lock is freed
// (lock.go).
func (s *Session) Release() {
	if s == nil {
		return
	}
	s.lock.release()
}

// Field is one stored key of a session with its JSON value.
type Field struct {
	Name string
	JSON []byte
}

// Fields lists the session's stored keys in name order, for the inspector.
func (s *Session) Fields() []Field {
	var keys []string
	if s.mgr != nil {
		keys = s.mgr.Keys(s.ctx)
	} else {
		keys = slices.Sorted(maps.Keys(s.vals))
	}
	fields := make([]Field, 0, len(keys))
	for _, k := range keys {
		if k == keyVer {
			continue
		}
		b, err := json.Marshal(s.get(k))
		if err != nil {
			continue
		}
		fields = append(fields, Field{Name: k, JSON: b})
	}
	return fields
}

// values are the session's values, for the stores to encode and copy.
func (s *Session) values() map[string]any {
	if s.mgr == nil {
		return s.vals
	}
	m := make(map[string]any, 10)
	for _, k := range s.mgr.Keys(s.ctx) {
		m[k] = s.mgr.Get(s.ctx, k)
	}
	return m
}

// encode is the session's stored form.
func (s *Session) encode() ([]byte, error) { return encode(s.Deadline(), s.values()) }

// tokenLen is the length of a token: 32 random bytes in unpadded base64url,
// as scs made them, so that cookies issued before still parse.
const tokenLen = 43

// A cookie may carry the session's version after its token, "<token>.<n>":
// stores with a near-cache hand such cookies out, and every store reads
// them (a cluster may switch the cache on and off replica by replica).
const versionSep = "."

// splitCookie separates a cookie's token from its version (0 without one,
// or with one that is not a non-negative number).
func splitCookie(cookie string) (token string, ver int64) {
	token, v, found := strings.Cut(cookie, versionSep)
	if !found {
		return cookie, 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return token, 0
	}
	return token, n
}

// newToken returns a fresh random session token.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validToken returns cookie when it has a token's shape, else "": anything
// else is garbage and is treated as no cookie (a fresh session, never a
// 5xx), and never reaches the store.
func validToken(cookie string) string {
	if len(cookie) != tokenLen {
		return ""
	}
	for i := 0; i < len(cookie); i++ {
		switch ch := cookie[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			return ""
		}
	}
	return cookie
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ReplicaDeathStory says what a replica's death would do to a session kept
// by a store of kind, as the kind declares it: each store tells its own in
// Describe, and the inspector shows the other kinds' beside it.
func ReplicaDeathStory(kind, replica string) string {
	k, ok := Lookup(kind)
	if !ok || k.Traits.ReplicaDeath == nil {
		return ""
	}
	return k.Traits.ReplicaDeath(replica)
}
