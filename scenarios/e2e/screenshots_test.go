package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
)

// TestScreenshots writes the README's images when SHOP_SCREENSHOTS names a
// directory (relative to the module root): `make screenshots`. It also
// writes the catalog at phone and projector widths, to look at.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("SHOP_SCREENSHOTS")
	if dir == "" {
		t.Skip("set SHOP_SCREENSHOTS=docs/img to write the README's screenshots (make screenshots)")
	}
	if !filepath.IsAbs(dir) {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(t *testing.T, ctx context.Context, name string) {
		t.Helper()
		// Let the fonts and images settle: the page has no script to wait on.
		do(t, ctx, "settle", chromedp.WaitVisible(chromedp.CSS("footer")), chromedp.Sleep(150*time.Millisecond))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", filepath.Join(dir, name))
	}
	desktop := chromedp.EmulateViewport(1280, 800)

	t.Run("redis", func(t *testing.T) {
		cl := startCluster(t, cluster.Options{Store: "redis", LB: "roundrobin"})
		ctx := newTab(t, 2*time.Minute)
		// A few page views, so the trail shows round robin at work.
		do(t, ctx, "browse", desktop,
			chromedp.Navigate(cl.URL()+"/?category=coffee-tea"),
			chromedp.Navigate(cl.URL()+"/cart"),
			chromedp.Navigate(cl.URL()+"/"),
		)
		shot(t, ctx, "catalog.png")
		do(t, ctx, "phone", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile), chromedp.Reload())
		shot(t, ctx, "catalog-phone.png")
		do(t, ctx, "projector", chromedp.EmulateViewport(1920, 1080), chromedp.Reload())
		shot(t, ctx, "catalog-projector.png")
		do(t, ctx, "back to desktop", desktop)

		f := addThenKill(t, ctx, cl)
		t.Logf("redis: %s wrote, died; %s served", f.writer, f.servedBy)
		shot(t, ctx, "failover-redis.png")
		do(t, ctx, "session inspector", chromedp.Navigate(cl.URL()+"/session"))
		shot(t, ctx, "session.png")
		do(t, ctx, "cluster", chromedp.Navigate(cl.URL()+"/cluster"))
		shot(t, ctx, "cluster.png")
	})
	t.Run("memory", func(t *testing.T) {
		cl := startCluster(t, cluster.Options{Store: "memory", LB: "sticky"})
		ctx := newTab(t, 2*time.Minute)
		do(t, ctx, "desktop", desktop)
		f := addThenKill(t, ctx, cl)
		t.Logf("memory: %s wrote, died; %s served", f.writer, f.servedBy)
		shot(t, ctx, "failover-memory.png")
		do(t, ctx, "phone", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile), chromedp.Reload())
		shot(t, ctx, "failover-memory-phone.png")
	})
	t.Run("scenario-report", func(t *testing.T) {
		// A scenario report (go run ./scenarios run NAME -report FILE.html)
		// when one is named; the lab writes them, this only photographs one.
		report := os.Getenv("SHOP_SCENARIO_REPORT")
		if report == "" {
			t.Skip("set SHOP_SCENARIO_REPORT=FILE.html to photograph a scenario report")
		}
		abs, err := filepath.Abs(report)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatal(err)
		}
		ctx := newTab(t, time.Minute)
		do(t, ctx, "open the report", desktop, chromedp.Navigate("file://"+abs), chromedp.WaitReady(chromedp.CSS("body")), chromedp.Sleep(150*time.Millisecond))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scenario-report.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
