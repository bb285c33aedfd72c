// Package state names the places a replica's state can live, and the one
// shape in which every kind of state (sessions, uploads, jobs, schedule,
// live streams, caches, limits, configuration) describes itself for the
// state audit (/state): where it lives, how much of it this replica holds,
// and whether a kill -9 of this replica would lose it.
//
// Each package that keeps a kind of state has a Describe method returning
// a Description; /state reads them all and adds them up. Nothing here
// decides by a package's name: a new kind is one more Describe.
package state

// Where a kind of state lives, as Description.Lives says it.
const (
	// Replica: this process's memory or this replica's disk. It dies with
	// the replica (or its container).
	Replica = "replica"
	// Shared: a shared service the replicas all reach (Redis).
	Shared = "shared"
	// Browser: the visitor's browser holds it (a sealed cookie).
	Browser = "browser"
	// Database: the shop's database (SQLite or PostgreSQL).
	Database = "database"
	// ObjectStore: an S3-compatible object store.
	ObjectStore = "object-store"
)

// Description is one kind of state as one replica holds it right now.
type Description struct {
	// Kind names the kind: "sessions", "uploads", "jobs", "schedule",
	// "live", "caches", "rate-limits", "configuration".
	Kind string `json:"kind"`
	// Lives is one of the places above.
	Lives string `json:"lives"`
	// HeldHere counts what this replica holds of it at this moment
	// (sessions in memory, photos on its disk, jobs in flight, streams).
	HeldHere int `json:"held_here"`
	// LostIfKilled says whether a kill -9 of this replica now would lose
	// what it holds (rebuildable caches are not lost).
	LostIfKilled bool `json:"lost_if_killed"`
	// Loses names what a kill -9 would lose when that is not HeldHere
	// itself, in the headline's words ("3 live events waiting for Redis"):
	// a kind whose loss is some of what it holds, or something else. Empty:
	// the headline counts HeldHere when LostIfKilled.
	Loses string `json:"loses,omitempty"`
	// Note says it in a sentence for the page.
	Note string `json:"note"`
}
