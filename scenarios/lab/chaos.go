package lab

// Chaos: the seeds' last test, "can you kill -9 any instance at any time
// without user impact?". A background loop kills a random replica with
// kill -9 every D and starts it again fresh, while buyers do everything a
// shopper does; the expectations then count, kind by kind, what the
// kills cost.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// chaos is the running kill loop of "chaos every D".
type chaos struct {
	cancel context.CancelFunc
	done   chan struct{}
	kills  int
	err    error // the first fault that failed: the run cannot go on
}

// startChaos kills one of replicas at random every d (each once in every
// round of as many kills as replicas) and starts it again
// at once with an empty upload folder: a new container, with empty memory
// and an empty disk (the replace fault).
func (r *runner) startChaos(ctx context.Context, replicas int, every time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	c := &chaos{cancel: cancel, done: make(chan struct{})}
	r.chaos, r.chaosRan = c, true
	r.rec.begin("chaos", fmt.Sprintf("chaos: a random replica of %d is killed (kill -9) every %s and started again empty", replicas, every))
	// Seeded per run: the kills' order is random but the script's
	// shoppers are not, so two runs differ only where the shop does.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 21))
	go func() {
		defer close(c.done)
		var turn []int
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			// Random, but every replica once in each round of kills: a
			// replica that chance spared would make a lucky run.
			if len(turn) == 0 {
				turn = rng.Perm(replicas)
			}
			target := fmt.Sprintf("shop%d", 1+turn[0])
			turn = turn[1:]
			// A fault is not cut short by stop chaos: a replica killed is
			// always started again before the judge looks.
			fctx := context.WithoutCancel(ctx)
			r.rec.event("chaos: %s killed (kill -9)", target)
			// replace: kill -9, an empty disk, a new process with the
			// same name, as an orchestrator replaces a crashed container.
			if err := r.fault(fctx, Fault{Do: "replace", Target: target}); err != nil {
				c.err = fmt.Errorf("chaos: replace %s: %w", target, err)
				return
			}
			c.kills++
			r.rec.event("chaos: %s started again, empty (memory and disk)", target)
		}
	}()
}

// stopChaos ends the kill loop once the replica it is killing, if any,
// serves again; it returns the loop's error.
func (r *runner) stopChaos() error {
	c := r.chaos
	if c == nil {
		return nil
	}
	r.chaos = nil
	c.cancel()
	<-c.done
	r.rec.end("chaos", fmt.Sprintf("chaos ends after %s", plural(c.kills, "kill")))
	return c.err
}

// startBuyers starts n buyers (buyer01, ...) in the background for d: each
// opens the catalog, adds one to three products, checks out with one
// idempotency key for every retry of that checkout, and again. Their
// orders join the receipts the judge reads; their checkouts, the stock
// changes the watchers must see.
func (r *runner) startBuyers(ctx context.Context, n int, d time.Duration) {
	r.rec.mu.Lock()
	r.loadStart = len(r.rec.requests)
	r.rec.mu.Unlock()
	r.rec.event("load: %d buyers for %s (browse, add, check out)", n, d)
	ctx, cancel := context.WithCancel(ctx)
	r.loadCancel = cancel
	deadline := time.Now().Add(d)
	for i := range n {
		s := r.shopper(fmt.Sprintf("buyer%02d", i+1))
		rng := rand.New(rand.NewPCG(uint64(i), 21))
		r.loadWG.Go(func() {
			for round := 0; time.Now().Before(deadline) && ctx.Err() == nil; round++ {
				s.browse(ctx)
				for range 1 + rng.IntN(3) {
					s.add(ctx, 1+rng.IntN(catalogSize), 1, "")
				}
				// One round in three ends in a checkout: carts live a few
				// rounds, long enough for a kill to find them.
				if round%3 == 2 && ctx.Err() == nil && s.products() > 0 {
					products, orders := s.products(), s.orderCount()
					s.checkOut(ctx, r.runID, fmt.Sprintf("lab-%s-%s-%d", r.runID, s.name, round))
					// Only an order placed changed stock: a checkout of a
					// cart lost with its replica places none.
					if s.orderCount() > orders {
						r.rec.mu.Lock()
						r.rec.stockChanges += products
						r.rec.mu.Unlock()
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(50+rng.IntN(100)) * time.Millisecond):
				}
			}
		})
	}
}

