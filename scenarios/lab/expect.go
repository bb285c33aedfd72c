package lab

// The expectation table: what may follow "expect", one entry per form,
// each with its help, an example, its pattern and how the judge checks it.
// Expectations are evaluated where they stand, against a fresh look at
// every shopper's cart; consecutive expectations share one look.
//
// Two words are kept apart everywhere (story, tables, expectations):
//   - a failed request is one HTTP request that got no answer or a 5xx;
//     shoppers retry those, so a failed request is often invisible to them;
//   - a gave-up shopper action is an add that still failed after every
//     retry (or got a 4xx): the shopper knows its click did not count.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Expectation is one parsed "expect" line.
type Expectation struct {
	Text    string // what follows "expect", without "when": "cart of alice is 2"
	Shopper string // cart of NAME
	Replica string // traffic on shopN
	Count   int    // cart of NAME is N
	Verdict string // cart of NAME is intact|lost|wrong
	Status  int    // [no] status NNN
	// Percentile and Below: pNN below D; Phase: only the requests since
	// the previous look (the previous expectation, or the start).
	Percentile int
	Below      time.Duration
	Phase      bool
	form       *expectForm
}

// expectForm is one entry of the expectation table.
type expectForm struct {
	Usage   string // what follows "expect", placeholders in capitals
	Help    string
	Example string // a whole line: "expect carts intact"
	Pattern *regexp.Regexp
	Also    []string                               // phrases people write for it: "p99 under D"
	Parse   func(m []string, e *Expectation) error // nil: nothing to parse
	// Check judges the observation: whether the expectation holds, and
	// what was seen, in words, either way.
	Check func(o *observation, e *Expectation) (ok bool, observed string)
}

// watchersMissed reports whether any watcher missed events, and what
// every watcher saw.
func watchersMissed(o *observation) (bool, string) {
	if len(o.watchers) == 0 {
		return false, "nobody watches stock"
	}
	missed := false
	var seen []string
	for _, w := range o.watchers {
		missed = missed || w.missing()
		seen = append(seen, w.String())
	}
	return missed, strings.Join(seen, "; ")
}

