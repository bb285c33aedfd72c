package web

import (
	"strings"
	"testing"
)

// TestCookieName: any replica name becomes a name the strict trail parser
// accepts, so a replica named after its host (with dots) still leaves a
// readable trail.
func TestCookieName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"shop1", "shop1"},
		{"web-7f9c_b", "web-7f9c_b"},
		{"ip-10-0-0-1.ec2.internal", "ip-10-0-0-1-ec2-internal"},
		{"<b>", "-b-"},
		{"", "-"},
		{strings.Repeat("a", 64), strings.Repeat("a", maxTrailName)},
	} {
		got := cookieName(tc.in)
		if got != tc.want || !validName(got) {
			t.Errorf("cookieName(%q) = %q (valid %v), want %q", tc.in, got, validName(got), tc.want)
		}
		if trail := parseTrail(strings.Join(extendTrail([]string{"shop1"}, got), ".")); len(trail) != 2 || trail[1] != got {
			t.Errorf("a trail ending in %q parses as %q", got, trail)
		}
	}
}
