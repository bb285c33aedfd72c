package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statelab/shop/state"
)

// Options say how to run a script.
type Options struct {
	Config Config    // the configuration; zero fields take its profile's, then DefaultConfig's
	Driver Driver    // nil runs a local cluster (LocalDriver)
	Out    io.Writer // the narrative; nil discards it
	// Detect asks a running cluster (-target) for its store, policy,
	// profile and where each kind of state lives (/api/state) instead of
	// trusting Config: the expectations must match what runs.
	// The narrative then never speaks of starting a cluster.
	Detect bool
}

// Result is what a run observed and how it compares with the script's
// expectations.
type Result struct {
	Scenario string
	File     string // the script's path
	Source   string // the script as written
	Lesson   string
	Config   Config
	Duration time.Duration // from the cluster serving to the end
	Requests []Request
	Events   []Event
	Story    []Line        // the narrative as the terminal told it
	Carts    []CartVerdict // the last judgement of every shopper
	GaveUp   int           // shopper actions given up after their retries
	Peeks    int           // reads by another device (peek steps)
	// StaleReads are the reads that showed less than the shopper's
	// acknowledged writes.
	StaleReads []StaleRead
	Checks     []Check // every expectation, applying or not
	// Looks are the judge's looks at every cart, one per phase: a script
	// with expectations between its steps has several.
	Looks []Look
	// Losses are a chaos run's report: one row per kind of state ("chaos
	// every D" in the script); nil for other scripts.
	Losses []KindLoss
	// Differences name each expectation that did not hold, as
	// "file:line: expected X, observed Y".
	Differences []string
	Pass        bool // at least one expectation applied and all that applied held
}

// Look is one judgement of every cart, at the end of a phase: what the
// steps since the previous look did.
type Look struct {
	At    time.Duration
	Line  int      // the expectation's line that looked; 0 for the look at the end
	Steps []string // the steps of this phase that ran, as written
	Tally Tally
	Carts int
	// In this phase only: requests, failed ones, stale reads among the
	// reads by another device, and actions given up.
	Requests, Failed, Stale, Peeks, GaveUp int
}

// Stats summarize every request.
func (r *Result) Stats() Stats { return statsOf(r.Requests) }

// PerReplica summarizes the requests each replica answered.
func (r *Result) PerReplica() []ReplicaStats { return perReplica(r.Requests) }

// Tally counts the cart verdicts.
func (r *Result) Tally() Tally { return tally(r.Carts) }

// Expected is what the expectations that applied asked for:
// "lost carts; cart of alice is lost".
func (r *Result) Expected() string {
	var parts []string
	for _, c := range r.Checks {
		if c.Applies {
			parts = append(parts, c.Expected)
		}
	}
	return strings.Join(parts, "; ")
}

