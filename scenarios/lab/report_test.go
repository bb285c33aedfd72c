package lab

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
)

func TestReportIsSelfContained(t *testing.T) {
	r := &Result{
		Scenario: "failover",
		Lesson:   "kill -9 a replica",
		Source:   "lesson kill -9 a replica\nkill -9 replica of alice\n",
		Config:   Config{Store: "memory", LB: "sticky", Lock: "on"},
		Duration: 2 * time.Second,
		Requests: []Request{
			{At: 10 * time.Millisecond, Latency: time.Millisecond, Status: 303, Replica: "shop1"},
			{At: 150 * time.Millisecond, Latency: time.Millisecond, Status: 303, Replica: "shop2"},
			{At: 1200 * time.Millisecond, Latency: time.Millisecond, Status: 502},
		},
		Events:      []Event{{At: 0, Text: "cluster serves"}, {At: time.Second, Text: "shop2 killed (kill -9)"}},
		Carts:       []CartVerdict{{Shopper: "alice", Verdict: Lost, Why: "shop1 shows session unknown"}, {Shopper: "bob", Verdict: Intact}},
		Checks:      []Check{{Line: 12, Text: "expect carts intact", Applies: true, OK: false, Observed: "1 of 2 carts intact"}},
		Differences: []string{"scripts/failover.txt:12: expected carts intact, observed 1 of 2 carts intact"},
	}
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
	check := func(sel string, want int) {
		t.Helper()
		if n := doc.Find(sel).Length(); n != want {
			t.Errorf("%s: %d elements, want %d", sel, n, want)
		}
	}
	check("style", 1)
	check("svg[data-testid=timeline]", 1)
	check("[data-testid=event]", 2)
	check("[data-testid=failure]", 1)
	check("[data-testid=carts] tbody tr", 2)
	if got := doc.Find("[data-testid=lost-carts]").Text(); got != "carts lost: 1, wrong: 0 of 2" {
		t.Errorf("lost carts = %q", got)
	}
	if got := doc.Find("[data-testid=verdict]").Text(); !strings.Contains(got, "expected carts intact, observed 1 of 2") {
		t.Errorf("verdict = %q", got)
	}
	if got := doc.Find("[data-testid=script]").Text(); !strings.Contains(got, "kill -9 replica of alice") {
		t.Errorf("the report does not carry the script: %q", got)
	}
}
