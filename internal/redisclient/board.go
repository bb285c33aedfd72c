package redisclient

// The live board behind /metrics/live: every replica publishes its request
// rates, and any replica reads them all. With Redis (Board) each rate is one
// field of one hash, so one HGETALL reads them all: the cost grows with the
// replicas, not with the sessions beside them in Redis (a SCAN for
// per-replica keys walks every key). Without it (LocalBoard) a replica sees
// only its own.

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

const (
	// liveHash holds one field per replica.
	liveHash = "live:replicas"
	// LiveTTL: a rate older than this is a replica that went quiet or away;
	// the page shows it as gone.
	LiveTTL = 5 * time.Second
	// LiveGone is how long a gone replica's field is kept, so a class sees
	// it vanish, before Rates drops it from the hash.
	LiveGone = 30 * time.Second
)

// Rate is what one replica reports to the live board.
type Rate struct {
	Replica       string  `json:"replica"`
	Store         string  `json:"store"`
	RequestsPerS  float64 `json:"rps"`
	ErrorsPerS    float64 `json:"eps"`
	Requests      int64   `json:"requests"`
	Errors        int64   `json:"errors"`
	UnixTimestamp int64   `json:"at"`
}

// Board keeps the replicas' rates in Redis.
type Board struct{ c *Client }

// NewBoard returns the live board on c.
func NewBoard(c *Client) *Board { return &Board{c: c} }

// Shared reports that every replica reads the same board.
func (b *Board) Shared() bool { return true }

// Publish writes r as its replica's field.
func (b *Board) Publish(ctx context.Context, r Rate) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		conn.Send("HSET", liveHash, r.Replica, v)
		// The hash outlives its last publisher by its gone rows, no longer.
		// Do returns the first error reply of the pipeline.
		_, err := redis.DoContext(conn, ctx, "PEXPIRE", liveHash, (LiveGone + LiveTTL).Milliseconds())
		return err
	})
}

// Rates reads every replica's published rate, in one HGETALL, and drops
// the fields of replicas gone for longer than LiveGone.
func (b *Board) Rates(ctx context.Context, now time.Time) ([]Rate, error) {
	var rates []Rate
	err := b.c.Do(ctx, func(ctx context.Context, conn redis.Conn) error {
		fields, err := redis.StringMap(redis.DoContext(conn, ctx, "HGETALL", liveHash))
		if err != nil {
			return err
		}
		var expired []string
		for name, v := range fields {
			var r Rate
			if json.Unmarshal([]byte(v), &r) != nil || now.Sub(time.Unix(r.UnixTimestamp, 0)) > LiveGone {
				expired = append(expired, name)
				continue
			}
			rates = append(rates, r)
		}
		if len(expired) > 0 {
			_, err = redis.DoContext(conn, ctx, "HDEL", redis.Args{liveHash}.AddFlat(expired)...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return rates, nil
}

// LocalBoard is the live board without a shared place: a replica sees only
// what it published itself.
type LocalBoard struct {
	mu    sync.Mutex
	rates map[string]Rate
}

// NewLocalBoard returns a board held in this replica alone.
func NewLocalBoard() *LocalBoard { return &LocalBoard{rates: make(map[string]Rate)} }

// Shared reports that no other replica reads this board.
func (b *LocalBoard) Shared() bool { return false }

// Publish keeps r.
func (b *LocalBoard) Publish(_ context.Context, r Rate) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rates[r.Replica] = r
	return nil
}

// Rates returns what was published here and is not gone for longer than
// LiveGone.
func (b *LocalBoard) Rates(_ context.Context, now time.Time) ([]Rate, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var rates []Rate
	for name, r := range b.rates {
		if now.Sub(time.Unix(r.UnixTimestamp, 0)) > LiveGone {
			delete(b.rates, name)
			continue
		}
		rates = append(rates, r)
	}
	return rates, nil
}
