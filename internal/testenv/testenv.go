// Package testenv starts the real parts that tests need (redis-server,
// PostgreSQL) on free loopback ports and decides what a test does when a
// binary is missing: it skips with the install command when run by hand,
// and fails when SHOP_TEST_REQUIRE=all (as `make test` and CI set it), so
// that CI cannot skip silently. The processes themselves are supervised by
// internal/proc; testenv only ties them to a test's life (t.TempDir,
// t.Cleanup, the log's end on failure).
package testenv

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/statelab/shop/internal/proc"
)

// aptPackages maps a binary to the Debian package that installs it; a binary
// not listed is installed by a package of its own name.
var aptPackages = map[string]string{
	"redis-server": "redis-server",
	"redis-cli":    "redis-tools",
	"nginx":        "nginx",
	"go":           "golang-go",
	"chromium":     "chromium",
}

// Require skips the test when one of the named binaries is not installed,
// naming the apt-get command that installs it, or fails the test when
// SHOP_TEST_REQUIRE=all. Binaries are looked up as LookBinary does.
func Require(tb testing.TB, names ...string) {
	tb.Helper()
	var missing, pkgs []string
	for _, name := range names {
		if _, err := LookBinary(name); err == nil {
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
	Missing(tb, fmt.Sprintf("%s not found on PATH; install with: sudo apt-get install -y %s",
		strings.Join(missing, ", "), strings.Join(pkgs, " ")))
}

// Missing skips the test with msg, or fails it when SHOP_TEST_REQUIRE=all:
// for a part that is missing in a way Require cannot look up (a binary
// outside PATH, a browser under one of several names).
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s (required: SHOP_TEST_REQUIRE=all)", msg)
		return
	}
	tb.Skip(msg)
}

// Required reports whether SHOP_TEST_REQUIRE=all asks every test to run.
func Required() bool { return os.Getenv("SHOP_TEST_REQUIRE") == "all" }

// LookBinary finds name on PATH, then in the sbin directories that a
// non-root PATH often lacks (proc.LookBinary).
func LookBinary(name string) (string, error) { return proc.LookBinary(name) }