// browse opens the catalog page, as a browser would before adding: a GET
// nginx retries on another replica when the first dies under it.
func (s *shopper) browse(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/", nil)
	if err != nil {
		panic(err) // the URL and method are ours
	}
	s.do(req, "browses the catalog", false)
}

// orderCount is how many orders the shopper placed.
func (s *shopper) orderCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.orders)
}

// KindLoss is one row of a chaos run's report: what the kills cost one
// kind of state, and why.
type KindLoss struct {
	Kind string // "carts lost", "photos lost", ...
	// Lost counts it; -1 when this run could not measure it.
	Lost int
	Why  string
}

// chaosLosses is the chaos report: one row per kind of state, from the
// last look (a look that no expectation asked of receipts or reports is
// taken now, so every row is measured).
func (r *runner) chaosLosses() []KindLoss {
	o := r.obs
	if o == nil {
		return nil
	}
	var rows []KindLoss
	t := tally(o.carts)
	rows = append(rows, KindLoss{"carts lost", t.Lost + t.Wrong, fmt.Sprintf("%d of %d carts intact%s: a kill -9 takes every session in that replica's memory along", t.Intact, len(o.carts), o.firstProblem())})
	if t.Lost+t.Wrong == 0 {
		rows[0].Why = fmt.Sprintf("%d of %d carts intact: the sessions live outside the replicas", t.Intact, len(o.carts))
	}
	lostPhotos := 0
	var photos []string
	for _, p := range o.photos {
		served := len(p.Answers) > 0
		for _, a := range p.Answers {
			served = served && a == photoServed
		}
		if !served {
			lostPhotos++
		}
		photos = append(photos, p.String())
	}
	why := strings.Join(photos, "; ")
	switch {
	case len(o.photos) == 0:
		lostPhotos, why = -1, "nobody posted a review with a photo"
	case lostPhotos > 0:
		why += ": a photo on a replica's own disk is gone once that replica is replaced with an empty one"
	}
	rows = append(rows, KindLoss{"photos lost", lostPhotos, why})

	rl := o.receipts()
	never := len(rl.never) + len(rl.pending)
	why = rl.String()
	if never > 0 {
		why += ": a receipt job in a replica's memory dies with it, and an order whose session died cannot be read by its owner"
	}
	rows = append(rows, KindLoss{"receipts never made", never, why})

	missed, owed := 0, 0
	var seen []string
	for _, w := range o.watchers {
		owed += w.Owed
		if w.Saw < w.Owed {
			missed += w.Owed - w.Saw
		}
		seen = append(seen, w.String())
	}
	why = strings.Join(seen, "; ")
	switch {
	case r.cfg.Live == "redis" && missed > 0:
		why += ": every event is in the Redis Stream before its checkout is answered, and a retried checkout announces its stock again, " +
			"so a miss is news: most likely events Redis did not take in time (a replica's log says \"live events delayed\") in a replica that died before it could append them"
	case r.cfg.Live == "redis":
		why += ": every event is in the Redis Stream before its checkout is answered, and a tab resumes from the Stream on any replica"
	case missed > 0:
		why += ": with live updates local to each replica a tab sees only its replica's events, and its history dies with it"
	}
	if len(o.watchers) == 0 {
		missed, why = -1, "nobody watched stock"
	}
	rows = append(rows, KindLoss{"events missed", missed, why})

	pl := o.reports()
	dup := pl.duplicated()
	why = pl.String()
	if dup > 0 {
		why = fmt.Sprintf("%d of %d periods had more than one low-stock report: every replica runs its own timer", dup, len(pl.periods))
	}
	rows = append(rows, KindLoss{"reports duplicated", dup, why})

	failed := o.failedRequests()
	why = fmt.Sprintf("requests with no answer or a 5xx while replicas died: %d; shopper actions given up after every retry (or on a 4xx): %d", failed, o.gaveUp)
	if failed > 0 && o.gaveUp == 0 {
		why += ": nginx retried the GETs on another replica, the shoppers the forms (an add widens what the judge accepts, a checkout keeps its idempotency key)"
	}
	rows = append(rows, KindLoss{"requests failed", o.gaveUp, why})
	return rows
}

// writeLosses prints a chaos run's rows: one per kind of state.
func writeLosses(w io.Writer, rows []KindLoss) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nwhat the kills cost, by kind of state:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range rows {
		n := strconv.Itoa(l.Lost)
		if l.Lost < 0 {
			n = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", l.Kind, n, l.Why)
	}
	tw.Flush()
}
