package e2e

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/static"
)

// a11yScript lists what a basic accessibility check finds wrong with the
// page: form fields without a label, headings out of order, content wider
// than the screen.
const a11yScript = `(() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const labelled = (el.id && document.querySelector('label[for="' + el.id + '"]')) ||
      el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!labelled) problems.push('unlabelled field ' + (el.name || el.outerHTML.slice(0, 60)));
  }
  const hs = [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => +h.tagName[1]);
  if (hs.filter(l => l === 1).length !== 1) problems.push('want exactly one h1, have ' + hs.filter(l => l === 1).length);
  if (hs.length && hs[0] !== 1) problems.push('first heading is h' + hs[0]);
  for (let i = 1; i < hs.length; i++) {
    if (hs[i] > hs[i - 1] + 1) problems.push('heading h' + hs[i - 1] + ' followed by h' + hs[i]);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    problems.push('page is ' + document.documentElement.scrollWidth + 'px wide in a ' + window.innerWidth + 'px screen');
  }
  for (const b of document.querySelectorAll('button, a')) {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('control without a name: ' + b.outerHTML.slice(0, 60));
  }
  return problems;
})()`

// TestAccessibility opens every page on a phone (375 px) and a projector
// (1920 px) and runs a basic check: labels, heading order, no sideways
// scrolling.
func TestAccessibility(t *testing.T) {
	cl := startCluster(t, cluster.Options{Store: "redis", Replicas: 1})
	ctx := newTab(t, 2*time.Minute)
	do(t, ctx, "put something in the cart",
		chromedp.Navigate(cl.URL()+"/"),
		chromedp.Click(chromedp.CSS(`[data-testid="add-form"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="cart-line"]`)),
	)
	pages := []string{"/", "/?category=outdoors", "/products/espresso-cup", "/cart", "/checkout", "/session", "/cluster", "/login", "/register", "/outbox", "/no-such-page"}
	for _, p := range pages {
		do(t, ctx, "open "+p, chromedp.Navigate(cl.URL()+p), chromedp.WaitVisible(chromedp.CSS("footer")))
		// Resizing relays the page out without a reload.
		for _, width := range []int64{375, 1920} {
			do(t, ctx, "viewport", chromedp.EmulateViewport(width, 900))
			problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](a11yScript))
			if err != nil {
				t.Fatalf("check %s: %v", p, err)
			}
			for _, pr := range problems {
				t.Errorf("%s at %d px: %s", p, width, pr)
			}
		}
	}
}

// TestReplicaColourContrast: white text on every replica colour of the
// stylesheet meets WCAG AA for normal text (4.5:1).
func TestReplicaColourContrast(t *testing.T) {
	css, err := static.FS.ReadFile("shop.css")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\.replica-(c\d+|none) \{ --ribbon: (#[0-9a-fA-F]{6}); \}`)
	found := re.FindAllStringSubmatch(string(css), -1)
	if len(found) < 13 {
		t.Fatalf("found %d replica colours in shop.css, want 13", len(found))
	}
	for _, m := range found {
		if r := contrast("#ffffff", m[2]); r < 4.5 {
			t.Errorf(".replica-%s %s: white text contrast %.2f:1, want at least 4.5:1", m[1], m[2], r)
		}
	}
	if strings.Contains(string(css), ".ribbon-label { opacity: 0.85") && !strings.Contains(string(css), ".ribbon .ribbon-label, .trail li + li::before { opacity: 1; }") {
		t.Error("ribbon labels are translucent: on the lighter replica colours that falls under 4.5:1")
	}
}

// contrast is the WCAG 2 contrast ratio of two #rrggbb colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (math.Max(la, lb) + 0.05) / (math.Min(la, lb) + 0.05)
}

func luminance(hex string) float64 {
	var c [3]float64
	for i := range c {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			panic(fmt.Sprintf("bad colour %q", hex))
		}
		s := float64(v) / 255
		if s <= 0.03928 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}
