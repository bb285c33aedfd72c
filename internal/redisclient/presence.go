package redisclient

// Presence: which replicas are up, for /cluster. Replicas know nothing of
// each other by design; with a shared Redis they have a place to meet, so
// each one announces itself there with a short TTL and every replica can
// list who is alive. Without one (LocalPresence) a replica knows only
// itself.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

const (
	// announcePrefix + replica name is a replica's announcement key.
	announcePrefix = "replicas:"
	// announceIndex is a sorted set of announced names scored by when their
	// announcement expires (Unix ms), so Members finds them without a SCAN
	// over every session in Redis. The keys themselves stay the truth: a name
	// whose key expired is skipped, so clock skew between hosts is harmless.
	announceIndex = "replicas"
	// AnnounceTTL: an announcement not refreshed for this long vanishes, so
	// a replica killed with -9 leaves the list within seconds.
	AnnounceTTL = 5 * time.Second
	// maxAnnounced bounds how many announcements Members reads.
	maxAnnounced = 100
	// GoneFor is how long Members keeps a row for a replica whose
	// announcement expired or was withdrawn, so a class sees it go.
	GoneFor = 30 * time.Second
)

// Announcement is what a replica says of itself, the JSON under
// replicas:<name>.
type Announcement struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	Store     string    `json:"store"`
	StartedAt time.Time `json:"started_at"`
	Ready     bool      `json:"ready"`
}

// Member is one replica as Members finds it: alive with its announcement
// and how long that has left, or gone (only Name set) and since when.
type Member struct {
	Announcement
	ExpiresIn time.Duration
	Gone      bool
	GoneFor   time.Duration
}

// Presence keeps the replicas' announcements in Redis.
type Presence struct{ c *Client }

// NewPresence returns the presence service on c.
func NewPresence(c *Client) *Presence { return &Presence{c: c} }

// Shared reports that every replica reads the same announcements.
func (p *Presence) Shared() bool { return true }

// Announce writes a's announcement with a TTL of AnnounceTTL; the caller
// repeats it well inside that.
func (p *Presence) Announce(ctx context.Context, a Announcement) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return p.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		expires := time.Now().Add(AnnounceTTL).UnixMilli()
		conn.Send("SET", announcePrefix+a.Name, b, "PX", AnnounceTTL.Milliseconds())
		conn.Send("ZADD", announceIndex, expires, a.Name)
		// The index outlives its members by their gone rows, and no longer:
		// when every replica is gone, so is the index.
		// Do returns the first error reply of the pipeline.
		_, err := redis.DoContext(conn, ctx, "PEXPIRE", announceIndex, (AnnounceTTL + GoneFor).Milliseconds())
		return err
	})
}

// Withdraw deletes name's announcement as the replica stops, so the others
// see it leave at once instead of after the TTL: its index entry expires
// now, which makes it a gone row.
func (p *Presence) Withdraw(ctx context.Context, name string) error {
	return p.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		conn.Send("DEL", announcePrefix+name)
		_, err := redis.DoContext(conn, ctx, "ZADD", announceIndex, "XX", time.Now().UnixMilli(), name)
		return err
	})
}

// Members reads the index (names scored by when their announcement
// expires) and each live announcement; a name whose announcement expired
// less than GoneFor ago is a gone row. Its cost grows with the replicas,
// not with the keys beside them.
func (p *Presence) Members(ctx context.Context) (members []Member, err error) {
	err = p.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		members, err = readAnnouncements(ctx, conn)
		return err
	})
	return members, err
}

func readAnnouncements(ctx context.Context, conn redis.Conn) ([]Member, error) {
	now := time.Now()
	conn.Send("ZREMRANGEBYSCORE", announceIndex, "-inf", now.Add(-GoneFor).UnixMilli())
	scored, err := redis.Int64Map(redis.DoContext(conn, ctx, "ZRANGE", announceIndex, 0, maxAnnounced-1, "WITHSCORES"))
	if err != nil {
		return nil, err
	}
	var members []Member
	var keys []string
	for name, expires := range scored {
		if gone := now.Sub(time.UnixMilli(expires)); gone > 0 {
			members = append(members, Member{Announcement: Announcement{Name: name}, Gone: true, GoneFor: gone})
			continue
		}
		keys = append(keys, announcePrefix+name)
	}
	for _, key := range keys {
		conn.Send("GET", key)
		conn.Send("PTTL", key)
	}
	if err := conn.Flush(); err != nil {
		return nil, err
	}
	for _, key := range keys {
		b, errGet := redis.Bytes(redis.ReceiveContext(conn, ctx))
		ms, errTTL := redis.Int64(redis.ReceiveContext(conn, ctx))
		if err := connectionError(errGet, errTTL); err != nil {
			return nil, err
		}
		var a Announcement
		if errGet != nil || errTTL != nil || json.Unmarshal(b, &a) != nil {
			continue // expired since it was indexed, or not ours
		}
		if a.Name == "" {
			a.Name = strings.TrimPrefix(key, announcePrefix)
		}
		members = append(members, Member{Announcement: a, ExpiresIn: time.Duration(ms) * time.Millisecond})
	}
	return members, nil
}

// connectionError returns the first of errs that is not a reply from Redis
// (an error reply or a missing key): a broken exchange, which leaves the
// remaining replies unread.
func connectionError(errs ...error) error {
	for _, err := range errs {
		var reply redis.Error
		if err != nil && !errors.Is(err, redis.ErrNil) && !errors.As(err, &reply) {
			return err
		}
	}
	return nil
}

// LocalPresence is presence without a shared place: a replica knows only
// its own announcement.
type LocalPresence struct {
	mu   sync.Mutex
	self map[string]Announcement
	at   map[string]time.Time
}

// NewLocalPresence returns presence held in this replica alone.
func NewLocalPresence() *LocalPresence {
	return &LocalPresence{self: make(map[string]Announcement), at: make(map[string]time.Time)}
}

// Shared reports that no other replica reads these announcements.
func (p *LocalPresence) Shared() bool { return false }

// Announce keeps a.
func (p *LocalPresence) Announce(_ context.Context, a Announcement) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.self[a.Name] = a
	p.at[a.Name] = time.Now()
	return nil
}

// Withdraw forgets name.
func (p *LocalPresence) Withdraw(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.self, name)
	delete(p.at, name)
	return nil
}

// Members lists what this replica announced, expiring like Redis would.
func (p *LocalPresence) Members(context.Context) ([]Member, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var members []Member
	for name, a := range p.self {
		if left := AnnounceTTL - time.Since(p.at[name]); left > 0 {
			members = append(members, Member{Announcement: a, ExpiresIn: left})
		}
	}
	return members, nil
}