// Run runs a script under one configuration and judges it. An error means
// the scenario could not run (a cluster that did not start, a fault the
// driver cannot do); an outcome that differs from the expectation is not an
// error but a Result with Pass false.
func Run(ctx context.Context, s *Script, o Options) (*Result, error) {
	cfg := o.Config.withDefaults()
	d := o.Driver
	if d == nil {
		d = &LocalDriver{}
	}
	// A driver that cannot do a fault must say so before any load starts.
	if err := checkFaults(s, cfg, d); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	if cfg.LB == "noretry" {
		// lb=noretry follows readiness by reloading nginx, and a reload
		// closes the browsers' idle keep-alive connections: a POST sent
		// on one at that moment gets no answer. kube-proxy, which the
		// mode stands for, changes its endpoints without touching a
		// client's connection, so here each request opens its own.
		tr.DisableKeepAlives = true
	}
	r := &runner{
		s:        s,
		cfg:      cfg,
		d:        d,
		detect:   o.Detect,
		rec:      newRecorder(o.Out),
		tr:       tr,
		shoppers: map[string]*shopper{},
		watchers: map[string]*watcher{},
		runID:    fmt.Sprintf("%x", rand.Uint32()),
	}
	defer tr.CloseIdleConnections()
	err := r.run(ctx)
	if cerr := r.stopChaos(); cerr != nil && err == nil {
		err = cerr
	}
	r.stopLoad()
	if cerr := d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("lab: close cluster: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return r.result(), nil
}

// checkFaults asks a driver that can tell whether it can do every fault
// the script will ask under cfg.
func checkFaults(s *Script, cfg Config, d Driver) error {
	fc, ok := d.(FaultChecker)
	if !ok {
		return nil
	}
	for _, st := range s.Steps {
		if !st.When.Holds(cfg) {
			continue
		}
		for _, v := range st.form.verbs() {
			if err := fc.CheckFault(Fault{Do: v, Target: st.Target, Drain: st.Drain}); err != nil {
				return fmt.Errorf("%s:%d: %s: %w", s.File, st.Line, st.Text, err)
			}
		}
	}
	return nil
}

type runner struct {
	s      *Script
	cfg    Config
	d      Driver
	detect bool
	rec    *recorder
	tr     *http.Transport
	url    string
	end    time.Duration

	shoppers map[string]*shopper
	order    []string            // shoppers in order of appearance
	watchers map[string]*watcher // shoppers that watch stock (GET /events)

	loadWG     sync.WaitGroup
	loadCancel context.CancelFunc
	loadStart  int // len(rec.requests) when load began
	chaos      *chaos
	chaosRan   bool       // the script ran "chaos every D"
	losses     []KindLoss // its report, taken after the last look

	obs    *observation // the current judgement; nil after any action
	checks []Check
	// phaseFrom is where the current phase's requests begin (the index
	// after the previous look), phaseAt when it began.
	phaseFrom int
	phaseAt   time.Duration
	// phaseSteps are the steps run since the previous look; prev counts
	// what the recorder held then.
	phaseSteps                   []string
	prevStale, prevPeeks, prevGU int
	looks                        []Look
	lookLine                     int
	// runID makes the shoppers' account emails unique to this run: a
	// cluster the lab did not start (-target) keeps its accounts.
	runID string
}

func (r *runner) run(ctx context.Context) error {
	fmt.Fprintf(r.rec.out, "%s — %s\n", r.s.Name, r.s.Lesson)
	defer r.stopWatchers()
	for i := range r.s.Steps {
		st := &r.s.Steps[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if st.Expect == nil {
			if !st.When.Holds(r.cfg) {
				continue
			}
			r.obs = nil
			r.phaseSteps = append(r.phaseSteps, st.Text)
		} else {
			r.lookLine = st.Line
		}
		if err := st.form.Run(ctx, r, st); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", r.s.File, st.Line, st.Text, err)
		}
	}
	if r.obs == nil {
		r.lookLine = 0
		r.judge(ctx)
	}
	if r.chaosRan {
		r.losses = r.chaosLosses()
	}
	r.end = r.rec.since()
	return nil
}

// start brings the cluster up (or, with -target, finds it) and starts the
// clock.
func (r *runner) start(ctx context.Context, n int) error {
	setup := Setup{Replicas: n, Config: r.cfg, Drains: map[string]time.Duration{}}
	for _, st := range r.s.Steps {
		if !st.When.Holds(r.cfg) {
			continue
		}
		if st.Drain.Set && st.Target != "" {
			setup.Drains[st.Target] = st.Drain.Duration
		}
		setup.Needs.add(st.form.Needs)
	}
	if !r.detect {
		r.rec.say(0, fmt.Sprintf("starting %d replicas (%s)", n, r.cfg.Spelled()))
	}
	if et, ok := r.d.(EventTeller); ok {
		et.TellEvents(func(text string) { r.rec.event("%s", text) })
	}
	url, err := r.d.Start(ctx, setup)
	if err != nil {
		return err
	}
	r.url = strings.TrimRight(url, "/")
	if r.detect {
		if err := r.detectConfig(ctx); err != nil {
			return err
		}
	}
	// The clock starts when the cluster serves: the timeline shows the
	// scenario, not the boot.
	r.rec.restart()
	if r.detect {
		r.rec.event("the running cluster at %s answers", r.url)
		r.rec.say(0, fmt.Sprintf("it says %s; the script asked for %d replicas, the lab did not start them", r.cfg, n))
		return nil
	}
	r.rec.event("cluster serves")
	r.rec.say(0, fmt.Sprintf("nginx at %s (%s)", r.url, r.cfg))
	return nil
}

// target resolves a step's target: "replica of alice" is the replica that
// served alice's last add.
func (r *runner) target(st *Step) (string, error) {
	if st.Shopper == "" {
		return st.Target, nil
	}
	if w := r.watchers[st.Shopper]; w != nil && w.replica() != "" {
		return w.replica(), nil // the replica holding its stream
	}
	s := r.shoppers[st.Shopper]
	if s == nil || s.lastReplica() == "" {
		return "", fmt.Errorf("%s has not shopped yet: no replica of %s", st.Shopper, st.Shopper)
	}
	return s.lastReplica(), nil
}

// fault hands a fault to the driver.
func (r *runner) fault(ctx context.Context, f Fault) error {
	return r.d.Fault(ctx, f)
}

func (r *runner) waitLoad() {
	r.loadWG.Wait()
	r.stopLoad()
	r.rec.mu.Lock()
	n := len(r.rec.requests) - r.loadStart
	r.rec.mu.Unlock()
	r.rec.say(r.rec.since(), fmt.Sprintf("load done: %d requests", n))
}

// detectConfig reads the running cluster's configuration: with -target
// the expectations must follow what runs, not what the flags claim.
func (r *runner) detectConfig(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/api/session", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: r.tr, Timeout: requestTimeout}).Do(req)
	if err != nil {
		return fmt.Errorf("target %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	var v cartView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("target %s: GET /api/session: %s", r.url, resp.Status)
	}
	if v.Store != "" {
		r.cfg.Store = v.Store
	}
	if lb := resp.Header.Get("X-LB-Policy"); lb != "" {
		r.cfg.LB = lb
	}
	return r.detectState(ctx)
}

// detectState reads the rest of the running cluster's configuration from
// its state audit (/api/state): the profile it names, and where uploads,
// jobs, the schedule and live updates live. A shop without the audit
// leaves them as the flags said.
func (r *runner) detectState(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/api/state", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: r.tr, Timeout: requestTimeout}).Do(req)
	if err != nil {
		return fmt.Errorf("target %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var audit struct {
		Profile string `json:"profile"`
		Kinds   []struct {
			Kind  string `json:"kind"`
			Lives string `json:"lives"`
		} `json:"kinds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&audit); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("target %s: GET /api/state: %s", r.url, resp.Status)
	}
	r.cfg.Profile = ""
	if slices.Contains(ConfigValues("profile"), audit.Profile) {
		r.cfg.Profile = audit.Profile
	}
	// Each kind's place, in the lab's key and value: the replica's own
	// memory or disk is the first value of each key, a shared place the
	// second.
	keys := map[string]struct{ key, here, shared string }{
		"uploads":  {"uploads", "disk", "s3"},
		"jobs":     {"jobs", "memory", "queue"},
		"schedule": {"schedule", "local", "shared"},
		"live":     {"live", "local", "redis"},
	}
	for _, k := range audit.Kinds {
		m, ok := keys[k.Kind]
		if !ok || k.Lives == "" {
			continue
		}
		if k.Lives == state.Replica {
			r.cfg.set(m.key, m.here)
		} else {
			r.cfg.set(m.key, m.shared)
		}
	}
	return nil
}

func (r *runner) shopper(name string) *shopper {
	s := r.shoppers[name]
	if s == nil {
		s = newShopper(name, r.url, r.tr, r.rec)
		r.shoppers[name] = s
		r.order = append(r.order, name)
	}
	return s
}

// peek reads each shopper's cart from its other device, st.Times times.
func (r *runner) peek(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	stale := 0
	for range st.Times {
		count, acked, replica, source, err := s.peek(ctx)
		if err != nil {
			r.rec.say(r.rec.since(), fmt.Sprintf("%s's other device cannot read the cart: %v", s.name, err))
			continue
		}
		var sr *StaleRead
		if count < acked {
			sr = &StaleRead{At: r.rec.since(), Shopper: s.name, Replica: replica, Source: source, Count: count, Acked: acked}
			stale++
			r.rec.markStale(s.name)
		}
		r.rec.peeked(sr)
	}
	r.rec.say(r.rec.since(), fmt.Sprintf("%s's other device (the session token, no version) reads the cart %d times: %d stale", s.name, st.Times, stale))
	return nil
}

func (r *runner) add(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	total := st.Tabs * st.Times
	if total == 1 {
		if s.add(ctx, st.Product, st.N, st.Note) {
			r.rec.say(r.rec.since(), fmt.Sprintf("%s adds %d of product %d → %s", s.name, st.N, st.Product, s.lastReplica()))
		} else {
			r.rec.say(r.rec.since(), fmt.Sprintf("%s adds %d of product %d → gave up: the add did not count", s.name, st.N, st.Product))
		}
		return s.productMissing()
	}
	// Tabs share the browser's cookie jar; without a session yet, every
	// tab would start its own. A browser opens the first tab first.
	first := ""
	if !s.hasSession() {
		s.add(ctx, st.Product, st.N, st.Note)
		total--
		first = ", the first alone (it makes the session the tabs share)"
		if err := s.productMissing(); err != nil {
			return err
		}
	}
	r.rec.say(r.rec.since(), fmt.Sprintf("%s adds %d of product %d in %d tabs at once: %s%s", s.name, st.N, st.Product, st.Tabs, plural(st.Tabs*st.Times, "write"), first))
	var next sync.Mutex
	left := total
	var wg sync.WaitGroup
	for range st.Tabs {
		wg.Go(func() {
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				s.add(ctx, st.Product, st.N, st.Note)
			}
		})
	}
	wg.Wait()
	return s.productMissing()
}

// logIn, logOut, checkOut and guess run the account steps and tell them.
func (r *runner) logIn(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	status, replica := s.logIn(ctx, r.runID)
	r.rec.say(r.rec.since(), fmt.Sprintf("%s logs in → %s", s.name, answered(status, replica)))
	return nil
}

func (r *runner) logOut(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	status, replica := s.logOut(ctx)
	r.rec.say(r.rec.since(), fmt.Sprintf("%s logs out → %s", s.name, answered(status, replica)))
	return nil
}

func (r *runner) checkOut(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	products := s.products()
	status, replica := s.checkOut(ctx, r.runID, fmt.Sprintf("lab-%s-%s-%d", r.runID, s.name, st.Line))
	if status == http.StatusSeeOther {
		// Each product in the order changed its stock: one event each.
		r.rec.mu.Lock()
		r.rec.stockChanges += products
		r.rec.mu.Unlock()
	}
	r.rec.say(r.rec.since(), fmt.Sprintf("%s checks out → %s", s.name, answered(status, replica)))
	return nil
}

func (r *runner) guess(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	by := map[int]int{}
	for i := range st.N {
		by[s.guess(ctx, r.runID, i)]++
	}
	r.rec.event("login burst: %s for %s", plural(st.N, "wrong password"), s.name)
	r.rec.say(r.rec.since(), fmt.Sprintf("%s: %d checked and refused (422), %d not checked (429)%s", s.name, by[422], by[429], others(by)))
	return nil
}

// answered is "303 by shop2", or "no answer".
func answered(status int, replica string) string {
	if status == 0 {
		return "no answer"
	}
	if replica == "" {
		return fmt.Sprint(status)
	}
	return fmt.Sprintf("%d by %s", status, replica)
}

// others names the statuses other than 422 and 429: "; 503×2".
func others(by map[int]int) string {
	rest := map[int]int{}
	for c, n := range by {
		if c != 422 && c != 429 {
			rest[c] = n
		}
	}
	if len(rest) == 0 {
		return ""
	}
	return "; also " + StatusText(rest)
}

func (r *runner) startLoad(ctx context.Context, n int, d time.Duration) {
	r.rec.mu.Lock()
	r.loadStart = len(r.rec.requests)
	r.rec.mu.Unlock()
	r.rec.event("load: %d shoppers for %s", n, d)
	ctx, cancel := context.WithCancel(ctx)
	r.loadCancel = cancel
	deadline := time.Now().Add(d)
	for i := range n {
		s := r.shopper(fmt.Sprintf("shopper%02d", len(r.order)+1))
		// Seeded per shopper: the same script asks for the same carts.
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		r.loadWG.Go(func() {
			// The deadline stops new actions only: cutting a request short
			// would count as a failure the shop did not cause.
			for time.Now().Before(deadline) && ctx.Err() == nil {
				s.add(ctx, 1+rng.IntN(catalogSize), 1+rng.IntN(2), "")
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(20+rng.IntN(40)) * time.Millisecond):
				}
			}
		})
	}
}

func (r *runner) stopLoad() {
	if r.loadCancel != nil {
		r.loadCancel()
		r.loadWG.Wait()
		r.loadCancel = nil
	}
}

// judge reads every shopper's cart, one shopper after the other: a read
// must not share the round robin with another shopper's.
func (r *runner) judge(ctx context.Context) {
	reads := r.d.LiveReplicas()
	if reads < 1 {
		reads = 1
	}
	o := &observation{
		receipts: sync.OnceValue(func() receiptsLook { return r.lookReceipts(ctx) }),
		reports:  sync.OnceValue(func() reportsLook { return r.lookReports(ctx) }),
	}
	for _, name := range r.order {
		o.carts = append(o.carts, judgeShopper(ctx, r.shoppers[name], reads))
	}
	for _, name := range r.order {
		if s := r.shoppers[name]; s.hasPhoto() {
			p := r.lookAtPhoto(ctx, s)
			o.photos = append(o.photos, p)
			r.rec.say(r.rec.since(), "looked at the "+p.String())
		}
	}
	r.rec.mu.Lock()
	o.requests = append([]Request(nil), r.rec.requests...)
	o.gaveUp = r.rec.gaveUp
	o.peeks = r.rec.peeks
	o.stale = append([]StaleRead(nil), r.rec.stale...)
	r.rec.mu.Unlock()
	o.phaseFrom, o.phaseAt = r.phaseFrom, r.phaseAt
	look := Look{At: r.rec.since(), Line: r.lookLine, Steps: r.phaseSteps, Tally: tally(o.carts), Carts: len(o.carts),
		Requests: len(o.requests) - o.phaseFrom, Stale: len(o.stale) - r.prevStale, Peeks: o.peeks - r.prevPeeks, GaveUp: o.gaveUp - r.prevGU}
	for _, q := range o.requests[o.phaseFrom:] {
		if q.Failed() {
			look.Failed++
		}
	}
	r.looks = append(r.looks, look)
	r.phaseSteps, r.prevStale, r.prevPeeks, r.prevGU = nil, len(o.stale), o.peeks, o.gaveUp
	r.phaseFrom, r.phaseAt = len(o.requests), r.rec.since()
	o.watchers = r.judgeWatchers()
	r.obs = o
	t := tally(o.carts)
	r.rec.say(r.rec.since(), fmt.Sprintf("judged %d carts (%d reads each): %s", len(o.carts), reads, t))
}

func (r *runner) expect(ctx context.Context, st *Step) {
	e := st.Expect
	c := Check{Line: st.Line, Text: st.Text, Expected: e.Text, Applies: st.When.Holds(r.cfg)}
	if !c.Applies {
		r.checks = append(r.checks, c)
		return
	}
	if r.obs == nil {
		r.judge(ctx)
	}
	c.OK, c.Observed = e.form.Check(r.obs, e)
	r.checks = append(r.checks, c)
	mark := "✓"
	if !c.OK {
		mark = "✗"
	}
	r.rec.say(r.rec.since(), fmt.Sprintf("%s %s — observed %s", mark, st.Text, c.Observed))
}

func (r *runner) result() *Result {
	res := &Result{
		Scenario: r.s.Name,
		File:     r.s.File,
		Source:   r.s.Source,
		Lesson:   r.s.Lesson,
		Config:   r.cfg,
		Duration: r.end,
		Checks:   r.checks,
		Looks:    r.looks,
	}
	r.rec.mu.Lock()
	res.Requests = append([]Request(nil), r.rec.requests...)
	res.Events = append([]Event(nil), r.rec.events...)
	res.Story = append([]Line(nil), r.rec.story...)
	res.GaveUp = r.rec.gaveUp
	res.Peeks = r.rec.peeks
	res.StaleReads = append([]StaleRead(nil), r.rec.stale...)
	r.rec.mu.Unlock()
	if r.obs != nil {
		res.Carts = r.obs.carts
	}
	res.Losses = r.losses
	applied := 0
	for _, c := range r.checks {
		if !c.Applies {
			continue
		}
		applied++
		if !c.OK {
			res.Differences = append(res.Differences, fmt.Sprintf("%s:%d: expected %s, observed %s", r.s.File, c.Line, c.Expected, c.Observed))
		}
	}
	if applied == 0 {
		res.Differences = append(res.Differences, fmt.Sprintf("%s: no expectation applies to %s", r.s.File, r.cfg))
	}
	res.Pass = len(res.Differences) == 0
	return res
}
