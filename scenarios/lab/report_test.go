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
	if got := doc.Find("[data-testid=lost-carts]").Text(); got != "carts lost: 1, wrong: 0 of 2" {
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
