package lab

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// scriptFS holds the built-in scenario scripts, so the lab binary carries
// them. Every .txt file in scripts/ is one; nothing lists them by hand.
//
//go:embed scripts/*.txt
var scriptFS embed.FS

// builtinDir is where the built-in scripts live in the repository: their
// errors name that path, so an editor opens the right file.
const builtinDir = "scenarios/lab/scripts"

// Builtin is one built-in script: parsed, or broken with its first error.
// A broken script breaks nothing else.
type Builtin struct {
	Name   string
	Script *Script // nil when Err is set
	Err    error
}

// Builtins parses every built-in script, in the order of the workshop (see
// order), then by name.
func Builtins() []Builtin { return builtinsIn(scriptFS) }

// builtinsIn parses every scripts/*.txt of fsys.
func builtinsIn(fsys fs.FS) []Builtin {
	files, err := fs.Glob(fsys, "scripts/*.txt")
	if err != nil {
		panic(err) // the pattern is ours and valid
	}
	var out []Builtin
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".txt")
		s, err := parseBuiltin(fsys, name)
		out = append(out, Builtin{Name: name, Script: s, Err: err})
	}
	slices.SortStableFunc(out, func(a, b Builtin) int {
		if d := orderOf(a.Name) - orderOf(b.Name); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func parseBuiltin(fsys fs.FS, name string) (*Script, error) {
	data, err := fs.ReadFile(fsys, "scripts/"+name+".txt")
	if err != nil {
		return nil, err
	}
	return Parse(builtinDir+"/"+name+".txt", string(data))
}

// order is the workshop's order: each lesson builds on the one before.
// Scripts not named here follow, by name.
var order = []string{"across-replicas", "sticky", "failover", "rolling-restart", "drain", "scale-out", "redis-outage", "redis-restart", "redis-partition", "redis-latency", "redis-failover", "concurrent-cart", "near-cache", "login-limit"}

// finale is the workshop's last scenario, after every other: the seeds'
// last test, which every lesson before it prepares.
const finale = "chaos"

func orderOf(name string) int {
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	if name == finale {
		return len(order) + 1
	}
	return len(order)
}

// Lookup returns the built-in script with that name. Only that script is
// parsed: another broken one does not stop it.
func Lookup(name string) (*Script, error) { return lookupIn(scriptFS, name) }

func lookupIn(fsys fs.FS, name string) (*Script, error) {
	if _, err := fs.Stat(fsys, "scripts/"+name+".txt"); err == nil {
		return parseBuiltin(fsys, name)
	}
	var names []string
	for _, b := range builtinsIn(fsys) {
		names = append(names, b.Name)
	}
	return nil, fmt.Errorf("no scenario %q; there are: %s (or give a script's path, e.g. ./mine.txt)", name, strings.Join(names, ", "))
}

// IsPath reports whether a scenario argument names a file rather than a
// built-in script: it ends in .txt or holds a path separator.
func IsPath(arg string) bool {
	return strings.HasSuffix(arg, ".txt") || strings.ContainsAny(arg, `/\`)
}

// Load reads and parses a script from a file; errors name the path as
// given.
func Load(file string) (*Script, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, string(data))
}

// Find returns the script an argument names: a file when IsPath, else a
// built-in script.
func Find(arg string) (*Script, error) {
	if IsPath(arg) {
		return Load(arg)
	}
	return Lookup(arg)
}

// Source returns a built-in script's text as embedded, broken or not, for
// a workshop to read.
func Source(name string) (string, error) {
	data, err := scriptFS.ReadFile("scripts/" + name + ".txt")
	return string(data), err
}
