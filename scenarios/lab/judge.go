package lab

// The judge compares what every shopper put in its cart with what the shop
// shows it, read as often as there are live replicas: through round robin
// that visits each of them once, which is what a person reloading the cart
// page would see.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Verdicts on one cart.
const (
	Intact = "intact" // every read shows what the shopper put in
	Lost   = "lost"   // the shop lost the session: a read shows no cart, or a new session replaced it
	Wrong  = "wrong"  // the session is there but holds something else (lost updates)
)

// CartVerdict is the judge's finding for one shopper.
type CartVerdict struct {
	Shopper string
	Verdict string // Intact, Lost or Wrong
	Why     string // for lost and wrong: what was seen
	// Fewer: a read held fewer of some product than the shopper surely
	// added while the session itself survived: a lost update.
	Fewer  bool
	Counts []int // the item count of each read
}

// judgeShopper reads the shopper's cart reads times and classifies it.
func judgeShopper(ctx context.Context, s *shopper, reads int) CartVerdict {
	want, replaced := s.snapshot()
	v := CartVerdict{Shopper: s.name, Verdict: Intact}
	var views []cartView
	for range reads {
		cv, err := s.readCart(ctx)
		if err != nil {
			return CartVerdict{Shopper: s.name, Verdict: Lost, Why: "cart unreadable: " + err.Error()}
		}
		views = append(views, cv)
		v.Counts = append(v.Counts, cv.Cart.Count)
	}
	if replaced != "" {
		v.Verdict, v.Why = Lost, replaced
		return v
	}
	for _, cv := range views {
		verdict, why, fewer := classify(want, cv)
		if rank(verdict) > rank(v.Verdict) {
			v.Verdict, v.Why = verdict, why
		}
		v.Fewer = v.Fewer || fewer
	}
	return v
}

func rank(verdict string) int {
	return map[string]int{Intact: 0, Wrong: 1, Lost: 2}[verdict]
}

// classify judges one read of a cart against what the shopper added.
func classify(want map[int]qtyRange, cv cartView) (verdict, why string, fewer bool) {
	sure := 0 // items the shopper surely added
	for _, r := range want {
		sure += r.lo
	}
	got := map[int]int{}
	for _, it := range cv.Cart.Items {
		got[it.ProductID] += it.Quantity
	}
	if sure > 0 && (cv.Session.State != "known" || len(got) == 0) {
		return Lost, fmt.Sprintf("%s shows session %s with %d items, want %s", cv.Replica, cv.Session.State, cv.Cart.Count, describeWant(want)), false
	}
	var diffs []string
	for _, p := range sortedKeys(want, got) {
		r, q := want[p], got[p]
		switch {
		case q < r.lo:
			fewer = true
			diffs = append(diffs, fmt.Sprintf("product %d: %d, want %s", p, q, r))
		case q > r.hi:
			diffs = append(diffs, fmt.Sprintf("product %d: %d, want %s", p, q, r))
		}
	}
	if len(diffs) == 0 {
		return Intact, "", false
	}
	return Wrong, cv.Replica + " shows " + strings.Join(diffs, "; "), fewer
}

func (r qtyRange) String() string {
	if r.lo == r.hi {
		return fmt.Sprint(r.lo)
	}
	return fmt.Sprintf("%d to %d", r.lo, r.hi)
}

