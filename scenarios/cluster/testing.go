package cluster

// Helpers for tests: they skip when a binary is missing, fail with
// t.Fatal, and clean up with t.Cleanup.

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// startTimeout bounds StartT, a first build of the shop binary included.
const startTimeout = 5 * time.Minute

// Require is testenv.Require: it skips the test when one of the named
// binaries is missing, or fails it when SHOP_TEST_REQUIRE=all.
func Require(tb testing.TB, names ...string) {
	tb.Helper()
	testenv.Require(tb, names...)
}

// StartRedisT starts the cluster's Redis in a test temp dir and stops it
// when the test ends; it skips (or fails) like Require when redis-server is
// missing. Tests outside the cluster want testenv.StartRedis.
func StartRedisT(tb testing.TB) *Redis {
	tb.Helper()
	Require(tb, "redis-server")
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	r, err := StartRedis(ctx, dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			logTails(tb, dir)
		}
		if err := r.Close(); err != nil {
			tb.Errorf("close redis: %v", err)
		}
	})
	return r
}

// StartRedisHAT starts a Redis primary, a replica and three sentinels in a
// test temp dir (StartRedisHA) and stops them when the test ends; it skips
// (or fails) like Require when redis-server is missing.
func StartRedisHAT(tb testing.TB) *RedisHA {
	tb.Helper()
	testenv.Require(tb, "redis-server")
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	ha, err := StartRedisHA(ctx, dir)
	if err != nil {
		logTails(tb, dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			logTails(tb, dir)
		}
		if err := ha.Close(); err != nil {
			tb.Errorf("close redis tier: %v", err)
		}
	})
	return ha
}

// StartT starts a cluster for a test and closes it when the test ends. It
// skips (or fails) like Require when nginx or redis-server is missing, keeps
// the working directory in a test temp dir and, when the start or the test
// fails, logs the tail of every process's log. With no Options.Binary it
// builds cmd/shop once per test binary. With no Options.Database it takes
// SHOP_TEST_DATABASE (sqlite or postgres), so that the whole suite can run
// on PostgreSQL.
func StartT(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if d, err := o.withDefaults(); err == nil {
		// What the cluster will run: a profile picks the store and the
		// uploads when they are left unsaid.
		o.Store, o.Uploads = d.Store, d.Uploads
	}
	if o.Store == "memory" {
		Require(tb, "nginx")
	} else {
		Require(tb, "nginx", "redis-server")
	}
	if o.Database == "" {
		// SHOP_TEST_DATABASE=postgres runs every cluster test whose
		// database is left unsaid on one PostgreSQL.
		o.Database = os.Getenv("SHOP_TEST_DATABASE")
	}
	if o.Database == DatabasePostgres {
		testenv.RequirePostgres(tb)
	}
	if o.Uploads == UploadsS3 {
		if _, err := testenv.LookVersitygw(); err != nil {
			testenv.Missing(tb, err.Error())
		}
	}
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(tb.Context(), startTimeout)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		logTails(tb, o.Dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			logTails(tb, c.Dir())
		}
		if err := c.Close(); err != nil {
			tb.Errorf("close cluster: %v", err)
		}
	})
	return c
}

// logTails logs the end of every process log under dir: the replicas'
// NAME.log, redis.log and nginx's error.log.
func logTails(tb testing.TB, dir string) {
	tb.Helper()
	var logs []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".log") && filepath.Base(path) != "access.log" {
			logs = append(logs, path)
		}
		return nil
	})
	for _, path := range logs {
		if t := proc.FormatTail(path); t != "" {
			tb.Log(t)
		}
	}
}
