package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/statelab/shop/session"
)

// cacheConfig is the near-cache's settings.
type cacheConfig struct {
	on           bool
	maxBytes     int64
	invalidation bool // off only to teach what goes wrong without it
}

// parseCache checks the near-cache's flags: it caches redis sessions only.
func parseCache(on, size, invalidation, store string) (cacheConfig, error) {
	c := cacheConfig{invalidation: true}
	switch on {
	case "on":
		c.on = true
	case "off":
	default:
		return c, fmt.Errorf("shop: -session-cache %q: allowed values are on and off", on)
	}
	if k, _ := session.Lookup(store); c.on && !k.Traits.Cacheable {
		return c, fmt.Errorf("shop: -session-cache on: caches redis sessions only; use it with -session-store redis")
	}
	n, err := parseBytes(size)
	if err != nil || n < 64<<10 || n > 16<<30 {
		return c, fmt.Errorf("shop: -session-cache-bytes %q: want a size from 64KiB to 16GiB, e.g. 8MiB", size)
	}
	c.maxBytes = n
	switch invalidation {
	case "on":
	case "off":
		c.invalidation = false
	default:
		return c, fmt.Errorf("shop: -session-cache-invalidation %q: allowed values are on and off", invalidation)
	}
	return c, nil
}

// parseBytes reads a size: a number of bytes, or one with KiB, MiB or GiB.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, errors.New("not a size")
	}
	return n * mult, nil
}