// expectations is the expectation table, in the order docs/scenarios.md
// lists it.
var expectations = []*expectForm{
	{
		Usage:   "carts intact",
		Help:    "Every shopper's cart, read once through every live replica, holds what the shopper put in. An add whose answer never came may or may not have counted; either is intact.",
		Example: "expect carts intact",
		Pattern: regexp.MustCompile(`^carts intact$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			t := tally(o.carts)
			return len(o.carts) > 0 && t.Intact == len(o.carts), o.cartsSeen()
		},
	},
	{
		Usage:   "lost carts",
		Help:    "At least one cart is lost: a read found no session, or the shop started a new one for the shopper.",
		Example: "expect lost carts when store=memory",
		Pattern: regexp.MustCompile(`^lost carts$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			return tally(o.carts).Lost > 0, o.cartsSeen()
		},
	},
	{
		Usage:   "lost updates",
		Help:    "At least one cart survived but holds fewer of some product than the shopper surely added: two writes read the same session and the second overwrote the first.",
		Example: "expect lost updates when lock=off",
		Pattern: regexp.MustCompile(`^lost updates$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			t := tally(o.carts)
			return t.Fewer > 0, fmt.Sprintf("%d of %d carts with lost updates; %s", t.Fewer, len(o.carts), o.cartsSeen())
		},
	},
	{
		Usage:   "cart of NAME is N|intact|lost|wrong",
		Help:    "NAME's cart: every read counts N items, or the judge's verdict on it is intact, lost or wrong.",
		Example: "expect cart of alice is 2",
		Pattern: regexp.MustCompile(`^cart of (\S+) is (\S+)$`),
		Parse: func(m []string, e *Expectation) error {
			e.Shopper = m[1]
			switch m[2] {
			case Intact, Lost, Wrong:
				e.Verdict = m[2]
				return nil
			}
			n, err := count(m[2], "item count", 0, 100000)
			if err != nil {
				return fmt.Errorf("cart of %s is %q: want a number of items, intact, lost or wrong", m[1], m[2])
			}
			e.Count = n
			return nil
		},
		Check: func(o *observation, e *Expectation) (bool, string) {
			i := slices.IndexFunc(o.carts, func(v CartVerdict) bool { return v.Shopper == e.Shopper })
			if i < 0 {
				return false, fmt.Sprintf("no shopper named %s", e.Shopper)
			}
			v := o.carts[i]
			seen := fmt.Sprintf("cart of %s is %s, reads counted %v", v.Shopper, v.Verdict, v.Counts)
			if v.Why != "" {
				seen += ": " + v.Why
			}
			if e.Verdict != "" {
				return v.Verdict == e.Verdict, seen
			}
			ok := len(v.Counts) > 0 && v.Verdict != Lost
			for _, c := range v.Counts {
				ok = ok && c == e.Count
			}
			return ok, seen
		},
	},
	{
		Usage:   "traffic on shopN",
		Help:    "shopN answered at least one request.",
		Example: "expect traffic on shop4",
		Pattern: regexp.MustCompile(`^traffic on (\S+)$`),
		Parse:   parseReplica,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.servedBy(e.Replica)
			return n > 0, fmt.Sprintf("%s served %s", e.Replica, plural(n, "request"))
		},
	},
	{
		Usage:   "no traffic on shopN",
		Help:    "shopN answered no request: under sticky routing a replica added later gets no shopper who was already pinned elsewhere.",
		Example: "expect no traffic on shop4 when lb=sticky",
		Pattern: regexp.MustCompile(`^no traffic on (\S+)$`),
		Parse:   parseReplica,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.servedBy(e.Replica)
			return n == 0, fmt.Sprintf("%s served %s", e.Replica, plural(n, "request"))
		},
	},
	{
		Usage:   "shopN served most requests",
		Help:    "shopN answered more than half of the requests that got an answer: the imbalance of sticky routing, where a replica keeps every shopper pinned to it.",
		Example: "expect shop1 served most requests when lb=sticky",
		Pattern: regexp.MustCompile(`^(\S+) served most requests$`),
		Also:    []string{"most requests on shopN", "shopN served the most requests", "imbalance on shopN"},
		Parse:   parseReplica,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n, all := o.servedBy(e.Replica), 0
			for _, q := range o.requests {
				if q.Replica != "" {
					all++
				}
			}
			return all > 0 && 2*n > all, fmt.Sprintf("%s served %d of %d answered requests (%s)", e.Replica, n, all, o.shares())
		},
	},
	{
		Usage:   "p99|p50 below D [in this phase]",
		Help:    "The 99th (or 50th) percentile of the shoppers' request latency is below D: over the whole run, or with \"in this phase\" over the requests since the previous expectation (or the start).",
		Example: "expect p99 below 500ms",
		Pattern: regexp.MustCompile(`^p(99|50) below (\S+?)( in this phase)?$`),
		Also:    []string{"p99 under D", "p99 < D", "p99 is below D", "p99 less than D", "latency below D", "p99 latency below D", "p50 under D"},
		Parse: func(m []string, e *Expectation) error {
			e.Percentile, _ = strconv.Atoi(m[1])
			d, err := time.ParseDuration(m[2])
			if err != nil || d < time.Millisecond || d > maxDuration {
				return fmt.Errorf("p%s below %q: want a duration from 1ms to 1m, e.g. 250ms", m[1], m[2])
			}
			e.Below, e.Phase = d, m[3] != ""
			return nil
		},
		Check: func(o *observation, e *Expectation) (bool, string) {
			reqs, over := o.requests, "the run"
			if e.Phase {
				reqs, over = o.requests[o.phaseFrom:], fmt.Sprintf("this phase (%.1f s on)", o.phaseAt.Seconds())
			}
			st := statsOf(reqs)
			p := st.P99
			if e.Percentile == 50 {
				p = st.P50
			}
			if len(reqs) == 0 {
				return false, fmt.Sprintf("no request over %s to measure", over)
			}
			return p < e.Below, fmt.Sprintf("p%d %s over %s (%s)", e.Percentile, ms(p), over, plural(len(reqs), "request"))
		},
	},
	{
		Usage:   "at most N guesses checked",
		Help:    "Of the passwords guessed (\"as NAME guess N passwords\"), at most N were checked (answered 422, wrong password) before the shop answered 429: the login limiter counted every guess, wherever it landed.",
		Example: "expect at most 5 guesses checked when store=redis",
		Pattern: regexp.MustCompile(`^at most (\S+) guesses checked$`),
		Parse:   parseCount,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n, all := o.guesses()
			return all > 0 && n <= e.Count, guessesSeen(n, all)
		},
	},
	{
		Usage:   "more than N guesses checked",
		Help:    "More than N guessed passwords were checked: a limiter in each replica's memory let each replica allow its own share.",
		Example: "expect more than 5 guesses checked when store=memory",
		Pattern: regexp.MustCompile(`^more than (\S+) guesses checked$`),
		Parse:   parseCount,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n, all := o.guesses()
			return n > e.Count, guessesSeen(n, all)
		},
	},
	{
		Usage:   "photo of NAME on every replica",
		Help:    "Every live replica serves NAME's review photo (200, the same bytes), asked through the load balancer until each has answered: the photo lives where all of them read it.",
		Example: "expect photo of alice on every replica when uploads=s3",
		Pattern: regexp.MustCompile(`^photo of (\S+) on every replica$`),
		Parse:   parsePhotoOf,
		Check: func(o *observation, e *Expectation) (bool, string) {
			p, ok := o.photo(e.Shopper)
			if !ok {
				return false, fmt.Sprintf("%s posted no photo", e.Shopper)
			}
			all := len(p.Answers) > 0
			for _, a := range p.Answers {
				all = all && a == photoServed
			}
			return all, p.String()
		},
	},
	{
		Usage:   "photo of NAME only on its writer",
		Help:    "Only the replica that took NAME's photo serves it; every other replica answers 404 with a page naming the writer's disk: the photo lives on one replica's disk.",
		Example: "expect photo of alice only on its writer when uploads=disk",
		Pattern: regexp.MustCompile(`^photo of (\S+) only on its writer$`),
		Parse:   parsePhotoOf,
		Check: func(o *observation, e *Expectation) (bool, string) {
			p, ok := o.photo(e.Shopper)
			if !ok {
				return false, fmt.Sprintf("%s posted no photo", e.Shopper)
			}
			good := p.Answers[p.Writer] == photoServed && len(p.Answers) > 1
			for name, a := range p.Answers {
				good = good && (name == p.Writer || a == photoMissing(p.Writer))
			}
			return good, p.String()
		},
	},
	{
		Usage:   "photo of NAME lost",
		Help:    "No replica serves NAME's photo, and every one answers 404 with a page naming the disk it was on: its writer was replaced with an empty disk.",
		Example: "expect photo of alice lost when uploads=disk",
		Pattern: regexp.MustCompile(`^photo of (\S+) lost$`),
		Parse:   parsePhotoOf,
		Check: func(o *observation, e *Expectation) (bool, string) {
			p, ok := o.photo(e.Shopper)
			if !ok {
				return false, fmt.Sprintf("%s posted no photo", e.Shopper)
			}
			lost := len(p.Answers) > 0
			for _, a := range p.Answers {
				lost = lost && a == photoMissing(p.Writer)
			}
			return lost, p.String()
		},
	},
	{
		Usage:   "no stale reads",
		Help:    "No read by another device (\"as NAME peek\") showed less than the shopper's acknowledged adds: every replica answered with the current cart, cached or not.",
		Example: "expect no stale reads",
		Pattern: regexp.MustCompile(`^no stale reads$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			return o.peeks > 0 && len(o.stale) == 0, o.staleSeen()
		},
	},
	{
		Usage:   "stale reads",
		Help:    "At least one read by another device showed less than the shopper's acknowledged adds: a replica answered from an outdated copy.",
		Example: "expect stale reads when cache=uninvalidated",
		Pattern: regexp.MustCompile(`^stale reads$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			return len(o.stale) > 0, o.staleSeen()
		},
	},
	{
		Usage:   "no failed requests",
		Help:    "No request got no answer or a 5xx, retries included: the cluster hid the fault even from the shoppers' browsers.",
		Example: "expect no failed requests",
		Pattern: regexp.MustCompile(`^no failed requests$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.failedRequests()
			return n == 0, failedSeen(n)
		},
	},
	{
		Usage:   "failed requests",
		Help:    "At least one request got no answer or a 5xx.",
		Example: "expect failed requests",
		Pattern: regexp.MustCompile(`^failed requests$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.failedRequests()
			return n > 0, failedSeen(n)
		},
	},
	{
		Usage:   "no gave-up shoppers",
		Help:    "No shopper gave up on an add: every click counted, if only after a retry.",
		Example: "expect no gave-up shoppers",
		Pattern: regexp.MustCompile(`^no gave-up shoppers$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			return o.gaveUp == 0, gaveUpSeen(o.gaveUp)
		},
	},
	{
		Usage:   "gave-up shoppers",
		Help:    "At least one shopper gave up on an add after its retries (or on a 4xx).",
		Example: "expect gave-up shoppers",
		Pattern: regexp.MustCompile(`^gave-up shoppers$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			return o.gaveUp > 0, gaveUpSeen(o.gaveUp)
		},
	},
	{
		Usage:   "NAME saw N events",
		Help:    "The watching shopper NAME (\"as NAME watch stock\") got exactly N distinct stock events. The judge first gives the events in flight up to 3 s to arrive.",
		Example: "expect bob saw 3 events",
		Pattern: regexp.MustCompile(`^` + reName + ` saw (\S+) (?:stock )?events?$`),
		Parse: func(m []string, e *Expectation) (err error) {
			e.Shopper = m[1]
			e.Count, err = count(m[2], "events", 0, 100000)
			return err
		},
		Check: func(o *observation, e *Expectation) (bool, string) {
			for _, w := range o.watchers {
				if w.Shopper == e.Shopper {
					return w.Saw == e.Count, w.String()
				}
			}
			return false, fmt.Sprintf("%s does not watch stock", e.Shopper)
		},
	},
	{
		Usage:   "missed events",
		Help:    "Some watching shopper missed stock events: it saw fewer than the lab's checkouts made while it watched, or the shop told it so (a missed notice: it resumed on a replica that did not have its history).",
		Example: "expect missed events when live=local",
		Pattern: regexp.MustCompile(`^missed events$`),
		Check:   func(o *observation, e *Expectation) (bool, string) { return watchersMissed(o) },
	},
	{
		Usage:   "no missed events",
		Help:    "Every watching shopper got every stock change made while it watched, and no missed notice: what a shared history (-live redis) gives a browser whose replica died.",
		Example: "expect no missed events when live=redis",
		Pattern: regexp.MustCompile(`^no missed events$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			missed, seen := watchersMissed(o)
			return !missed && len(o.watchers) > 0, seen
		},
	},
	{
		Usage:   "status NNN",
		Help:    "At least one response had status NNN (a 503 when the session store is down, say).",
		Example: "expect status 503",
		Pattern: regexp.MustCompile(`^status (\S+)$`),
		Parse:   parseStatus,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.withStatus(e.Status)
			return n > 0, fmt.Sprintf("%s with status %d", plural(n, "response"), e.Status)
		},
	},
	{
		Usage:   "no status NNN",
		Help:    "No response had status NNN: a shop that degrades answers 503, never 500.",
		Example: "expect no status 500",
		Pattern: regexp.MustCompile(`^no status (\S+)$`),
		Parse:   parseStatus,
		Check: func(o *observation, e *Expectation) (bool, string) {
			n := o.withStatus(e.Status)
			return n == 0, fmt.Sprintf("%s with status %d", plural(n, "response"), e.Status)
		},
	},
	{
		Usage:   "receipts ready",
		Help:    "Every order the shoppers placed (\"as NAME check out\") has its receipt: GET /orders/{id}/receipt, through its owner's browser, answers 200 within 40 s, past the 30 s in which a queued job whose replica died is finished by another.",
		Example: "expect receipts ready when jobs=queue",
		Pattern: regexp.MustCompile(`^receipts ready$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			l := o.receipts()
			return l.orders > 0 && l.ready == l.orders, l.String()
		},
	},
	{
		Usage:   "lost receipts",
		Help:    "At least one order's receipt never came: a replica restarted after a kill -9 says it was lost with its memory (410), or it was still pending after 40 s (the other replicas can only say which replica's memory held it).",
		Example: "expect lost receipts when jobs=memory",
		Pattern: regexp.MustCompile(`^lost receipts$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			l := o.receipts()
			return l.orders > 0 && l.ready < l.orders, l.String()
		},
	},
	{
		Usage:   "one report per period",
		Help:    "The outbox (GET /api/outbox?kind=low-stock) holds exactly one low-stock report for every period it has any for, whichever replica sent it.",
		Example: "expect one report per period when schedule=shared",
		Pattern: regexp.MustCompile(`^one report per period$`),
		Also:    []string{"one report each period", "exactly one report per period"},
		Check: func(o *observation, e *Expectation) (bool, string) {
			l := o.reports()
			return l.err == nil && len(l.periods) > 0 && l.duplicated() == 0, l.String()
		},
	},
	{
		Usage:   "duplicate reports",
		Help:    "At least one period has more than one low-stock report: every replica ran its own timer and sent its own.",
		Example: "expect duplicate reports when schedule=local",
		Pattern: regexp.MustCompile(`^duplicate reports$`),
		Check: func(o *observation, e *Expectation) (bool, string) {
			l := o.reports()
			return l.err == nil && l.duplicated() > 0, l.String()
		},
	},
}

