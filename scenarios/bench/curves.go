package bench

// The scaling curves: how cost grows with replicas, concurrent shoppers
// and sessions stored.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/scenarios/cluster"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// concurrencyCurve loads the catalog with 10, 100 and 1000 concurrent
// clients (closed model), watching allocations per request.
func concurrencyCurve(ctx context.Context, c *cluster.Cluster, o Options, ts []vegeta.Target, logf func(string, ...any)) []Measurement {
	var out []Measurement
	for _, n := range []int{10, 100, 1000} {
		oo := o
		oo.Workers = n
		m := measure(ctx, c, oo, ts, false)
		m.Page, m.Store = PageCatalog, "redis"
		out = append(out, m)
		logf("bench: catalog with %4d concurrent shoppers: %6.0f req/s p50 %v p99 %v allocs/req %.0f success %.1f%%",
			n, m.Throughput, m.ClosedP50, m.ClosedP99, m.AllocsPerRequest, m.Success*100)
	}
	return out
}

// replicaCurve measures the catalog at 3, 4, 2 and 1 replicas, scaling the
// redis cluster out and in; all four under the same conditions (unlike the
// main table's, which takes turns with /healthz).
func replicaCurve(ctx context.Context, c *cluster.Cluster, o Options, shoppers []shopper, slug string, logf func(string, ...any)) []Measurement {
	var out []Measurement
	run := func() {
		m := measure(ctx, c, o, targets(c.URL(), PageCatalog, shoppers, slug), true)
		m.Page, m.Store, m.Workers = PageCatalog, "redis", len(c.Replicas())
		out = append(out, m)
		logf("bench: catalog at %d replicas: %6.0f req/s p50 %v at %d req/s", len(c.Replicas()), m.Throughput, m.OpenP50, o.Rate)
	}
	run()
	if _, err := c.AddReplica(ctx, "SHOP_LOG_LEVEL=warn"); err != nil {
		logf("bench: add replica: %v", err)
		return out
	}
	run()
	for len(c.Replicas()) > 1 {
		rs := c.Replicas()
		if err := c.RemoveReplica(ctx, rs[len(rs)-1].Name()); err != nil {
			logf("bench: remove replica: %v", err)
			return out
		}
		if n := len(c.Replicas()); n == 2 || n == 1 {
			run()
		}
	}
	return out
}

// SessionPoint is Redis holding Sessions sessions.
type SessionPoint struct {
	Sessions       int
	UsedMemory     uint64  // Redis used_memory
	BytesPerSesion float64 // growth of used_memory per session added
	P50, P99       time.Duration
	FillTook       time.Duration
}

// sessionCurve fills Redis with sessions in the shop's own format, copies
// of a real one, and measures the cart page (one session read) at each
// level. Persistence is switched off for the fill: the append-only file's
// rewrite would otherwise measure the disk.
func sessionCurve(ctx context.Context, c *cluster.Cluster, o Options, shoppers []shopper, logf func(string, ...any)) []SessionPoint {
	rd := c.Redis()
	conn, err := redis.DialContext(ctx, "tcp", rd.Addr())
	if err != nil {
		logf("bench: sessions: %v", err)
		return nil
	}
	defer conn.Close()
	// A typical session: one cart line, as a shopper has after a first add
	// (the bench's own shoppers have filled theirs by now).
	fresh, err := warmShoppers(ctx, c.URL(), 1)
	if err != nil {
		logf("bench: sessions: %v", err)
		return nil
	}
	sample, err := redis.Bytes(conn.Do("GET", "scs:session:"+fresh[0].token))
	if err != nil {
		logf("bench: sessions: read a real session: %v", err)
		return nil
	}
	conn.Do("CONFIG", "SET", "appendonly", "no")
	ts := targets(c.URL(), PageCart, shoppers, "")
	base := usedMemory(conn)
	have := 0
	prefix := randomPrefix()
	var out []SessionPoint
	for _, n := range o.SessionCounts {
		start := time.Now()
		if err := fill(conn, prefix, sample, have, n); err != nil {
			logf("bench: sessions: fill to %d: %v", n, err)
			break
		}
		took := time.Since(start)
		have = n
		used := usedMemory(conn)
		m := attack(ctx, ts, o.Rate, 0, o.Duration, nil)
		p := SessionPoint{Sessions: n, UsedMemory: used, BytesPerSesion: float64(used-base) / float64(n),
			P50: m.Latencies.P50, P99: m.Latencies.P99, FillTook: took}
		out = append(out, p)
		logf("bench: %8d sessions: redis %s (%.0f B/session, filled in %v); cart p50 %v p99 %v", n, mib(used), p.BytesPerSesion, took.Round(time.Millisecond), p.P50, p.P99)
		if took > time.Minute {
			break // bounded in time: a slower machine stops here
		}
	}
	// Give the memory back before the rest of the run.
	conn.Do("EVAL", `for _, k in ipairs(redis.call("KEYS", ARGV[1])) do redis.call("UNLINK", k) end return 0`, 0, "scs:session:"+prefix+"*")
	conn.Do("CONFIG", "SET", "appendonly", "yes")
	return out
}

// fill adds sessions from..to-1, pipelined in batches.
func fill(conn redis.Conn, prefix string, sample []byte, from, to int) error {
	const batch = 1000
	expiry := time.Now().Add(24 * time.Hour).UnixMilli()
	for i := from; i < to; i += batch {
		n := min(batch, to-i)
		for j := range n {
			// 43 characters of base64url, like an scs token.
			token := prefix + fmt.Sprintf("%021d", i+j)
			if err := conn.Send("SET", "scs:session:"+token, sample, "PXAT", expiry); err != nil {
				return err
			}
		}
		if err := conn.Flush(); err != nil {
			return err
		}
		for range n {
			if _, err := conn.Receive(); err != nil {
				return err
			}
		}
	}
	return nil
}

func randomPrefix() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:22]
}

func usedMemory(conn redis.Conn) uint64 {
	s, err := redis.String(conn.Do("INFO", "memory"))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(parseInfo(s)["used_memory"], 10, 64)
	return v
}

// redisInfo runs INFO section on a fresh connection.
func redisInfo(ctx context.Context, addr, section string) (map[string]string, error) {
	conn, err := redis.DialContext(ctx, "tcp", addr, redis.DialReadTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	s, err := redis.String(conn.Do("INFO", section))
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}
