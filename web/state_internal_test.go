package web

import (
	"testing"

	"github.com/statelab/shop/state"
)

// TestLossSentence: the headline adds up what a kill -9 would lose, in
// each kind's words, and a kind that names its own loss (live events
// waiting for Redis while no stream is open here) is not "nothing".
func TestLossSentence(t *testing.T) {
	for _, tt := range []struct {
		name  string
		kinds []state.Description
		want  string
	}{
		{"nothing held", []state.Description{{Kind: "sessions", LostIfKilled: true}}, "nothing"},
		{"kept elsewhere", []state.Description{{Kind: "sessions", HeldHere: 4}}, "nothing"},
		{"counted", []state.Description{
			{Kind: "sessions", HeldHere: 14, LostIfKilled: true},
			{Kind: "uploads", HeldHere: 1, LostIfKilled: true},
			{Kind: "caches", HeldHere: 30},
		}, "14 carts, 1 photo"},
		{"own words, no streams", []state.Description{
			{Kind: "live", Lives: state.Shared, LostIfKilled: true, Loses: "3 live events waiting for Redis"},
		}, "3 live events waiting for Redis"},
		{"own words win over the count", []state.Description{
			{Kind: "sessions", HeldHere: 2, LostIfKilled: true},
			{Kind: "live", HeldHere: 9, LostIfKilled: true, Loses: "1 live event waiting for Redis"},
		}, "2 carts, 1 live event waiting for Redis"},
	} {
		if got := lossSentence(tt.kinds); got != tt.want {
			t.Errorf("%s: lossSentence = %q; want %q", tt.name, got, tt.want)
		}
	}
}
