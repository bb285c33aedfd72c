package main

// What main tells the state audit (/state) about the parts it wired:
// where the sessions live, and which settings every replica must share.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/state"
	"github.com/statelab/shop/state/price"
	"github.com/statelab/shop/web"
)

// measuredPrice is the price of statelessness `make bench` last measured,
// built into the binary, for /state; nil before the first measurement. A
// file that does not parse is a build's mistake (a test reads it too):
// the shop still starts, and says so once.
func measuredPrice(log *slog.Logger) *price.Measured {
	m, err := price.Embedded()
	if err != nil {
		log.Warn("the embedded bench figures do not parse; /state will not show the price of statelessness", "err", err)
		return nil
	}
	if !m.Complete() {
		return nil
	}
	return &m
}

// sessionsState describes the session store main built: only the memory
// store holds sessions in this replica; redis keeps them in the shared
// Redis, cookie in each browser.
func sessionsState(cfg config, store session.Store) web.StateFunc {
	return func(context.Context) state.Description {
		switch s := store.(type) {
		case interface{ Len() int }:
			return state.Description{Kind: "sessions", Lives: state.Replica, HeldHere: s.Len(), LostIfKilled: true,
				Note: "Sessions live in this replica's memory: a kill -9 takes every cart in them along."}
		}
		if len(cfg.sessionKeys) > 0 {
			return state.Description{Kind: "sessions", Lives: state.Browser,
				Note: "Sessions travel sealed in each browser's cookie: this replica holds none, any replica with the keys opens them."}
		}
		return state.Description{Kind: "sessions", Lives: state.Shared,
			Note: "Sessions live in Redis, shared by every replica: this replica holds none of its own."}
	}
}

// configurationState is the settings that must agree across replicas,
// with the session keys shown by fingerprint only. Configuration is not
// lost with a replica, but a replica started with other values serves
// another shop.
func configurationState(cfg config) web.StateFunc {
	return func(context.Context) state.Description {
		var fps []string
		for _, k := range cfg.sessionKeys {
			sum := sha256.Sum256([]byte(k))
			fps = append(fps, hex.EncodeToString(sum[:4]))
		}
		note := fmt.Sprintf("Every replica must run with the same -session-store (%s) and -session-lock (%v)", cfg.sessionStore, cfg.sessionLock)
		if len(fps) > 0 {
			note += fmt.Sprintf(", and the same -session-keys (fingerprints %s; the first seals)", strings.Join(fps, ", "))
		}
		return state.Description{Kind: "configuration", Lives: state.Replica, HeldHere: len(fps),
			Note: note + ": configuration is state too, kept in each replica's environment."}
	}
}

// nearCacheState describes the near-cache of redis sessions, when there is
// one: copies of sessions Redis holds, so a kill -9 loses nothing but the
// next read's speed.
func nearCacheState(store session.Store) web.StateFunc {
	return func(context.Context) state.Description {
		c, ok := store.(interface {
			CacheStats() (entries int, bytes int64, live bool)
		})
		if !ok {
			return state.Description{Kind: "caches", Lives: state.Replica, Note: "No near-cache of sessions (-session-cache off)."}
		}
		n, size, live := c.CacheStats()
		note := fmt.Sprintf("The near-cache holds %d session copies (%d bytes) that Redis also holds: rebuilt on the next reads.", n, size)
		if !live {
			note += " Its invalidation is not subscribed right now, so it serves nothing."
		}
		return state.Description{Kind: "caches", Lives: state.Replica, HeldHere: n, Note: note}
	}
}
