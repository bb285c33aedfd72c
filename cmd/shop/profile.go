package main

// -profile: one word for where every kind of state lives. A profile is a
// preset for the state flags; a flag or environment variable given
// explicitly wins over it. The profile a replica reports (/state, the
// ribbon) is the one its settings match in full, whether they came from
// -profile or one by one; anything else is "custom".

import (
	"flag"
	"fmt"
	"strings"
)

// profileFlag is one state flag's value in a profile. match, when set,
// says which values fit the profile when the value is not the only one
// (any s3://BUCKET keeps photos in an object store).
type profileFlag struct {
	flag, value string
	match       func(string) bool
}

// inObjectStore: -uploads names a bucket, not a directory.
func inObjectStore(v string) bool { return strings.HasPrefix(v, "s3://") }

// defaultBucket is the bucket -profile stateless keeps photos in unless
// -uploads names another.
const defaultBucket = "s3://shop-photos"

// profiles are the presets, in the order -h lists them. Each names every
// state flag, so that a replica matches a profile only if all of its state
// lives where the profile says.
var profiles = []struct {
	name  string
	flags []profileFlag
}{
	{"stateful", []profileFlag{
		{flag: "session-store", value: "memory"},
		{flag: "jobs", value: "memory"},
		{flag: "schedule", value: "local"},
		{flag: "live", value: "local"},
		{flag: "uploads", value: "", match: func(v string) bool { return !inObjectStore(v) }},
	}},
	{"stateless", []profileFlag{
		{flag: "session-store", value: "redis"},
		{flag: "jobs", value: "queue"},
		{flag: "schedule", value: "shared"},
		{flag: "live", value: "redis"},
		{flag: "uploads", value: defaultBucket, match: inObjectStore},
	}},
}

// profileNames is "stateful and stateless", for messages.
func profileNames() string {
	var names []string
	for _, p := range profiles {
		names = append(names, p.name)
	}
	return strings.Join(names, " and ")
}

// envName is a flag's environment variable: -session-store is
// SHOP_SESSION_STORE.
func envName(flagName string) string {
	return "SHOP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyProfile sets the profile's flags on fs, except those given
// explicitly as a flag or in the environment.
func applyProfile(fs *flag.FlagSet, name string, getenv func(string) string) error {
	if name == "" {
		return nil
	}
	for _, p := range profiles {
		if p.name != name {
			continue
		}
		explicit := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		for _, pf := range p.flags {
			if explicit[pf.flag] || getenv(envName(pf.flag)) != "" {
				continue
			}
			if err := fs.Set(pf.flag, pf.value); err != nil {
				return fmt.Errorf("shop: -profile %s: -%s %s: %v", name, pf.flag, pf.value, err)
			}
		}
		return nil
	}
	return fmt.Errorf("shop: -profile %q: allowed values are %s", name, profileNames())
}

// matchProfile is the profile every state flag of fs matches, or "custom".
func matchProfile(fs *flag.FlagSet) string {
	for _, p := range profiles {
		all := true
		for _, pf := range p.flags {
			f := fs.Lookup(pf.flag)
			fits := f != nil && f.Value.String() == pf.value
			if f != nil && pf.match != nil {
				fits = pf.match(f.Value.String())
			}
			if !fits {
				all = false
				break
			}
		}
		if all {
			return p.name
		}
	}
	return "custom"
}
