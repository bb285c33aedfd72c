package static

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPaletteMatchesStylesheet: the ribbon's colours in shop.css are the
// palette the reports use, rule for rule.
func TestPaletteMatchesStylesheet(t *testing.T) {
	css, err := FS.ReadFile("shop.css")
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]string{}
	for _, m := range regexp.MustCompile(`\.(replica-(?:c\d+|none)) \{ --ribbon: (#[0-9a-fA-F]{6}); \}`).FindAllStringSubmatch(string(css), -1) {
		rules[m[1]] = strings.ToLower(m[2])
	}
	if len(rules) != len(replicaPalette)+1 {
		t.Errorf("shop.css has %d replica colour rules, the palette %d colours and none", len(rules), len(replicaPalette))
	}
	for i, hex := range replicaPalette {
		if got := rules["replica-c"+strconv.Itoa(i)]; got != hex {
			t.Errorf(".replica-c%d is %q in shop.css, %q in the palette", i, got, hex)
		}
	}
	if rules["replica-none"] != noReplicaColor {
		t.Errorf(".replica-none is %q in shop.css, %q in the palette", rules["replica-none"], noReplicaColor)
	}
}

// TestReplicaColor: stable per name, consecutive for shop1..shopN, and
// never red (red means failure in the reports).
func TestReplicaColor(t *testing.T) {
	for i, name := range []string{"shop1", "shop2", "shop3", "shop4"} {
		class, hex := ReplicaColor(name)
		if class != "replica-c"+strconv.Itoa(i) || hex != replicaPalette[i] {
			t.Errorf("%s: %s %s, want replica-c%d %s", name, class, hex, i, replicaPalette[i])
		}
	}
	if c1, _ := ReplicaColor("web-a"); c1 == "" || c1 == "replica-none" {
		t.Errorf("web-a: %q", c1)
	}
	if a, _ := ReplicaColor("web-a"); a != func() string { b, _ := ReplicaColor("web-a"); return b }() {
		t.Error("the colour of a hashed name changes between calls")
	}
	for _, hex := range replicaPalette {
		r, _ := strconv.ParseUint(hex[1:3], 16, 8)
		g, _ := strconv.ParseUint(hex[3:5], 16, 8)
		b, _ := strconv.ParseUint(hex[5:7], 16, 8)
		// Red: the red channel dominates both others by far.
		if r > 2*g && r > 2*b {
			t.Errorf("replica colour %s is red: red means failure", hex)
		}
	}
}

// TestReplicaColorAllocatesNothing: pages name several replicas per request.
func TestReplicaColorAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { ReplicaColor("shop12") }); n != 0 {
		t.Errorf("ReplicaColor allocates %.0f times per call", n)
	}
}
