package web_test

// /metrics/live and /cluster read presence from structures that grow with
// the replicas, never by walking the keyspace, and keep a "gone" row for a
// replica that vanished.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/session"
)

// commandCalls reads INFO commandstats: calls per command, lower case.
func commandCalls(t *testing.T, addr string) map[string]int {
	t.Helper()
	info, err := redis.String(redisDo(t, addr, "", "INFO", "commandstats"), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if n, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(n)
			}
		}
	}
	return calls
}

// TestPresenceCostsReplicasNotKeys: with 20000 sessions in Redis, loading
// /metrics/live and /cluster never SCANs (or KEYS) and sends a handful of
// commands per load, however many keys there are.
func TestPresenceCostsReplicasNotKeys(t *testing.T) {
	shop := newShop(t, session.Redis)
	addr := shop.redis.Addr()
	conn, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		conn.Send("SET", fmt.Sprintf("%s%043d", session.KeyPrefix, i), `{"v":1}`)
	}
	if _, err := conn.Do(""); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	c := shop.client()
	c.get("/metrics/live") // publishes this replica once
	redisDo(t, addr, "", "CONFIG", "RESETSTAT")
	const loads = 3
	for range loads {
		if r := c.get("/metrics/live"); r.status != 200 || r.count("live-row") == 0 {
			t.Fatalf("/metrics/live: %d, %d rows", r.status, r.count("live-row"))
		}
		if r := c.get("/cluster"); r.status != 200 {
			t.Fatalf("/cluster: %d", r.status)
		}
	}
	calls := commandCalls(t, addr)
	total := 0
	for name, n := range calls {
		if name != "info" && name != "config|resetstat" {
			total += n
		}
	}
	if calls["scan"] != 0 || calls["keys"] != 0 {
		t.Errorf("presence walked the keyspace: %d SCAN, %d KEYS over %d loads", calls["scan"], calls["keys"], loads)
	}
	if total > loads*2*8 {
		t.Errorf("%d Redis commands for %d loads of /metrics/live and /cluster with 20000 keys (%v); want a few per load", total, loads, calls)
	}
}

// TestGoneRows: a replica that stopped publishing stays on /metrics/live
// and /cluster as "gone" for 30 s, counted nowhere, and is dropped after.
func TestGoneRows(t *testing.T) {
	shop := newShop(t, session.Redis)
	addr := shop.redis.Addr()
	now := time.Now()
	for name, age := range map[string]time.Duration{"shop8": 10 * time.Second, "shop9": time.Minute} {
		b, _ := json.Marshal(map[string]any{"replica": name, "store": "redis", "rps": 7.0, "requests": 70, "at": now.Add(-age).Unix()})
		redisDo(t, addr, "", "HSET", "live:replicas", name, b)
		redisDo(t, addr, "", "ZADD", "replicas", now.Add(-age).UnixMilli(), name)
	}

	c := shop.client()
	r := c.get("/metrics/live")
	gone := r.doc.Find(`[data-testid="live-row"][data-replica="shop8"]`)
	if gone.Length() != 1 || gone.AttrOr("data-gone", "") != "true" || !strings.Contains(gone.Text(), "gone") {
		t.Errorf("/metrics/live: shop8, silent for 10 s, is not a gone row: %q", gone.Text())
	}
	if r.doc.Find(`[data-replica="shop9"]`).Length() != 0 {
		t.Error("/metrics/live: shop9, silent for a minute, still shows")
	}
	if got := r.testid("live-total-rps"); got != "0.0" {
		t.Errorf("total %s req/s: a gone replica's numbers are counted", got)
	}
	if n, _ := redis.Int(redisDo(t, addr, "", "HEXISTS", "live:replicas", "shop9"), nil); n != 0 {
		t.Error("shop9's live field was not dropped from Redis")
	}

	r = c.get("/cluster")
	member := r.doc.Find(`[data-testid="member"][data-replica="shop8"]`)
	if member.Length() != 1 || member.AttrOr("data-gone", "") != "true" || !strings.Contains(member.Text(), "gone") {
		t.Errorf("/cluster: shop8, expired 10 s ago, is not a gone row: %q", member.Text())
	}
	if r.doc.Find(`[data-testid="member"][data-replica="shop9"]`).Length() != 0 {
		t.Error("/cluster: shop9, expired a minute ago, still shows")
	}
}
