// Package e2e drives Debian's Chromium through a real cluster (nginx, three
// replicas, Redis) started by scenarios/cluster: the failover story and the
// cross-site refusal as a person sees them in a browser, and the README's
// screenshots. It has test files only.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/scenarios/cluster"
)

// browser is the one Chromium of this test binary: starting it costs about a
// second, a new isolated tab on it almost nothing.
var browser struct {
	once    sync.Once
	ctx     context.Context // the browser's first context: cancelling it closes Chromium
	cancel  context.CancelFunc
	dataDir string
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dataDir != "" {
		os.RemoveAll(browser.dataDir)
	}
	os.Exit(code)
}

// findChromium returns Chromium's path. It skips the test with the install
// command when Chromium is missing, or fails it under SHOP_TEST_REQUIRE=all.
// SHOP_CHROMIUM names another binary (google-chrome, a downloaded build).
func findChromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SHOP_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Require(tb, "chromium") // skips or fails, naming apt-get install -y chromium
	return ""
}

// newTab opens a tab in a fresh browser context (its own cookies, like a
// private window) and closes it when the test ends. The returned context
// also ends after timeout, so a stuck page cannot hang the test.
func newTab(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	path := findChromium(t)
	browser.once.Do(func() {
		browser.dataDir, browser.err = os.MkdirTemp("", "statelab-chromium-*")
		if browser.err != nil {
			return
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(path),
			chromedp.UserDataDir(browser.dataDir),
			chromedp.Headless,
			chromedp.NoSandbox, // tests run as root in CI containers
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("hide-scrollbars", true),
			chromedp.Flag("mute-audio", true),
			chromedp.Flag("force-color-profile", "srgb"),
			chromedp.Flag("password-store", "basic"),
		)
		ctx, cancelBrowser := chromedp.NewContext(alloc)
		browser.ctx = ctx
		browser.cancel = func() { cancelBrowser(); cancelAlloc() }
		// The first Do starts Chromium, bound to the context it is given: so
		// the browser's own context, never one with a timeout.
		if err := chromedp.Do(ctx); err != nil {
			browser.err = fmt.Errorf("start %s: %w", path, err)
		}
	})
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	tab, cancelTab := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	ctx, cancel := context.WithTimeout(tab, timeout)
	t.Cleanup(func() { cancel(); cancelTab() })
	return ctx
}

// text is the trimmed, space-collapsed text of the first element matching
// the CSS selector css.
func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css), chromedp.NodeReady))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return strings.Join(strings.Fields(s), " ")
}

// testid is text of [data-testid=id].
func testid(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return text(t, ctx, `[data-testid="`+id+`"]`)
}

// do runs steps and fails the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// startCluster starts a cluster for a browser test; nginx, redis-server and
// Chromium must be there (or the test skips, as cluster.StartT does).
func startCluster(t *testing.T, o cluster.Options) *cluster.Cluster {
	t.Helper()
	findChromium(t)
	return cluster.StartT(t, o)
}
