package lab

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// scriptFS holds the scenario scripts, so the lab binary carries them.
//
//go:embed scripts/*.txt
var scriptFS embed.FS

// Scripts parses every embedded scenario script, sorted by the order of
// the workshop (see order), then by name.
func Scripts() ([]*Script, error) {
	files, err := fs.Glob(scriptFS, "scripts/*.txt")
	if err != nil {
		return nil, err
	}
	var out []*Script
	var errs []string
	for _, f := range files {
		data, err := scriptFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		s, err := Parse(f, string(data))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	sort.SliceStable(out, func(i, j int) bool {
		oi, oj := orderOf(out[i].Name), orderOf(out[j].Name)
		if oi != oj {
			return oi < oj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// order is the workshop's order: each lesson builds on the one before.
var order = []string{"across-replicas", "sticky", "failover", "rolling-restart", "scale-out", "redis-outage", "redis-restart", "concurrent-cart"}

func orderOf(name string) int {
	for i, n := range order {
		if n == name {
			return i
		}
	}
	return len(order)
}

// Lookup returns the embedded script with that name.
func Lookup(name string) (*Script, error) {
	scripts, err := Scripts()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range scripts {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("no scenario %q; there are: %s", name, strings.Join(names, ", "))
}

// Source returns a script's text as embedded, for a workshop to read.
func Source(name string) (string, error) {
	data, err := scriptFS.ReadFile(path.Join("scripts", name+".txt"))
	return string(data), err
}
