package session

// The registry of stores. Each kind of store declares what it is (its
// Traits: where a session lives, whether writes lock, what a replica's
// death, a Redis outage or a change of keys does to it, in words) and how
// it is built; flags, pages, the lab and the harness decide by those
// declarations, never by a store's name. A new store is one file (its
// Store, or an scs.Store under NewSCSStore, and its Kind), one line in
// init below, and its docs.
//
// The registry is the one table of this package that lives beside no
// value: like database/sql's drivers, it is filled before main runs and
// only read after.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/statelab/shop/internal/redisclient"
)

func init() {
	// The order pages and tables show them in.
	Register(memoryKind, redisKind, cookieKind)
}

// Place is where a kind of store keeps a session.
type Place string

const (
	// InReplica: the memory of the replica that created the session, and
	// nowhere else.
	InReplica Place = "replica"
	// InShared: a store every replica reads and writes (Traits.Where names it).
	InShared Place = "shared"
	// InBrowser: the cookie itself; no server keeps anything.
	InBrowser Place = "browser"
)

// Traits are what a kind of store declares about itself.
type Traits struct {
	// Place is where a session lives, and Where names it in words for
	// pages ("Redis"; "" when Place says it all).
	Place Place
	Where string
	// Locks: with -session-lock on, writes to one session wait for each
	// other.
	Locks bool
	// NeedsRedis: sessions live in Redis, so the replica needs a Redis and
	// a Redis outage is a session outage.
	NeedsRedis bool
	// SharesNothing: replicas with this store share nothing by design, not
	// even a Redis for the shared services (login limits, presence).
	SharesNothing bool
	// NeedsKeys: the store seals sessions with -session-keys.
	NeedsKeys bool
	// Cacheable: the near-cache (-session-cache) may front the store.
	Cacheable bool
	// ReplicaDeath says what the death of replica does to a session the
	// store keeps; RedisOutage and KeyChange what Redis going away and a
	// change of -session-keys do.
	ReplicaDeath           func(replica string) string
	RedisOutage, KeyChange string
}

// Deps are what main hands a store to build it: each store takes what it
// uses.
type Deps struct {
	Options Options
	// Redis is the replica's Redis client; nil without one.
	Redis *redisclient.Client
	// Cache fronts a Cacheable store with the near-cache; nil for none.
	Cache *CacheOptions
	// Cookie is what a store that seals sessions takes.
	Cookie CookieOptions
}

// Kind is one kind of store as it registers itself.
type Kind struct {
	// Name is its value of -session-store.
	Name   string
	Traits Traits
	// Open builds a store of this kind.
	Open func(Deps) (Store, error)
}

var registry []Kind

// Register adds kinds of store, in the order given. A name registered
// twice is a programming error.
func Register(kinds ...Kind) {
	for _, k := range kinds {
		if _, dup := Lookup(k.Name); dup || k.Name == "" || k.Open == nil {
			panic(fmt.Sprintf("session: Register(%q): empty, without Open, or registered twice", k.Name))
		}
		registry = append(registry, k)
	}
}

// Lookup is the kind of store registered as name.
func Lookup(name string) (Kind, bool) {
	i := slices.IndexFunc(registry, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return registry[i], true
}

// Kinds lists every store kind, in the order pages and tables show them.
func Kinds() []string {
	names := make([]string, len(registry))
	for i, k := range registry {
		names[i] = k.Name
	}
	return names
}

// CheckKind returns an error naming the allowed kinds when kind is none.
func CheckKind(kind string) error {
	kinds := Kinds()
	if slices.Contains(kinds, kind) {
		return nil
	}
	return fmt.Errorf("allowed values are %s and %s", strings.Join(kinds[:len(kinds)-1], ", "), kinds[len(kinds)-1])
}

// TraitsOf is what st's kind declares; the zero Traits for a store of no
// registered kind.
func TraitsOf(st Store) Traits {
	k, _ := Lookup(st.Kind())
	return k.Traits
}

// NewSCSStore is a Store whose sessions scs manages over store: what a new
// server-side store needs beyond its scs.Store and its Kind. Its writes do
// not lock (a store that can lock, as memory and redis do, keeps its own
// type); kind is the name it registers. A store that has a Ping(ctx)
// error method is asked by /readyz, and one that is an io.Closer is closed.
func NewSCSStore(kind string, store scs.Store, o Options) Store {
	return &scsStore{kind: kind, store: store, scs: newSCS(store, o.observer())}
}

type scsStore struct {
	kind  string
	store scs.Store
	scs   *scsSessions
}

func (x *scsStore) Kind() string { return x.kind }

func (x *scsStore) Load(ctx context.Context, cookie string, _ bool) (*Session, error) {
	return x.scs.load(ctx, validToken(cookie))
}

func (x *scsStore) Save(ctx context.Context, s *Session) (string, time.Time, error) {
	return x.scs.commit(ctx, s)
}

func (x *scsStore) Ping(ctx context.Context) error {
	if p, ok := x.store.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return nil
}

func (x *scsStore) Describe(_ context.Context, s *Session, replica string) Description {
	t := TraitsOf(x)
	d := Description{
		TTL:         time.Until(s.Deadline()),
		Lock:        "none: this store does not lock writes, so concurrent writes to one cart may overwrite each other",
		RedisOutage: t.RedisOutage,
		KeyChange:   t.KeyChange,
		Logout:      logoutDeletesText,
	}
	if t.ReplicaDeath != nil {
		d.ReplicaDeath = t.ReplicaDeath(replica)
	}
	if b, err := s.encode(); err == nil {
		d.SizeBytes = len(b)
		d.Size = fmt.Sprintf("%d bytes of JSON in %s; the cookie holds only a %d-character token", len(b), orElse(t.Where, x.kind), tokenLen)
	}
	return d
}

func (x *scsStore) Close() error {
	if c, ok := x.store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// orElse is a unless it is empty, else b.
func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