func describeWant(want map[int]qtyRange) string {
	var parts []string
	for _, p := range sortedKeys(want, nil) {
		parts = append(parts, fmt.Sprintf("%s of product %d", want[p], p))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys(a map[int]qtyRange, b map[int]int) []int {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Ints(keys)
	return keys
}

// Tally counts verdicts.
type Tally struct{ Intact, Lost, Wrong, Fewer int }

func tally(vs []CartVerdict) Tally {
	var t Tally
	for _, v := range vs {
		switch v.Verdict {
		case Intact:
			t.Intact++
		case Lost:
			t.Lost++
		case Wrong:
			t.Wrong++
			if v.Fewer {
				t.Fewer++
			}
		}
	}
	return t
}

// String is "6 intact, 0 lost, 0 wrong".
func (t Tally) String() string {
	return fmt.Sprintf("%d intact, %d lost, %d wrong", t.Intact, t.Lost, t.Wrong)
}

// Check is the outcome of one expectation.
type Check struct {
	Line     int
	Text     string // the script line
	Expected string // what it expects: "cart of alice is 2"
	Applies  bool   // its "when" holds under this configuration
	OK       bool
	Observed string // what the judge saw, in words
}

// observation is everything an expectation can be checked against.
type observation struct {
	carts []CartVerdict
	// receipts and reports are read when an expectation first asks, once
	// per look: they cost requests (and, for receipts, waiting).
	receipts func() receiptsLook
	reports  func() reportsLook
	requests []Request
	gaveUp   int // shopper actions given up
	peeks    int // reads by another device
	stale    []StaleRead
	photos   []PhotoLook    // every review photo, as every replica answered for it
	watchers []WatchVerdict // what each watching shopper saw
	// phaseFrom is the first request of this phase: the requests since
	// the previous look; phaseAt is when it began.
	phaseFrom int
	phaseAt   time.Duration
}

// servedBy counts the requests a replica answered.
func (o *observation) servedBy(replica string) int {
	n := 0
	for _, q := range o.requests {
		if q.Replica == replica {
			n++
		}
	}
	return n
}

// shares is "shop1 40, shop2 3, shop3 0": requests per replica.
func (o *observation) shares() string {
	var parts []string
	for _, rs := range perReplica(o.requests) {
		if rs.Replica != "" {
			parts = append(parts, fmt.Sprintf("%s %d", rs.Replica, rs.Requests))
		}
	}
	return strings.Join(parts, ", ")
}

// guesses counts the guessed passwords the shop checked (422) and all
// those that got an answer.
func (o *observation) guesses() (checked, all int) {
	for _, q := range o.requests {
		if q.Action != actionGuess || q.Status == 0 {
			continue
		}
		all++
		if q.Status == 422 {
			checked++
		}
	}
	return checked, all
}

// photo is the look at NAME's photo.
func (o *observation) photo(name string) (PhotoLook, bool) {
	i := slices.IndexFunc(o.photos, func(p PhotoLook) bool { return p.Shopper == name })
	if i < 0 {
		return PhotoLook{}, false
	}
	return o.photos[i], true
}

// staleSeen is the stale reads in words, with the first.
func (o *observation) staleSeen() string {
	if len(o.stale) == 0 {
		return fmt.Sprintf("no stale read in %d reads by another device", o.peeks)
	}
	return fmt.Sprintf("%d stale reads in %d reads by another device, first: %s", len(o.stale), o.peeks, o.stale[0])
}

// cartsSeen is the carts in words, with the first problem if any.
func (o *observation) cartsSeen() string {
	t := tally(o.carts)
	return fmt.Sprintf("%d of %d carts intact, %d lost, %d wrong%s", t.Intact, len(o.carts), t.Lost, t.Wrong, o.firstProblem())
}

// failedRequests counts requests with no answer or a 5xx.
func (o *observation) failedRequests() int {
	n := 0
	for _, q := range o.requests {
		if q.Failed() {
			n++
		}
	}
	return n
}

// withStatus counts responses with that status.
func (o *observation) withStatus(status int) int {
	n := 0
	for _, q := range o.requests {
		if q.Status == status {
			n++
		}
	}
	return n
}

// firstProblem names one cart that is not intact, so a failure says why.
func (o *observation) firstProblem() string {
	for _, v := range o.carts {
		if v.Verdict != Intact {
			return fmt.Sprintf(" (%s: %s)", v.Shopper, v.Why)
		}
	}
	return ""
}
