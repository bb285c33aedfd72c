package static

import (
	"hash/fnv"
	"strconv"
)

// replicaPalette is every replica's colour: the ribbon's .replica-cN rules
// in shop.css (TestPaletteMatchesStylesheet keeps the two equal) and the
// lab's reports, so shop2 has one colour on every page, in every report and
// every run. None is red: red means failure. Each is dark enough for white
// text (WCAG AA).
var replicaPalette = [...]string{
	"#1d4ed8", // blue: shop1
	"#15803d", // green: shop2
	"#7e22ce", // purple: shop3
	"#a16207", // ochre: shop4
	"#0f766e", // teal
	"#4338ca", // indigo
	"#a21caf", // fuchsia
	"#4d7c0f", // olive
	"#0e7490", // cyan
	"#854d0e", // brown
	"#334155", // slate
	"#57534e", // stone
}

// replicaClasses are the stylesheet classes of the palette, as constants so
// that naming a colour allocates nothing.
var replicaClasses = [len(replicaPalette)]string{
	"replica-c0", "replica-c1", "replica-c2", "replica-c3", "replica-c4", "replica-c5",
	"replica-c6", "replica-c7", "replica-c8", "replica-c9", "replica-c10", "replica-c11",
}

// noReplicaColor is .replica-none: no replica answered, or none is known.
const noReplicaColor = "#3b4252"

// ReplicaColor gives a replica name its colour: the stylesheet class
// ("replica-c1") and the colour itself ("#15803d"). Names that end in a
// number (shop1, shop2, ...) take consecutive colours, so a small cluster
// never shows two replicas alike; other names are hashed. "" is
// replica-none.
func ReplicaColor(name string) (class, hex string) {
	if name == "" {
		return "replica-none", noReplicaColor
	}
	n := len(replicaPalette)
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	var c int
	if num, err := strconv.Atoi(name[i:]); err == nil && i < len(name) {
		c = (num + n - 1) % n
	} else {
		h := fnv.New32a()
		h.Write([]byte(name))
		c = int(h.Sum32() % uint32(n))
	}
	return replicaClasses[c], replicaPalette[c]
}
