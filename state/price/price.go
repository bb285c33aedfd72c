// Package price holds the price of statelessness as `make bench` last
// measured it: the same shopper flow through nginx and three replicas
// started with -profile stateful and with -profile stateless, on one
// machine. The bench (scenarios/bench, part "profiles") writes
// measured.json here; the shop embeds it, so that /state states the price
// with the figures and the machine they came from, never numbers typed
// into a template.
package price

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"time"
)

// measured is the bench's last result; an empty object before the first
// run.
//
//go:embed measured.json
var measured []byte

// File is where the bench writes the figures, relative to the module root.
const File = "state/price/measured.json"

// Measured is one run of the bench's profiles part.
type Measured struct {
	// At is when the run began; Machine what it ran on ("2 CPUs (model),
	// 7.8 GiB RAM, go1.25, Linux 6.1"), Load the 1-minute load average
	// as it began: the machine was shared, and this says how much.
	At      time.Time `json:"at"`
	Machine string    `json:"machine"`
	Load    string    `json:"load"`
	// Command is the command line that measured it.
	Command string `json:"command"`
	// Flow names the pages each shopper walks through, in order.
	Flow string `json:"flow"`
	// Clients is the closed model's concurrency (Throughput), Rate the
	// open model's requests per second (the latencies).
	Clients int `json:"clients"`
	Rate    int `json:"rate"`
	// Profiles are stateful then stateless.
	Profiles []Profile `json:"profiles"`
	// ThroughputRatio is stateless's throughput over stateful's, the
	// median of the round-by-round ratios.
	ThroughputRatio float64 `json:"throughput_ratio"`
}

// Profile is one cluster's figures.
type Profile struct {
	Name string `json:"profile"` // stateful or stateless
	LB   string `json:"lb"`      // nginx's policy: sticky or roundrobin
	// Throughput is requests per second at Measured.Clients (the median
	// round); P50Ms and P99Ms the latencies at Measured.Rate.
	Throughput float64 `json:"throughput"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	// Replicas is how many; ReplicaRSS their mean VmRSS after the load.
	Replicas   int    `json:"replicas"`
	ReplicaRSS uint64 `json:"replica_rss_bytes"`
	// Shared is the VmRSS of what the replicas share beside nginx, by
	// name ("redis", "object store"); none for stateful.
	Shared []Part `json:"shared"`
	// TotalRSS is the whole cluster's: replicas, nginx and Shared.
	TotalRSS uint64 `json:"total_rss_bytes"`
}

// Part is a shared process and its resident memory.
type Part struct {
	Name string `json:"name"`
	RSS  uint64 `json:"rss_bytes"`
}

// SharedRSS is the sum of Shared.
func (p Profile) SharedRSS() uint64 {
	var n uint64
	for _, s := range p.Shared {
		n += s.RSS
	}
	return n
}

// Find is the named profile's figures.
func (m Measured) Find(name string) (Profile, bool) {
	for _, p := range m.Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// Complete reports whether both profiles were measured.
func (m Measured) Complete() bool {
	a, ok1 := m.Find("stateful")
	b, ok2 := m.Find("stateless")
	return ok1 && ok2 && a.Throughput > 0 && b.Throughput > 0
}

// Parse reads the bench's JSON.
func Parse(b []byte) (Measured, error) {
	var m Measured
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("price: %w", err)
	}
	return m, nil
}

// Embedded is the figures built into this binary.
func Embedded() (Measured, error) { return Parse(measured) }
