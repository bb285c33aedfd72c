package session

// Stale locks: a lock's SET NX that timed out on the client may still land.
// Redis stopped (SIGSTOP, a long fork, a paused VM) keeps the bytes in its
// socket and applies them when it wakes, after the client gave up, and the
// release sent at the error timed out just the same. Nothing would then
// free the lock but its TTL, longer than any write waits for it. So the
// store remembers the value of every lock attempt or release that failed,
// and the next lock attempt on that key releases it, compare-and-delete, in
// the same pipeline: the first write after Redis answers again gets the
// lock at once.

import (
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// maxStaleLocks bounds what a store remembers: past it a stale lock is
// left to expire by its TTL, as before.
const maxStaleLocks = 4096

// releaseStaleScript deletes KEYS[1] if it holds any of ARGV, and returns
// the value it deleted (nil when none matched).
var releaseStaleScript = redis.NewScript(1, `local v = redis.call("GET", KEYS[1])
if v then for i = 1, #ARGV do if ARGV[i] == v then redis.call("DEL", KEYS[1]) return v end end end
return false`)

// staleLocks are lock values this replica may have left in Redis.
type staleLocks struct {
	mu   sync.Mutex
	keys map[string][]staleLock
	n    int
}

type staleLock struct {
	value string
	// forgetAt is set when an exchange carrying the release succeeded:
	// Redis is awake, so a SET still in its socket has landed by then, and
	// after a lock TTL more it has expired anyway.
	forgetAt time.Time
}

// remember records a lock value that may be in Redis without a holder.
func (st *staleLocks) remember(key, value string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.n >= maxStaleLocks {
		return
	}
	if st.keys == nil {
		st.keys = make(map[string][]staleLock)
	}
	st.keys[key] = append(st.keys[key], staleLock{value: value})
	st.n++
}

// values are the values to release with key's next lock attempt.
func (st *staleLocks) values(key string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	ls := st.keys[key]
	if len(ls) == 0 {
		return nil
	}
	now := time.Now()
	kept := ls[:0]
	var vals []string
	for _, l := range ls {
		if !l.forgetAt.IsZero() && now.After(l.forgetAt) {
			continue
		}
		kept = append(kept, l)
		vals = append(vals, l.value)
	}
	st.set(key, kept, len(ls))
	return vals
}

// released records an exchange that carried the release of vals and got
// its answer: deleted is the value Redis found and deleted, "" for none.
func (st *staleLocks) released(key string, vals []string, deleted string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ls := st.keys[key]
	forgetAt := time.Now().Add(lockTTL)
	kept := ls[:0]
	for _, l := range ls {
		if l.value == deleted {
			continue
		}
		for _, v := range vals {
			if l.value == v && l.forgetAt.IsZero() {
				l.forgetAt = forgetAt
			}
		}
		kept = append(kept, l)
	}
	st.set(key, kept, len(ls))
}

// set stores key's list, which had before entries; st.mu is held.
func (st *staleLocks) set(key string, ls []staleLock, before int) {
	st.n -= before - len(ls)
	if len(ls) == 0 {
		delete(st.keys, key)
		return
	}
	st.keys[key] = ls
}
