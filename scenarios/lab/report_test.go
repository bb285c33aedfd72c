package lab

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/statelab/shop/static"
)

func render(t *testing.T, r *Result) *goquery.Document {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteReport(&buf, r); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	// Self-contained: nothing to fetch, no scripts.
	if m := regexp.MustCompile(`(?i)(src|href)=|<link|<script|url\(`).FindString(html); m != "" {
		t.Errorf("report refers to something outside itself: %q", m)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(html))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func countSel(t *testing.T, doc *goquery.Document, sel string, want int) {
	t.Helper()
	if n := doc.Find(sel).Length(); n != want {
		t.Errorf("%s: %d elements, want %d", sel, n, want)
	}
}

func shortResult() *Result {
	return &Result{
		Scenario: "failover",
		Lesson:   "kill -9 a replica",
		Source:   "lesson kill -9 a replica\nkill -9 replica of alice\n",
		Config:   Config{Store: "memory", LB: "sticky", Lock: "on"},
		Duration: 2 * time.Second,
		Requests: []Request{
			{Shopper: "alice", Action: "opens the catalog", At: 10 * time.Millisecond, Latency: time.Millisecond, Status: 200, Replica: "shop1"},
			{Shopper: "alice", Action: "adds 2 of product 1", At: 150 * time.Millisecond, Latency: time.Millisecond, Status: 303, Replica: "shop2"},
			{Shopper: "alice", Action: "adds 1 of product 2", At: 1200 * time.Millisecond, Latency: time.Millisecond, Status: 502},
		},
		Events: []Event{{At: 0, Text: "cluster serves"}, {At: time.Second, Text: "shop2 killed (kill -9)"}},
		Story: []Line{{At: 0, Text: "cluster serves"}, {At: 150 * time.Millisecond, Text: "alice adds 2 of product 1 → shop2"},
			{At: time.Second, Text: "shop2 killed (kill -9)"}},
		Carts:       []CartVerdict{{Shopper: "alice", Verdict: Lost, Why: "shop1 shows session unknown"}, {Shopper: "bob", Verdict: Intact}},
		Checks:      []Check{{Line: 12, Text: "expect carts intact", Expected: "carts intact", Applies: true, OK: false, Observed: "1 of 2 carts intact"}},
		Differences: []string{"scripts/failover.txt:12: expected carts intact, observed 1 of 2 carts intact"},
	}
}

// TestReportShortScenario: a few requests are listed one by one with the
// events between them, the story is the terminal's, and failed requests
// are marked.
func TestReportShortScenario(t *testing.T) {
	doc := render(t, shortResult())
	countSel(t, doc, "style", 1)
	countSel(t, doc, "svg[data-testid=timeline]", 0)
	countSel(t, doc, "[data-testid=sequence-request]", 3)
	countSel(t, doc, "[data-testid=sequence-event]", 2)
	countSel(t, doc, "tr.seq-failed", 1)
	countSel(t, doc, "[data-testid=carts] tbody tr", 2)
	if got := doc.Find("[data-testid=sequence-event]").Eq(1).Text(); !strings.Contains(got, "shop2 killed") {
		t.Errorf("second event row = %q", got)
	}
	if got := doc.Find("[data-testid=sequence-request]").Eq(2).Text(); !strings.Contains(got, "alice") || !strings.Contains(got, "no replica") || !strings.Contains(got, "502") {
		t.Errorf("the failed request's row = %q", got)
	}
	if got := doc.Find("[data-testid=story]").Text(); !strings.Contains(got, "alice adds 2 of product 1 → shop2") {
		t.Errorf("story = %q, want the terminal's lines", got)
	}
	if got := doc.Find("[data-testid=lost-carts]").Text(); got != "carts lost: 1, wrong: 0 of 2 at the end" {
		t.Errorf("lost carts = %q", got)
	}
	if got := doc.Find("[data-testid=verdict]").Text(); !strings.Contains(got, "expected carts intact, observed 1 of 2") {
		t.Errorf("verdict = %q", got)
	}
	if got := doc.Find("[data-testid=script]").Text(); !strings.Contains(got, "kill -9 replica of alice") {
		t.Errorf("the report does not carry the script: %q", got)
	}
	for _, label := range []string{"failed requests", "gave-up shoppers"} {
		if doc.Find("[data-testid=summary] th:contains('"+label+"')").Length() != 1 {
			t.Errorf("summary has no %q row", label)
		}
	}
}

// TestReportTimeline: a scenario under load gets the timeline, failures
// above the plot and events as lines.
func TestReportTimeline(t *testing.T) {
	r := shortResult()
	for i := range 200 {
		r.Requests = append(r.Requests, Request{Shopper: fmt.Sprintf("shopper%02d", i%6), At: time.Duration(i) * 10 * time.Millisecond,
			Latency: time.Millisecond, Status: 303, Replica: fmt.Sprintf("shop%d", 1+i%3)})
	}
	doc := render(t, r)
	countSel(t, doc, "svg[data-testid=timeline]", 1)
	countSel(t, doc, "[data-testid=sequence]", 0)
	countSel(t, doc, "[data-testid=event]", 2)
	countSel(t, doc, "[data-testid=failure]", 1)
}

// TestReportColoursAreTheRibbons: a replica has the ribbon's colour in
// every report, whichever replicas answered, and none is the failure red.
func TestReportColoursAreTheRibbons(t *testing.T) {
	a := replicaColors([]Request{{Replica: "shop1"}, {Replica: "shop2"}, {Replica: "shop3"}})
	b := replicaColors([]Request{{Replica: "shop3"}, {Replica: "shop2"}})
	for _, name := range []string{"shop2", "shop3"} {
		_, ribbon := static.ReplicaColor(name)
		if a[name] != b[name] || a[name] != ribbon {
			t.Errorf("%s: %s in one report, %s in another, %s on the ribbon", name, a[name], b[name], ribbon)
		}
	}
	for name, c := range a {
		if c == failureColor {
			t.Errorf("%s has the failure colour", name)
		}
	}
	doc := render(t, shortResult())
	_, shop2 := static.ReplicaColor("shop2")
	style, _ := doc.Find("[data-testid=sequence-request] .chip:contains('shop2')").Attr("style")
	if !strings.Contains(style, shop2) {
		t.Errorf("shop2's chip style %q, want the ribbon's %s", style, shop2)
	}
}

// TestReportLeadsWithTheLesson: before any row, the report says per phase
// what happened by kind, in words, red where something was lost, stale or
// failed, and names each phase by its steps: key-rotation's lost carts
// belong to the wrong key, not to the rotation before it.
func TestReportLeadsWithTheLesson(t *testing.T) {
	r := shortResult()
	r.Peeks = 4
	r.Looks = []Look{
		{Line: 12, Steps: []string{"start 3 replicas", "as alice add 2 of product 1", "rekey shop1 with new,old"}, Tally: Tally{Intact: 2}, Carts: 2, Requests: 10},
		{Line: 20, Steps: []string{"rekey shop2 with wrong"}, Tally: Tally{Intact: 1, Lost: 1}, Carts: 2, Requests: 4, Failed: 1, Peeks: 4, Stale: 3},
	}
	r.Checks = []Check{
		{Line: 12, Expected: "carts intact", Applies: true, OK: true},
		{Line: 20, Expected: "lost carts", Applies: true, OK: true},
		{Line: 21, Expected: "carts intact", Applies: true, OK: false},
	}
	doc := render(t, r)
	rows := doc.Find("[data-testid=outcome-row]")
	if rows.Length() != 2 {
		t.Fatalf("%d outcome rows, want one per phase", rows.Length())
	}
	first, second := rows.Eq(0).Text(), rows.Eq(1).Text()
	for _, want := range []string{"phase 1: rekey shop1 with new,old:", "0 of 2 carts lost", "0 carts with lost updates", "0 failed requests of 10", "as the script expects"} {
		if !strings.Contains(first, want) {
			t.Errorf("first phase %q lacks %q", first, want)
		}
	}
	for _, want := range []string{"phase 2: rekey shop2 with wrong", "1 of 2 carts lost", "3 stale reads in 4 reads by another device", "1 failed request of 4", "not what the script expects"} {
		if !strings.Contains(second, want) {
			t.Errorf("second phase %q lacks %q", second, want)
		}
	}
	if bad := rows.Eq(1).Find(".bad").Length(); bad != 3 {
		t.Errorf("second phase marks %d kinds red, want 3 (lost, stale, failed)", bad)
	}
	if rows.Eq(0).Find(".bad").Length() != 0 {
		t.Error("the first phase marks something red")
	}
	// The lead comes before any table.
	html, _ := doc.Html()
	if strings.Index(html, `data-testid="outcome"`) > strings.Index(html, "<table") {
		t.Error("the outcome comes after a table")
	}
}

// TestReportMarksStretchesAndLatency: a drain, a partition and a delay are
// bands on the timeline, their labels in lanes that never overlap, at
// projector width; a scenario about latency gets the latency chart.
func TestReportMarksStretchesAndLatency(t *testing.T) {
	r := shortResult()
	r.Source = "lesson l\nrun with store=redis\nstart 3 replicas\ndelay redis 5ms\n"
	r.Duration = 6 * time.Second
	for i := range 600 {
		lat := time.Millisecond
		if i > 200 && i < 400 {
			lat = 12 * time.Millisecond
		}
		r.Requests = append(r.Requests, Request{Shopper: "s", At: time.Duration(i) * 10 * time.Millisecond, Latency: lat, Status: 303, Replica: fmt.Sprintf("shop%d", 1+i%3)})
	}
	r.Events = []Event{
		{At: 0, Text: "cluster serves"},
		{At: 0, Text: "load: 6 shoppers for 5s"},
		{At: 2 * time.Second, Text: "Redis is 5ms away (every exchange)", Span: "delay", Begins: true},
		{At: 2100 * time.Millisecond, Text: "shop3 restarting (SIGTERM, with drain 2s, then start)", Span: "restart shop3", Begins: true},
		{At: 4 * time.Second, Text: "Redis is next door again (no delay)", Span: "delay", Ends: true},
		{At: 4200 * time.Millisecond, Text: "shop3 serves again", Span: "restart shop3", Ends: true},
		{At: 5 * time.Second, Text: "Sentinel promoted redis2 to primary (redis1 was killed)"},
	}
	doc := render(t, r)
	countSel(t, doc, "svg[data-testid=timeline] [data-testid=band]", 2)
	countSel(t, doc, "svg[data-testid=timeline] [data-testid=event]", 3)
	countSel(t, doc, "svg[data-testid=latency]", 1)
	if w, _ := doc.Find("svg[data-testid=timeline]").Attr("width"); len(w) < 4 || w < "1000" {
		t.Errorf("timeline width %s: want the projector's, over 1000 px", w)
	}
	// No two labels of one lane overlap, and none is cut.
	tl := timeline(r, replicaColors(r.Requests))
	type box struct{ x0, x1, y int }
	var boxes []box
	for _, b := range tl.Bands {
		boxes = append(boxes, box{b.X, b.X + labelWidth(b.Label), b.LabelY})
		if strings.HasSuffix(b.Label, "…") {
			t.Errorf("label cut: %q", b.Label)
		}
	}
	for _, e := range tl.Events {
		boxes = append(boxes, box{e.X, e.X + labelWidth(e.Label), e.LabelY})
	}
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			if a.y == b.y && a.x0 < b.x1 && b.x0 < a.x1 {
				t.Errorf("labels overlap at y=%d: %v and %v", a.y, a, b)
			}
		}
		if a.y >= tl.Top {
			t.Errorf("a label at y=%d sits inside the plot (top %d)", a.y, tl.Top)
		}
	}
	if p99, _ := doc.Find("[data-testid=p99]").Attr("points"); strings.Count(p99, ",") < 20 {
		t.Errorf("p99 line has too few points: %q", p99)
	}
	// Without a delay or a latency expectation, no latency chart.
	doc = render(t, shortResult())
	countSel(t, doc, "svg[data-testid=latency]", 0)
}

// TestMatrixShowsEachPhase: a script that judges three times shows three
// counts in the matrix, not only the last.
func TestMatrixShowsEachPhase(t *testing.T) {
	r := shortResult()
	r.Looks = []Look{{Tally: Tally{Intact: 2}, Carts: 2}, {Tally: Tally{Intact: 2}, Carts: 2}, {Tally: Tally{Lost: 2}, Carts: 2}}
	var out bytes.Buffer
	WriteMatrix(&out, []*Result{r}, time.Second)
	if !strings.Contains(out.String(), "| 2 / 0 / 0 → 2 / 0 / 0 → 0 / 2 / 0 |") {
		t.Errorf("matrix:\n%s", out.String())
	}
}
