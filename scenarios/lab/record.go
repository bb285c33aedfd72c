package lab

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"
)

// Request is one HTTP exchange a shopper made, as the timeline and the
// table need it.
type Request struct {
	Shopper string        // who sent it
	Action  string        // what it was: "opens the catalog", "adds 2 of product 1"
	At      time.Duration // since the scenario's clock started
	Latency time.Duration
	Status  int    // 0: no response (transport error)
	Replica string // X-Served-By; "" when no replica answered
	Retry   bool   // a retry of an earlier attempt
	// Stale: a read by another device that showed less than the
	// shopper's acknowledged adds.
	Stale bool
}

// Failed reports whether the request got no answer or a 5xx.
func (r Request) Failed() bool { return r.Status == 0 || r.Status >= 500 }

// Event is something the script did to the cluster, on the same clock.
// Some are a stretch of time rather than a moment: a drain, a pause, a
// partition, a delay begins with one event and ends with another of the
// same Span.
type Event struct {
	At   time.Duration
	Text string // "shop2 killed (kill -9)"
	// Span names the stretch this event begins (Begins) or ends (Ends):
	// "stop shop2", "partition". "" for a moment.
	Span   string
	Begins bool
	Ends   bool
}

// recorder collects requests and events from every shopper goroutine and
// prints the narrative as events happen.
type recorder struct {
	t0  time.Time
	out io.Writer

	mu       sync.Mutex
	requests []Request
	events   []Event
	story    []Line
	gaveUp   int // shopper actions given up after their retries
	peeks    int // reads by another device (peek steps)
	stale    []StaleRead
	// stockChanges counts the product stocks the lab's checkouts changed:
	// what a watcher is owed.
	stockChanges int
}

// StaleRead is a read that showed less than the shopper's acknowledged
// writes: what the near-cache must never serve.
type StaleRead struct {
	At      time.Duration
	Shopper string
	Replica string
	Source  string // where the replica found the session: hit, miss, ... ("" without a near-cache)
	Count   int    // items the read showed
	Acked   int    // items the shopper's acknowledged adds put in
}

func (s StaleRead) String() string {
	from := ""
	if s.Source != "" {
		from = " (near-cache: " + s.Source + ")"
	}
	return fmt.Sprintf("%.2fs %s's other device read %d items on %s%s after %d were acknowledged", s.At.Seconds(), s.Shopper, s.Count, s.Replica, from, s.Acked)
}

// markStale marks the shopper's latest request as a stale read.
func (r *recorder) markStale(shopper string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.requests) - 1; i >= 0; i-- {
		if r.requests[i].Shopper == shopper {
			r.requests[i].Stale = true
			return
		}
	}
}

// peeked records one read by another device, stale or not.
func (r *recorder) peeked(stale *StaleRead) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peeks++
	if stale != nil {
		r.stale = append(r.stale, *stale)
	}
}

// Line is one line of the narrative: what the terminal printed, on the
// scenario's clock.
type Line struct {
	At   time.Duration
	Text string
}

func newRecorder(out io.Writer) *recorder {
	if out == nil {
		out = io.Discard
	}
	return &recorder{t0: time.Now(), out: out}
}

func (r *recorder) since() time.Duration { return time.Since(r.t0) }

func (r *recorder) request(q Request) {
	r.mu.Lock()
	r.requests = append(r.requests, q)
	r.mu.Unlock()
}

func (r *recorder) giveUp() {
	r.mu.Lock()
	r.gaveUp++
	r.mu.Unlock()
}

// event records an event and tells it: "  3.21s  shop2 killed (kill -9)".
func (r *recorder) event(format string, args ...any) {
	e := Event{At: r.since(), Text: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.say(e.At, e.Text)
}

// begin records an event that begins a stretch of time named span.
func (r *recorder) begin(span, text string) {
	r.mark(Event{At: r.since(), Text: text, Span: span, Begins: true})
}

// end records the event that ends the stretch named span; with an empty
// text it only ends it (a delay replaced by another) and says nothing.
// Nothing is open under that name: a moment, if it says something.
func (r *recorder) end(span, text string) {
	r.mu.Lock()
	open := false
	for i := len(r.events) - 1; i >= 0; i-- {
		e := r.events[i]
		if e.Span == span {
			open = e.Begins
			break
		}
	}
	r.mu.Unlock()
	switch {
	case open:
		r.mark(Event{At: r.since(), Text: text, Span: span, Ends: true})
	case text != "":
		r.event("%s", text)
	}
}

func (r *recorder) mark(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if e.Text != "" {
		r.say(e.At, e.Text)
	}
}

// say prints a narrative line that is not an event on the timeline.
func (r *recorder) say(at time.Duration, text string) {
	r.mu.Lock()
	r.story = append(r.story, Line{At: at, Text: text})
	r.mu.Unlock()
	fmt.Fprintf(r.out, "%7.2fs  %s\n", at.Seconds(), text)
}

// Stats summarize requests.
type Stats struct {
	Requests int
	ByStatus map[int]int // 0 counts transport errors
	Failed   int         // no answer or 5xx
	Retries  int
	P50, P99 time.Duration
}

// ReplicaStats are Stats for the requests one replica answered.
type ReplicaStats struct {
	Replica string // "" collects requests no replica answered
	Stats
}

func statsOf(reqs []Request) Stats {
	s := Stats{Requests: len(reqs), ByStatus: map[int]int{}}
	lat := make([]time.Duration, 0, len(reqs))
	for _, q := range reqs {
		s.ByStatus[q.Status]++
		if q.Failed() {
			s.Failed++
		}
		if q.Retry {
			s.Retries++
		}
		lat = append(lat, q.Latency)
	}
	slices.Sort(lat)
	s.P50, s.P99 = percentile(lat, 50), percentile(lat, 99)
	return s
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func perReplica(reqs []Request) []ReplicaStats {
	by := map[string][]Request{}
	for _, q := range reqs {
		by[q.Replica] = append(by[q.Replica], q)
	}
	var out []ReplicaStats
	for name, rs := range by {
		out = append(out, ReplicaStats{Replica: name, Stats: statsOf(rs)})
	}
	sort.Slice(out, func(i, j int) bool { return replicaLess(out[i].Replica, out[j].Replica) })
	return out
}

// replicaLess orders shop2 before shop10 and "" (no replica) last.
func replicaLess(a, b string) bool {
	if (a == "") != (b == "") {
		return b == ""
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