func parsePhotoOf(m []string, e *Expectation) error {
	if !regexp.MustCompile(`^` + reName + `$`).MatchString(m[1]) {
		return fmt.Errorf("shopper name %q: want lower-case letters and digits, starting with a letter", m[1])
	}
	e.Shopper = m[1]
	return nil
}

func parseReplica(m []string, e *Expectation) error {
	if !reShopN.MatchString(m[1]) {
		return fmt.Errorf("%q is not a replica: want shopN", m[1])
	}
	e.Replica = m[1]
	return nil
}

func parseCount(m []string, e *Expectation) (err error) {
	e.Count, err = count(m[1], "guesses", 0, 1000)
	return err
}

func guessesSeen(checked, all int) string {
	return fmt.Sprintf("%d of %s checked, the rest refused with 429", checked, plural(all, "guessed password"))
}

func parseStatus(m []string, e *Expectation) error {
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 100 || n > 599 {
		return fmt.Errorf("status %q: want an HTTP status from 100 to 599", m[1])
	}
	e.Status = n
	return nil
}

// parseExpectation parses what follows "expect" (without "when").
func parseExpectation(rest string) (*Expectation, error) {
	for _, f := range expectations {
		m := f.Pattern.FindStringSubmatch(rest)
		if m == nil {
			continue
		}
		e := &Expectation{Text: rest, form: f}
		if f.Parse != nil {
			if err := f.Parse(m, e); err != nil {
				return nil, err
			}
		}
		return e, nil
	}
	var cands []candidate
	for _, f := range expectations {
		cands = append(cands, candidate{usage: f.Usage, example: f.Example})
		for _, a := range f.Also {
			cands = append(cands, candidate{usage: f.Usage, example: f.Example, also: a})
		}
	}
	return nil, unknownLine("expectation", "expect ", rest, cands)
}

func failedSeen(n int) string {
	return plural(n, "failed request") + " (no answer or 5xx)"
}

func gaveUpSeen(n int) string {
	return plural(n, "shopper action") + " given up after retries"
}

// plural is "1 item", "2 items", "0 items".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
