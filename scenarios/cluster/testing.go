package cluster

// Helpers for tests: they skip when a binary is missing, fail with
// t.Fatal, and clean up with t.Cleanup.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds StartT, a first build of the shop binary included.
const startTimeout = 5 * time.Minute

// aptPackages maps a binary to the Debian/Ubuntu package that installs it.
var aptPackages = map[string]string{
	"redis-server": "redis-server",
	"redis-cli":    "redis-tools",
	"nginx":        "nginx",
	"go":           "golang-go",
}

// Require skips the test when one of the named binaries is not installed,
// naming the apt-get command that installs it, or fails the test when
// SHOP_TEST_REQUIRE=all (as `make test` sets it) so that CI cannot skip
// silently. nginx and redis-server are also found in /usr/sbin when PATH
// lacks it.
func Require(tb testing.TB, names ...string) {
	tb.Helper()
	var missing, pkgs []string
	for _, name := range names {
		if _, err := lookBinary(name); err == nil {
			continue
		}
		missing = append(missing, name)
		pkg := aptPackages[name]
		if pkg == "" {
			pkg = name
		}
		if !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s not found on PATH; install with: sudo apt-get install -y %s",
		strings.Join(missing, ", "), strings.Join(pkgs, " "))
	if os.Getenv("SHOP_TEST_REQUIRE") == "all" {
		tb.Fatalf("%s (required: SHOP_TEST_REQUIRE=all)", msg)
		return
	}
	tb.Skip(msg)
}

// StartRedisT starts a Redis in a test temp dir and stops it when the test
// ends; it skips (or fails) like Require when redis-server is missing.
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

// StartT starts a cluster for a test and closes it when the test ends. It
// skips (or fails) like Require when nginx or redis-server is missing, keeps
// the working directory in a test temp dir and, when the start or the test
// fails, logs the tail of every process's log. With no Options.Binary it
// builds cmd/shop once per test binary.
func StartT(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if o.Store == "memory" {
		Require(tb, "nginx")
	} else {
		Require(tb, "nginx", "redis-server")
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
		if t := formatTail(path); t != "" {
			tb.Log(t)
		}
	}
}
