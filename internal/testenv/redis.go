package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/statelab/shop/internal/proc"
)

// redisStartTimeout bounds StartRedis, a retry on a taken port included.
const redisStartTimeout = time.Minute

// Redis is a redis-server that a test started on a free loopback port, with
// its own data directory and append-only persistence: Stop and Start keep
// the data, Kill may lose the last second of writes, Pause stalls it.
type Redis = proc.Redis

// StartRedis starts a redis-server for the test and stops it when the test
// ends. It skips (or fails) like Require when redis-server is missing; on a
// failed test it logs the end of Redis's log.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	Require(tb, "redis-server")
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(tb.Context(), redisStartTimeout)
	defer cancel()
	r, err := proc.StartRedis(ctx, dir, proc.RedisOptions{})
	if err != nil {
		tb.Fatalf("start redis: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(proc.FormatTail(r.LogPath()))
		}
		if err := r.Close(); err != nil {
			tb.Errorf("stop redis: %v", err)
		}
	})
	return r
}
