package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/statelab/shop/scenarios/lab"
)

// reportLayoutScript lists what is wrong with a report's layout on the
// screen it is shown on: labels of the timeline and the latency chart that
// overlap or run past the drawing, a page wider than the screen, and the
// outcome (the lesson) below the first screen.
const reportLayoutScript = `(() => {
  const problems = [];
  for (const svg of document.querySelectorAll('svg')) {
    const w = svg.viewBox.baseVal.width;
    const boxes = [...svg.querySelectorAll('text')].map(t => ({t: t.textContent, b: t.getBBox()}));
    for (const x of boxes) {
      if (x.b.x < 0 || x.b.x + x.b.width > w + 1) problems.push('label cut at the edge: ' + x.t);
    }
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].b, b = boxes[j].b;
        if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height) {
          problems.push('labels overlap: "' + boxes[i].t + '" and "' + boxes[j].t + '"');
        }
      }
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    problems.push('page is ' + document.documentElement.scrollWidth + 'px wide in a ' + window.innerWidth + 'px screen');
  }
  const o = document.querySelector('[data-testid=outcome]');
  if (!o || o.getBoundingClientRect().bottom > window.innerHeight) problems.push('the outcome is not on the first screen');
  const pre = document.querySelector('[data-testid=script]');
  if (pre && pre.scrollWidth > pre.clientWidth + 1) problems.push('a script line runs past its box');
  return problems;
})()`

// TestReportOnAProjector opens a report of a run with many events, a
// partition, a drain and a delay at 1920 px (a projector) and at 1280 px:
// the lesson leads on the first screen, every label of the timeline and of
// the latency chart is whole and overlaps none, and long script lines wrap.
func TestReportOnAProjector(t *testing.T) {
	r := &lab.Result{
		Scenario: "redis-partition",
		Lesson:   "cut the replicas off from Redis: every request that needs the session answers 503 within the store timeout",
		Source: "lesson l\nrun with store=redis\nstart 3 replicas\ndelay redis 5ms\n" +
			"# " + strings.Repeat("a comment long enough to run far past the right edge of any screen ", 4) + "\n",
		Config:   lab.Config{Store: "redis", LB: "roundrobin", Lock: "on"},
		Duration: 8 * time.Second,
	}
	for i := range 800 {
		q := lab.Request{Shopper: fmt.Sprintf("shopper%02d", i%6), Action: "adds 1 of product 2", At: time.Duration(i) * 10 * time.Millisecond,
			Latency: 2 * time.Millisecond, Status: 303, Replica: fmt.Sprintf("shop%d", 1+i%3)}
		if i > 300 && i < 450 {
			q.Status, q.Replica, q.Latency = 503, "shop2", time.Second
		}
		r.Requests = append(r.Requests, q)
	}
	ev := func(ms int, text, span string, begins, ends bool) lab.Event {
		return lab.Event{At: time.Duration(ms) * time.Millisecond, Text: text, Span: span, Begins: begins, Ends: ends}
	}
	r.Events = []lab.Event{
		ev(0, "cluster serves", "", false, false),
		ev(0, "load: 6 shoppers for 7s", "", false, false),
		ev(10, "Redis is 5ms away (every exchange)", "delay", true, false),
		ev(2900, "the network to Redis is cut", "partition", true, false),
		ev(3000, "shop3 restarting (SIGTERM, with drain 2s, then start)", "restart shop3", true, false),
		ev(3100, "shop1 killed (kill -9)", "", false, false),
		ev(4400, "the network to Redis is back", "partition", false, true),
		ev(4500, "Sentinel promoted redis2 to primary (redis1 was killed)", "", false, false),
		ev(5200, "shop3 serves again", "restart shop3", false, true),
		ev(6000, "Redis is next door again (no delay)", "delay", false, true),
	}
	r.Looks = []lab.Look{
		{Steps: []string{"delay redis 5ms", "partition redis", "heal redis"}, Tally: lab.Tally{Intact: 6}, Carts: 6, Requests: 500, Failed: 149},
		{Steps: []string{"restart shop3"}, Tally: lab.Tally{Intact: 5, Lost: 1}, Carts: 6, Requests: 300},
	}
	r.Checks = []lab.Check{{Line: 4, Text: "expect p99 below 2s", Expected: "p99 below 2s", Applies: true, OK: true, Observed: "p99 1000.0ms"}}
	r.Pass = true
	file := filepath.Join(t.TempDir(), "report.html")
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.WriteReport(out, r); err != nil {
		t.Fatal(err)
	}
	out.Close()

	for _, size := range [][2]int64{{1920, 1080}, {1280, 800}} {
		t.Run(fmt.Sprintf("%dpx", size[0]), func(t *testing.T) {
			ctx := newTab(t, time.Minute)
			do(t, ctx, "open the report", chromedp.EmulateViewport(size[0], size[1]), chromedp.Navigate("file://"+file), chromedp.WaitReady(chromedp.CSS("body")))
			problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](reportLayoutScript))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Error(p)
			}
			if got := testid(t, ctx, "outcome"); !strings.Contains(got, "149 failed requests of 500") || !strings.Contains(got, "1 of 6 carts lost") {
				t.Errorf("outcome = %q", got)
			}
		})
	}
}
