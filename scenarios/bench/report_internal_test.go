package bench

import (
	"reflect"
	"testing"
)

// TestThroughputGoal pins what a throughput-vs-memory goal says: every
// page measured under both stores, met only when each reaches the goal, and
// the pages that fall short named with how far.
func TestThroughputGoal(t *testing.T) {
	m := func(page, store string, rps float64) Measurement {
		return Measurement{Page: page, Store: store, Throughput: rps}
	}
	r := Result{Measurements: []Measurement{
		m(PageCatalog, "memory", 1000), m(PageCatalog, "redis", 800),
		m(PageCart, "memory", 1000), m(PageCart, "redis", 700),
		m(PageAdd, "memory", 1000), // no redis row: left out
	}}
	got, ok := r.throughputGoal("redis vs memory", []string{PageCatalog, PageCart, PageAdd}, "redis", 0.75)
	want := Goal{Name: "redis vs memory", Target: "≥ 75%", Measured: "catalog 80%, cart 70%", Why: "short: cart by 5 points"}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("throughputGoal = %+v, %v; want %+v, true", got, ok, want)
	}

	got, _ = r.throughputGoal("redis vs memory", []string{PageCatalog}, "redis", 0.75)
	if !got.Met || got.Why != "" {
		t.Errorf("catalog alone at 80%% of 75%%: %+v, want met", got)
	}
	if _, ok := r.throughputGoal("cookie vs memory", []string{PageCatalog}, "cookie", 0.9); ok {
		t.Error("a goal with no page measured under both stores was reported")
	}
}
