package templates

import (
	"strconv"

	"github.com/a-h/templ"
)

// templ runs every class={ ... } expression through its CSS processor, eight
// or so allocations each, and the ribbon on every page has up to six of them.
// Its classes are a base ("ribbon", "chip") and a replica colour from a fixed
// set, so each combination is built once here and spread as an attribute:
// the same HTML, no allocation per page.

// replicaClassAttrs holds the class attribute of every base and replica
// colour the shop uses.
var replicaClassAttrs = func() map[[2]string]templ.Attributer {
	colors := []string{"replica-none"}
	for i := range 12 {
		colors = append(colors, "replica-c"+strconv.Itoa(i))
	}
	m := make(map[[2]string]templ.Attributer)
	for _, base := range []string{"ribbon", "chip"} {
		for _, color := range colors {
			m[[2]string{base, color}] = newClassAttr(base, color)
		}
	}
	return m
}()

// replicaClass is the class attribute "base color", as class={ base, color }
// would render it.
func replicaClass(base, color string) templ.Attributer {
	if a, ok := replicaClassAttrs[[2]string{base, color}]; ok {
		return a
	}
	return newClassAttr(base, color)
}

func newClassAttr(base, color string) templ.Attributer {
	return templ.OrderedAttributes{{Key: "class", Value: templ.Classes(base, color).String()}}
}
