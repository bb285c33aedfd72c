package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/state/price"
	"github.com/statelab/shop/web"
)

// getState is /state's document and /api/state's measured_price, raw.
func getState(t *testing.T, base string) (*goquery.Document, json.RawMessage) {
	t.Helper()
	resp, err := http.Get(base + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /state: %s", resp.Status)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(base + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a struct {
		MeasuredPrice json.RawMessage `json:"measured_price"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.MeasuredPrice == nil {
		t.Fatalf("GET /api/state: %v; want a measured_price field in %s", err, b)
	}
	return doc, a.MeasuredPrice
}

// TestStatePrice: /state states the price of statelessness with the
// figures it was given and the machine and date they came from, and
// /api/state carries them as measured_price; without figures the page says
// it was not measured and the field is null.
func TestStatePrice(t *testing.T) {
	m := &price.Measured{
		At: time.Date(2026, 12, 6, 14, 20, 0, 0, time.UTC), Machine: "2 CPUs (Test CPU), 7.8 GiB RAM", Load: "0.42",
		Command: "go run ./scenarios/bench/cmd/bench -only profiles", Flow: "catalog, product, add, cart, checkout",
		Clients: 32, Rate: 200, ThroughputRatio: 0.827,
		Profiles: []price.Profile{
			{Name: "stateful", LB: "sticky", Throughput: 812.3, P50Ms: 1.2, P99Ms: 9.87, Replicas: 3, ReplicaRSS: 27 << 20, TotalRSS: 98 << 20, Shared: []price.Part{}},
			{Name: "stateless", LB: "roundrobin", Throughput: 671.8, P50Ms: 1.9, P99Ms: 14.21, Replicas: 3, ReplicaRSS: 31 << 20, TotalRSS: 160 << 20,
				Shared: []price.Part{{Name: "redis", RSS: 12 << 20}, {Name: "object store", RSS: 37 << 20}}},
		},
	}
	ts := newShopConfig(t, session.Memory, web.Config{Price: m})
	doc, raw := getState(t, ts.srv.URL)
	summary := strings.Join(strings.Fields(doc.Find(`[data-testid="state-price-summary"]`).Text()), " ")
	for _, want := range []string{"2 CPUs (Test CPU), 7.8 GiB RAM", "2026-12-06 14:20 UTC", "load average 0.42",
		"Stateless serves 672 req/s at 32 clients against stateful's 812 (83%)", "p99 of 14.2 ms against 9.9 ms at 200 req/s",
		"31 MiB against 27 MiB", "redis 12 MiB, object store 37 MiB"} {
		if !strings.Contains(summary, want) {
			t.Errorf("/state's price lacks %q: %q", want, summary)
		}
	}
	rows := map[string]string{}
	doc.Find(`[data-testid="state-price-profile"]`).Each(func(_ int, s *goquery.Selection) {
		rows[s.AttrOr("data-profile", "")] = strings.Join(strings.Fields(s.Text()), " ")
	})
	if !strings.Contains(rows["stateful"], "812") || !strings.Contains(rows["stateful"], "nothing") ||
		!strings.Contains(rows["stateless"], "1.9 ms / 14.2 ms") || !strings.Contains(rows["stateless"], "160 MiB") {
		t.Errorf("/state's price table: %q", rows)
	}
	if src := doc.Find(".state-price-source").Text(); !strings.Contains(src, "state/price/measured.json") || !strings.Contains(src, m.Command) {
		t.Errorf("/state does not say where the figures come from: %q", src)
	}
	var got price.Measured
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if s, _ := got.Find("stateless"); got.Machine != m.Machine || !got.At.Equal(m.At) || s.Throughput != 671.8 || s.P99Ms != 14.21 || len(s.Shared) != 2 {
		t.Errorf("/api/state measured_price = %+v; want the figures the server was given", got)
	}

	t.Run("never measured", func(t *testing.T) {
		ts := newShopConfig(t, session.Memory, web.Config{})
		doc, raw := getState(t, ts.srv.URL)
		if string(raw) != "null" {
			t.Errorf("measured_price = %s; want null", raw)
		}
		if p := doc.Find(`[data-testid="state-price"]`).Text(); !strings.Contains(p, "Not measured") || doc.Find(`[data-testid="state-price-summary"]`).Length() != 0 {
			t.Errorf("/state without figures: %q", p)
		}
	})
}

// TestStatePriceEmbedded: the figures built into the shop (written by
// `make bench` into state/price/measured.json) are a measurement of both
// profiles, and /state shows them.
func TestStatePriceEmbedded(t *testing.T) {
	m, err := price.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Complete() || m.Machine == "" || m.At.IsZero() {
		t.Fatalf("the embedded figures are no measurement of both profiles: %+v; run make bench (or the bench's -only profiles with -price %s)", m, price.File)
	}
	ts := newShopConfig(t, session.Memory, web.Config{Price: &m})
	doc, _ := getState(t, ts.srv.URL)
	summary := strings.Join(strings.Fields(doc.Find(`[data-testid="state-price-summary"]`).Text()), " ")
	full, _ := m.Find("stateful")
	less, _ := m.Find("stateless")
	for _, want := range []string{m.Machine, m.At.UTC().Format("2006-01-02 15:04 UTC"),
		fmt.Sprintf("Stateless serves %.0f req/s", less.Throughput), fmt.Sprintf("against stateful's %.0f", full.Throughput),
		fmt.Sprintf("p99 of %.1f ms against %.1f ms", less.P99Ms, full.P99Ms)} {
		if !strings.Contains(summary, want) {
			t.Errorf("/state's price lacks %q: %q", want, summary)
		}
	}
}
