package cluster_test

// The seeds' last test as a cluster test: "can you kill -9 any instance at
// any time without user impact?" Three replicas started with -profile
// stateful or -profile stateless behind real nginx; a random one is killed
// with kill -9 and replaced empty (memory and upload folder) every ~2 s,
// while one client per kind of state checks its kind through nginx. Before
// every kill the test reads /api/state from every replica, and what the
// victim said a kill would lose is compared, kind by kind, with what the
// clients saw the kill lose: the audit must tell the truth.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statelab/shop/live"
	"github.com/statelab/shop/scenarios/cluster"
)

const (
	// chaosKills is how many replicas each profile's run kills: every one
	// of the three at least once, in random order.
	chaosKills = 5
	// chaosEvery is the least time between two kills.
	chaosEvery = 2 * time.Second
	// chaosSettle bounds every wait for the clients or the cluster to
	// catch up: generous for a loaded machine.
	chaosSettle = 40 * time.Second
)

// chaosProducts are what buyers buy: products with stock to spare.
var chaosProducts = []int{1, 3, 4, 7, 9, 10}

// TestChaosThroughNginx runs the chaos under both profiles. Stateless must
// lose nothing of any kind and tell so; stateful loses, and every loss must
// be one its victim's /api/state announced.
func TestChaosThroughNginx(t *testing.T) {
	t.Parallel()
	for _, profile := range []string{"stateful", "stateless"} {
		t.Run(profile, func(t *testing.T) {
			t.Parallel()
			runChaos(t, profile)
		})
	}
}

// auditKind is one kind of /api/state.
type auditKind struct {
	Kind         string `json:"kind"`
	Lives        string `json:"lives"`
	HeldHere     int    `json:"held_here"`
	LostIfKilled bool   `json:"lost_if_killed"`
	Loses        string `json:"loses"` // the loss in words, when not a count
}

// audit is a replica's /api/state.
type audit struct {
	Replica string      `json:"replica"`
	Profile string      `json:"profile"`
	Kinds   []auditKind `json:"kinds"`
	Loses   string      `json:"loses"`
}

// kind is the named kind's row; a missing row is the zero row, which
// claims nothing is held or lost.
func (a audit) kind(name string) auditKind {
	for _, k := range a.Kinds {
		if k.Kind == name {
			return k
		}
	}
	return auditKind{Kind: name}
}

// loses says whether the audit announces a loss of the kind.
func (a audit) loses(kind string) bool {
	k := a.kind(kind)
	return k.LostIfKilled && (k.HeldHere > 0 || k.Loses != "")
}

// chaosKill is one kill: what the clients and the victim's /api/state
// said just before it.
type chaosKill struct {
	n       int
	victim  string
	stateAt time.Time // when the victim's /api/state answered
	at      time.Time // just before the kill -9
	state   audit     // the victim's
	carts   []string  // shoppers whose cart the victim held (answered their last read)
	photos  []string  // photos still served, written to the victim
	limits  int       // the login-limit client's attempts counted on the victim
	stream  bool      // the watcher's stream was on the victim
	// After the kill, by the clients that check at once.
	photosLost []string
	limitReset int // wrong passwords checked again before the 429
}

// chaosLedger counts every request the clients send through nginx that
// fails (no answer, or a 5xx), the answers cut short, and the POSTs sent
// again.
type chaosLedger struct {
	start time.Time
	mu    sync.Mutex
	// failed counts by method; failures says which, for the log.
	failed   map[string]int
	failures []string
	// cut counts answers whose body broke off: the replica died after its
	// first bytes, which nginx had passed on, so nginx could not retry.
	cut    int
	resent int
}

func (l *chaosLedger) do(s *shopper, method, path string, form url.Values) (reply, error) {
	r, err := s.do(method, path, form)
	switch {
	case err != nil && r.status != 0:
		l.note(&l.cut, method, path, fmt.Sprintf("%d, then %v", r.status, err))
	case err != nil:
		l.fail(method, path, r.status, err)
	case r.status >= 500:
		// The shop's own answer says why; nginx's names no replica.
		l.fail(method, path, r.status, fmt.Errorf("from %q: %s", r.servedBy, pageText(r.body, 160)))
	}
	return r, err
}

var tagRE = regexp.MustCompile(`(?s)<head.*?</head>|<[^>]*>`)

// pageText is the start of a page's text, for a log line.
func pageText(body string, n int) string {
	text := strings.Join(strings.Fields(tagRE.ReplaceAllString(body, " ")), " ")
	return text[:min(n, len(text))]
}

func (l *chaosLedger) fail(method, path string, status int, err error) {
	l.mu.Lock()
	l.failed[method]++
	l.mu.Unlock()
	what := strconv.Itoa(status)
	if err != nil {
		what = err.Error()
	}
	l.note(nil, method, path, what)
}

// note records a failure for the log, counting it in n when not nil.
func (l *chaosLedger) note(n *int, method, path, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n != nil {
		*n++
	}
	l.failures = append(l.failures, fmt.Sprintf("%s %s at %.1fs: %s", method, path, time.Since(l.start).Seconds(), what))
}

// post sends a form until it is answered below 500, the same form every
// time: an add keeps its idempotency key, a checkout its form's. A POST
// nginx sent to a replica that died is not retried by nginx; the client
// must, and the shop must apply it once. ok is false when it never was.
func (l *chaosLedger) post(s *shopper, path string, form url.Values) (r reply, ok bool) {
	deadline := time.Now().Add(chaosSettle)
	for {
		r, err := l.do(s, http.MethodPost, path, form)
		if err == nil && r.status < 500 {
			return r, true
		}
		if time.Now().After(deadline) {
			return r, false
		}
		l.mu.Lock()
		l.resent++
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// cartShopper is the sessions' client: it adds one item at a time and
// reads its cart back after each add. It follows its session by the
// session cookie's token: a cart is lost when the shop gives the browser a
// new session because the replica it reached does not know its token.
type cartShopper struct {
	s    *shopper
	name string

	mu       sync.Mutex
	token    string    // the session holding the acknowledged items
	home     string    // the replica that acknowledged the last of them: with memory sessions, the one holding them
	expected int       // items the shop acknowledged in that session
	born     time.Time // when the first of them was
	// lapStart is when its last finished round began: the kill loop waits
	// for a round begun after the last kill before it looks.
	lapStart time.Time
	losses   []cartLoss
	misreads []string // reads that showed less, the session kept: served by a replica that does not hold it
	wrong    []string // reads showing more than was acknowledged
	gaveUp   int
}

// cartLoss is a cart whose session the browser had to give up.
type cartLoss struct {
	from string    // the replica that held it
	born time.Time // when its first item was acknowledged
	at   time.Time
	had  int
}

// sessionToken is the token of the browser's session cookie, without the
// version redis sessions add.
func (c *cartShopper) sessionToken() string {
	t, _, _ := strings.Cut(c.s.cookie("session"), ".")
	return t
}

// follow notes a new session: the items of the old one are lost to this
// browser. c.mu held.
func (c *cartShopper) follow() {
	t := c.sessionToken()
	if t == c.token {
		return
	}
	if c.expected > 0 {
		c.losses = append(c.losses, cartLoss{from: c.home, born: c.born, at: time.Now(), had: c.expected})
	}
	c.token, c.expected = t, 0
}

func (c *cartShopper) run(l *chaosLedger, stop <-chan struct{}, rng *mrand.Rand) {
	for !stopped(stop) {
		began := time.Now()
		form := addForm(1+rng.IntN(24), 1)
		form.Set("idempotency_key", rand.Text())
		r, ok := l.post(c.s, "/cart/items", form)
		acked := ok && r.status == http.StatusSeeOther
		c.mu.Lock()
		c.follow()
		if acked {
			if c.expected == 0 {
				c.born = time.Now()
			}
			c.expected++
			c.home = r.servedBy
		} else {
			c.gaveUp++
		}
		c.mu.Unlock()
		read, err := l.do(c.s, http.MethodGet, "/api/session", nil)
		var a apiSession
		if err == nil && read.status == http.StatusOK {
			err = json.Unmarshal([]byte(read.body), &a)
		}
		c.mu.Lock()
		c.follow()
		switch {
		case err != nil || read.status != http.StatusOK:
			// Not judged: the ledger counts the failed read.
		case !acked:
			c.expected = a.Cart.Count // whether it counted is unknown: start again from what is there
		case a.Cart.Count < c.expected:
			c.misreads = append(c.misreads, fmt.Sprintf("%s's cart of %d acknowledged by %s read as %d on %s", c.name, c.expected, c.home, a.Cart.Count, a.Replica))
		case a.Cart.Count > c.expected:
			c.wrong = append(c.wrong, fmt.Sprintf("%s's cart shows %d items on %s, %d were acknowledged", c.name, a.Cart.Count, a.Replica, c.expected))
			c.expected = a.Cart.Count
		}
		c.lapStart = began
		c.mu.Unlock()
		pause(stop, rng, 30)
	}
}

// chaosOrder is one order a buyer placed, or whose placing it learnt of.
type chaosOrder struct {
	id    string // "" for an order placed by an attempt whose answer was lost (409 on the retry)
	units int    // the cart's count on its checkout page
	by    string // the replica that took it; "" when its answer was lost
	sent  time.Time
	acked time.Time // zero when the answer was lost
	ready bool      // the receipt was read (200)
	final int       // 410 (never coming) or 404 (its owner's session is gone); 0 while pending
}

// buyer is the jobs' client: it adds one item, checks out, and reads its
// orders' receipts until each is made, or will never be.
type buyer struct {
	s    *shopper
	name string

	mu     sync.Mutex
	orders []*chaosOrder
	gone   int // rounds whose cart was gone before the checkout (its replica died)
	errs   []string
}

func (b *buyer) run(l *chaosLedger, stop <-chan struct{}, rng *mrand.Rand) {
	for !stopped(stop) {
		b.round(l, rng)
		b.pollReceipts(l)
		pause(stop, rng, 50)
	}
}

func (b *buyer) round(l *chaosLedger, rng *mrand.Rand) {
	form := addForm(chaosProducts[rng.IntN(len(chaosProducts))], 1)
	form.Set("idempotency_key", rand.Text())
	if r, ok := l.post(b.s, "/cart/items", form); !ok || r.status != http.StatusSeeOther {
		b.fail("add: %d", r.status)
		return
	}
	page, err := l.do(b.s, http.MethodGet, "/checkout", nil)
	m := idempotencyKeyRE.FindStringSubmatch(page.body)
	if err != nil || page.status != http.StatusOK || m == nil {
		// The cart was lost since the add (a 303 to the empty cart):
		// nothing to check out.
		b.mu.Lock()
		b.gone++
		b.mu.Unlock()
		return
	}
	// The units the order will take from stock: one, unless a unit of a
	// round that found its checkout gone is still in the cart.
	units := 0
	if c := cartCountRE.FindStringSubmatch(page.body); c != nil {
		units = atoi(c[1])
	}
	sent := time.Now()
	checkout := url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {m[1]}}
	r, ok := l.post(b.s, "/checkout", checkout)
	b.mu.Lock()
	defer b.mu.Unlock()
	loc := r.header.Get("Location")
	switch {
	case !ok:
		b.errs = append(b.errs, fmt.Sprintf("%s: checkout never answered below 500 (last %d)", b.name, r.status))
	case r.status == http.StatusSeeOther && strings.HasPrefix(loc, "/orders/"):
		b.orders = append(b.orders, &chaosOrder{id: strings.TrimPrefix(loc, "/orders/"), units: units, by: r.servedBy, sent: sent, acked: time.Now()})
	case r.status == http.StatusConflict:
		// The first attempt placed the order on a replica that died with
		// its session: the retry, in a new session, may not see it.
		b.orders = append(b.orders, &chaosOrder{units: units, sent: sent})
	case r.status == http.StatusUnprocessableEntity:
		// The cart died with its session before the order was placed.
	default:
		b.errs = append(b.errs, fmt.Sprintf("%s: checkout answered %d %q", b.name, r.status, loc))
	}
}

func (b *buyer) fail(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, b.name+": "+fmt.Sprintf(format, args...))
}

// pollReceipts reads every pending receipt once; it says whether any is
// still pending.
func (b *buyer) pollReceipts(l *chaosLedger) (pending bool) {
	b.mu.Lock()
	var todo []*chaosOrder
	for _, o := range b.orders {
		if o.id != "" && !o.ready && o.final == 0 {
			todo = append(todo, o)
		}
	}
	b.mu.Unlock()
	for _, o := range todo {
		r, err := l.do(b.s, http.MethodGet, "/orders/"+o.id+"/receipt", nil)
		if err != nil {
			pending = true
			continue
		}
		b.mu.Lock()
		switch r.status {
		case http.StatusOK:
			o.ready = true
		case http.StatusGone, http.StatusNotFound:
			o.final = r.status
		case http.StatusAccepted:
			pending = true
		default:
			pending = true // a 5xx the ledger counted
		}
		b.mu.Unlock()
	}
	return pending
}

// stockWatcher is the live updates' client: one tab on /events through
// nginx that resumes with Last-Event-ID whenever its stream ends.
type stockWatcher struct {
	client *http.Client
	base   string

	mu      sync.Mutex
	current string // the replica holding the open stream; "" between streams
	lastID  string
	seen    map[[2]int]bool // (product, stock) of every stock event
	streams []*watchedStream
	changed time.Time // when seen last grew
}

type watchedStream struct {
	by     string
	opened time.Time
	missed bool // it began with a notice that events were missed
}

func (w *stockWatcher) run(ctx context.Context, l *chaosLedger, ready chan<- struct{}) {
	first := true
	for ctx.Err() == nil {
		w.mu.Lock()
		lastID := w.lastID
		w.mu.Unlock()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/events", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := w.client.Do(req)
		if ctx.Err() != nil {
			return
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			status := 0
			if resp != nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			l.fail(http.MethodGet, "/events", status, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		st := &watchedStream{by: resp.Header.Get("X-Served-By"), opened: time.Now()}
		w.mu.Lock()
		w.current = st.by
		w.streams = append(w.streams, st)
		w.mu.Unlock()
		w.read(resp, st, func() {
			if first {
				first = false
				close(ready)
			}
		})
		resp.Body.Close()
		w.mu.Lock()
		w.current = ""
		w.mu.Unlock()
	}
}

// read reads one stream until it ends.
func (w *stockWatcher) read(resp *http.Response, st *watchedStream, onReady func()) {
	readEvents(resp.Body, func(e event) {
		w.mu.Lock()
		if e.id != "" {
			w.lastID = e.id
		}
		switch e.typ {
		case live.TypeStock:
			if m := stockRE.FindStringSubmatch(e.data); m != nil {
				w.seen[[2]int{atoi(m[1]), atoi(m[2])}] = true
				w.changed = time.Now()
			}
		case live.TypeNotice:
			var n struct{ State string }
			if json.Unmarshal([]byte(e.data), &n) == nil && n.State == live.NoticeMissed {
				st.missed = true
			}
		}
		w.mu.Unlock()
		if e.typ == live.TypeReady {
			onReady()
		}
	})
}

// stock reads every product's stock through nginx.
func stock(t *testing.T, s *shopper) map[int]int {
	t.Helper()
	r := s.get("/api/stock")
	var v struct{ Stock map[string]int }
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /api/stock: %d %v", r.status, err)
	}
	out := map[int]int{}
	for id, n := range v.Stock {
		out[atoi(id)] = n
	}
	return out
}

// readAudit asks one replica, not nginx, for its /api/state.
func readAudit(r *cluster.Replica) (audit, error) {
	resp, err := (&http.Client{Timeout: requestTimeout}).Get(r.URL() + "/api/state")
	if err != nil {
		return audit{}, err
	}
	defer resp.Body.Close()
	var a audit
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		return audit{}, fmt.Errorf("%s /api/state: %d %v", r.Name(), resp.StatusCode, err)
	}
	return a, nil
}

// limitClient is the login limits' client: one browser guessing one
// account's password. It keeps its own account of the counts, where
// /api/state says they live (each replica's own, or one shared count), and
// checks every answer against it: a wrong password is checked (422) while
// the count where it is answered is under the limit, refused (429) after.
type limitClient struct {
	s      *shopper
	email  string
	local  bool           // the counts live in each replica
	counts map[string]int // attempts checked, by replica ("" when shared)
	errs   []string
}

// perAccount is the login limit: failed attempts per account and client.
const perAccount = 5

// guess sends wrong passwords until one is refused with 429 and says how
// many were checked before it.
func (lc *limitClient) guess(t *testing.T, l *chaosLedger, when string) (checked int) {
	t.Helper()
	for range 2*perAccount + 1 {
		r, ok := l.post(lc.s, "/login", loginForm(lc.email, "a wrong password"))
		if !ok || r.status != http.StatusUnprocessableEntity && r.status != http.StatusTooManyRequests {
			t.Fatalf("%s: a wrong password: %d from %s, want 422 or 429", when, r.status, r.servedBy)
		}
		where := ""
		if lc.local {
			where = r.servedBy
		}
		if want := lc.counts[where] < perAccount; want != (r.status == http.StatusUnprocessableEntity) {
			lc.errs = append(lc.errs, fmt.Sprintf("%s: a wrong password answered %d by %s, where %d attempts were counted: want %s",
				when, r.status, r.servedBy, lc.counts[where], map[bool]string{true: "422 (checked)", false: "429 (the limit)"}[want]))
		}
		if r.status == http.StatusTooManyRequests {
			return checked
		}
		checked++
		lc.counts[where]++
	}
	t.Fatalf("%s: %d wrong passwords checked in a row: no login limit", when, checked)
	return checked
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// pause waits ms to twice ms, or until stop.
func pause(stop <-chan struct{}, rng *mrand.Rand, ms int) {
	select {
	case <-stop:
	case <-time.After(time.Duration(ms+rng.IntN(ms)) * time.Millisecond):
	}
}

// reviewPhoto is a photo a review was posted with before the kills.
type reviewPhoto struct {
	s      *shopper
	key    string
	writer string
	bytes  []byte
	lostAt int // the kill after which it was gone; 0 while served
}

func runChaos(t *testing.T, profile string) {
	c := cluster.StartT(t, cluster.Options{Profile: profile, Replicas: 3,
		// Receipt jobs long enough for a kill to land mid-job, a report
		// period short enough to see several.
		Env: []string{"SHOP_JOB_DELAY=1s", "SHOP_REPORT_EVERY=1s"}})
	stateless := profile == "stateless"
	l := &chaosLedger{start: time.Now(), failed: map[string]int{}}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 21))

	// Before the kills: reviews with a photo, one browser each (sticky
	// spreads them over the replicas' disks), and an account whose login
	// limit one browser runs into.
	var photos []*reviewPhoto
	for i := range 3 {
		s := newShopper(t, c.URL())
		p := &reviewPhoto{s: s, bytes: pngOfSize(t, 8, 8, 2000+i)}
		r := s.postReview(fmt.Sprintf("Photo %d of %s.", i, profile), p.bytes)
		if r.status != http.StatusSeeOther {
			t.Fatalf("POST review %d: %d", i, r.status)
		}
		p.writer, p.key = r.servedBy, s.newestPhoto()
		photos = append(photos, p)
	}
	limited := &limitClient{s: newShopper(t, c.URL()), email: "limited@example.com", counts: map[string]int{}}
	if r, err := limited.s.do(http.MethodPost, "/register", loginForm(limited.email, "the right password")); err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("register: %d %v", r.status, err)
	}
	first, err := readAudit(c.Replicas()[0])
	if err != nil {
		t.Fatal(err)
	}
	limited.local = first.kind("rate-limits").Lives == "replica"
	if checked := limited.guess(t, l, "before the kills"); checked != perAccount {
		t.Fatalf("%d wrong passwords checked before the first 429, want the limit's %d", checked, perAccount)
	}

	// The tab watching stock, before anything is bought.
	buyerFrom := stock(t, newShopper(t, c.URL()))
	ctx, stopWatching := context.WithCancel(context.Background())
	wShopper := newShopper(t, c.URL())
	w := &stockWatcher{client: &http.Client{Jar: wShopper.client.Jar, Transport: wShopper.client.Transport}, base: c.URL(), seen: map[[2]int]bool{}}
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() { defer close(watched); w.run(ctx, l, watching) }()
	defer func() { stopWatching(); <-watched }()
	select {
	case <-watching:
	case <-time.After(chaosSettle):
		t.Fatal("the watching tab's stream never said ready")
	}

	// Shoppers and buyers, each with a first round before the kills.
	stop := make(chan struct{})
	var clients sync.WaitGroup
	var shoppers []*cartShopper
	for i := range 3 {
		cs := &cartShopper{s: newShopper(t, c.URL()), name: fmt.Sprintf("shopper%d", i+1)}
		shoppers = append(shoppers, cs)
		r := mrand.New(mrand.NewPCG(uint64(i), 7))
		clients.Go(func() { cs.run(l, stop, r) })
	}
	var buyers []*buyer
	for i := range 2 {
		b := &buyer{s: newShopper(t, c.URL()), name: fmt.Sprintf("buyer%d", i+1)}
		buyers = append(buyers, b)
		r := mrand.New(mrand.NewPCG(uint64(i), 8))
		clients.Go(func() { b.run(l, stop, r) })
	}
	stopClients := sync.OnceFunc(func() { close(stop); clients.Wait() })
	defer stopClients()

	// The kills. Every replica once in each round of three, in random
	// order, as the lab's chaos does.
	var kills []*chaosKill
	var turn []int
	settled, last := time.Now(), time.Now()
	for n := 1; n <= chaosKills; n++ {
		// chaosEvery after the last kill, and a second more than nginx's
		// fail_timeout (2 s) after the replica came back: nginx counts a
		// replica failed for that long after a request failed on it, and
		// two replicas so counted at once leave it one, or none.
		time.Sleep(max(time.Until(last.Add(chaosEvery)), time.Until(settled.Add(3*time.Second))))
		if len(turn) == 0 {
			turn = rng.Perm(3)
		}
		victim := c.Replicas()[turn[0]]
		turn = turn[1:]
		waitLaps(t, shoppers, settled)

		// The clients' view first, then every replica's /api/state, the
		// victim's last: whatever the clients put on the victim before
		// is in what it answers.
		k := &chaosKill{n: n, victim: victim.Name()}
		for _, cs := range shoppers {
			cs.mu.Lock()
			if cs.home == k.victim && cs.expected > 0 {
				k.carts = append(k.carts, cs.name)
			}
			cs.mu.Unlock()
		}
		for _, p := range photos {
			if p.lostAt == 0 && p.writer == k.victim {
				k.photos = append(k.photos, p.key)
			}
		}
		k.limits = limited.counts[k.victim]
		w.mu.Lock()
		k.stream = w.current == k.victim
		w.mu.Unlock()
		for _, r := range c.Replicas() {
			if r == victim {
				continue
			}
			a, err := readAudit(r)
			if err != nil {
				t.Fatal(err)
			}
			checkAudit(t, profile, a)
		}
		a, err := readAudit(victim)
		if err != nil {
			t.Fatal(err)
		}
		k.state, k.stateAt = a, time.Now()
		checkAudit(t, profile, a)

		k.at, last = time.Now(), time.Now()
		if err := c.ReplaceReplica(t.Context(), k.victim); err != nil {
			t.Fatal(err)
		}
		settled = time.Now()
		kills = append(kills, k)

		// The clients that look right after a kill: every photo through
		// nginx, and the login limit.
		for _, p := range photos {
			r, err := l.do(p.s, http.MethodGet, "/uploads/"+p.key, nil)
			switch {
			case err != nil:
				t.Errorf("kill %d: GET the photo %s: %v", n, p.key, err)
			case r.status == http.StatusOK && r.body == string(p.bytes):
				if p.lostAt != 0 {
					t.Errorf("kill %d: the photo %s lost at kill %d is served again", n, p.key, p.lostAt)
				}
			case r.status == http.StatusNotFound:
				if p.lostAt == 0 {
					p.lostAt = n
					k.photosLost = append(k.photosLost, p.key)
				}
			default:
				t.Errorf("kill %d: GET the photo %s: %d, %d bytes", n, p.key, r.status, len(r.body))
			}
		}
		if k.state.loses("rate-limits") {
			// What the audit says the kill loses is gone from the
			// client's account: the next answers check that it was.
			delete(limited.counts, k.victim)
		}
		k.limitReset = limited.guess(t, l, fmt.Sprintf("after kill %d", n))
		t.Logf("kill %d: %s, which said it would lose %s; its cart shoppers %v, photos %d, login counts %v, watcher's stream %v",
			n, k.victim, a.Loses, k.carts, len(k.photos), k.limits, k.stream)
	}
	stopClients()

	// After the kills: every receipt made, or never to be.
	deadline := time.Now().Add(chaosSettle)
	for {
		pending := false
		for _, b := range buyers {
			pending = b.pollReceipts(l) || pending
		}
		if !pending || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The tab has seen every stock change it is going to: a second
	// without a new one.
	for deadline := time.Now().Add(chaosSettle); ; time.Sleep(100 * time.Millisecond) {
		w.mu.Lock()
		quiet := time.Since(w.changed) > time.Second
		w.mu.Unlock()
		if quiet || time.Now().After(deadline) {
			break
		}
	}
	stopWatching()
	<-watched
	buyerTo := stock(t, newShopper(t, c.URL()))

	checkCarts(t, stateless, kills, shoppers)
	checkPhotos(t, stateless, kills, photos)
	checkReceipts(t, stateless, kills, buyers, buyerFrom, buyerTo)
	checkEvents(t, stateless, kills, w, buyerFrom, buyerTo)
	checkReports(t, stateless, newShopper(t, c.URL()), kills)
	checkLimits(t, stateless, kills, limited)

	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("requests failed: %d GET, %d POST; answers cut short: %d; POSTs sent again: %d", l.failed[http.MethodGet], l.failed[http.MethodPost], l.cut, l.resent)
	for _, f := range l.failures {
		t.Logf("  %s", f)
	}
	if stateless && l.failed[http.MethodGet] > 0 {
		t.Errorf("%d GETs failed through nginx: it must retry them on another replica", l.failed[http.MethodGet])
	}
	// Stateful must have had something to lose, or every check above
	// held for want of a loss.
	if !stateless && !slices.ContainsFunc(kills, func(k *chaosKill) bool { return k.state.Loses != "nothing" }) {
		t.Error("stateful: no victim's /api/state announced a loss")
	}
}

// waitLaps waits until every shopper finished a round begun after since:
// a cart that moved to another replica at the last kill has been seen
// there.
func waitLaps(t *testing.T, shoppers []*cartShopper, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(chaosSettle)
	for _, cs := range shoppers {
		for {
			cs.mu.Lock()
			done := cs.lapStart.After(since)
			cs.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s finished no round in %s", cs.name, chaosSettle)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkAudit checks what every /api/state must say under the profile.
func checkAudit(t *testing.T, profile string, a audit) {
	t.Helper()
	if a.Profile != profile {
		t.Errorf("%s /api/state: profile %q, want %q", a.Replica, a.Profile, profile)
	}
	if profile == "stateless" {
		if a.Loses != "nothing" {
			t.Errorf("%s /api/state under stateless: a kill would lose %q, want nothing", a.Replica, a.Loses)
		}
		for _, k := range a.Kinds {
			if k.LostIfKilled {
				t.Errorf("%s /api/state under stateless: %s lives in %s and is lost if killed", a.Replica, k.Kind, k.Lives)
			}
		}
	}
}

// killOf is the kill that took what replica held at at: the last kill of
// it before at; nil when none. replica "" is any replica.
func killOf(kills []*chaosKill, replica string, at time.Time) *chaosKill {
	var found *chaosKill
	for _, k := range kills {
		if (replica == "" || k.victim == replica) && k.at.Before(at) {
			found = k
		}
	}
	return found
}

// checkCarts: every cart lost is one the victim's /api/state announced,
// and every cart it announced is lost.
func checkCarts(t *testing.T, stateless bool, kills []*chaosKill, shoppers []*cartShopper) {
	lost := map[*chaosKill][]string{}
	total, misreads := 0, 0
	var abandoned []string
	for _, cs := range shoppers {
		cs.mu.Lock()
		for _, loss := range cs.losses {
			total++
			k := killOf(kills, loss.from, loss.at)
			if k == nil || k.at.Before(loss.born) {
				// Its replica was not killed since the cart began there:
				// sticky nginx, falling back from a killed replica, moved
				// the browser on from a session it had just been given.
				// No kill took that cart and no audit can announce it; it
				// must at least follow a kill.
				if killOf(kills, "", loss.at) == nil {
					t.Errorf("%s's cart of %d on %s was lost before any kill", cs.name, loss.had, loss.from)
				}
				abandoned = append(abandoned, fmt.Sprintf("%s's cart of %d on %s", cs.name, loss.had, loss.from))
				continue
			}
			lost[k] = append(lost[k], cs.name)
		}
		for _, w := range cs.wrong {
			t.Error(w)
		}
		misreads += len(cs.misreads)
		for _, m := range cs.misreads {
			t.Log(m)
		}
		if cs.gaveUp > 0 {
			t.Errorf("%s gave up %d adds after every retry", cs.name, cs.gaveUp)
		}
		cs.mu.Unlock()
	}
	for _, k := range kills {
		var announced []string
		if k.state.kind("sessions").LostIfKilled {
			announced = k.carts
		}
		slices.Sort(announced)
		slices.Sort(lost[k])
		if !slices.Equal(announced, lost[k]) {
			t.Errorf("kill %d of %s: carts lost %v; its /api/state (sessions %+v) announced those of %v", k.n, k.victim, lost[k], k.state.kind("sessions"), announced)
		}
		if held := k.state.kind("sessions").HeldHere; len(announced) > held {
			t.Errorf("kill %d of %s: %d of the shoppers' carts were there, /api/state counted %d sessions", k.n, k.victim, len(announced), held)
		}
	}
	t.Logf("carts lost: %d, of which %d abandoned by the routing with their replica up (%s); read short %d times", total, len(abandoned), strings.Join(abandoned, "; "), misreads)
	if stateless && total+misreads > 0 {
		t.Errorf("stateless lost %d carts and read %d short", total, misreads)
	}
}

// checkPhotos: a photo is lost by the kill of its writer exactly when the
// writer's /api/state said its uploads would be.
func checkPhotos(t *testing.T, stateless bool, kills []*chaosKill, photos []*reviewPhoto) {
	total := 0
	for _, k := range kills {
		var announced []string
		if k.state.loses("uploads") {
			announced = k.photos
			if len(k.photos) > k.state.kind("uploads").HeldHere {
				t.Errorf("kill %d of %s: it held %d photos, /api/state counted %d", k.n, k.victim, len(k.photos), k.state.kind("uploads").HeldHere)
			}
		}
		slices.Sort(announced)
		slices.Sort(k.photosLost)
		if !slices.Equal(announced, k.photosLost) {
			t.Errorf("kill %d of %s: photos lost %v; its /api/state (uploads %+v) announced %v", k.n, k.victim, k.photosLost, k.state.kind("uploads"), announced)
		}
		total += len(k.photosLost)
	}
	t.Logf("photos lost: %d of %d", total, len(photos))
	if stateless && total > 0 {
		t.Errorf("stateless lost %d photos", total)
	}
}

// checkReceipts: every receipt never made was pending on a replica whose
// /api/state, just before its kill, said jobs would be lost, and counted
// at least as many; no order was placed twice.
func checkReceipts(t *testing.T, stateless bool, kills []*chaosKill, buyers []*buyer, from, to map[int]int) {
	lost := map[*chaosKill]int{}
	orders, units, ready, never, conflicts, gone := 0, 0, 0, 0, 0, 0
	ids := map[string]bool{}
	for _, b := range buyers {
		b.mu.Lock()
		for _, e := range b.errs {
			t.Error(e)
		}
		gone += b.gone
		for _, o := range b.orders {
			orders++
			units += o.units
			if o.id == "" {
				conflicts++
			} else if ids[o.id] {
				t.Errorf("%s: order %s placed twice", b.name, o.id)
			}
			ids[o.id] = true
			if o.ready {
				ready++
				continue
			}
			never++
			// The kill of its replica after it was sent (the next kill
			// when the replica is unknown).
			var k *chaosKill
			for _, kk := range kills {
				if (o.by == "" || kk.victim == o.by) && kk.at.After(o.sent) {
					k = kk
					break
				}
			}
			switch {
			case k == nil:
				t.Errorf("%s: the receipt of order %q taken by %s never came (%d), and %s was not killed after the checkout", b.name, o.id, o.by, o.final, o.by)
			case !k.state.kind("jobs").LostIfKilled:
				t.Errorf("%s: the receipt of order %q never came (%d) after kill %d of %s, whose /api/state said jobs are not lost (%+v)", b.name, o.id, o.final, k.n, k.victim, k.state.kind("jobs"))
			case !o.acked.IsZero() && o.acked.Before(k.stateAt):
				lost[k]++
			}
		}
		b.mu.Unlock()
	}
	for k, n := range lost {
		if held := k.state.kind("jobs").HeldHere; n > held {
			t.Errorf("kill %d of %s lost %d receipts of orders placed before its /api/state, which counted %d jobs", k.n, k.victim, n, held)
		}
	}
	sold := 0
	for _, p := range chaosProducts {
		sold += from[p] - to[p]
	}
	t.Logf("receipts: %d orders, %d ready, %d never made (%d placed by an attempt whose answer died with its session); %d units ordered, %d sold; %d carts gone before their checkout", orders, ready, never, conflicts, units, sold, gone)
	if sold != units {
		t.Errorf("%d units left the stock for orders of %d: a checkout was applied twice, or placed unseen", sold, units)
	}
	if orders == 0 {
		t.Error("no order was placed")
	}
	if stateless && never > 0 {
		t.Errorf("stateless: %d receipts never made", never)
	}
}

// checkEvents: with stateless the tab saw every stock change; a tab whose
// replica died was told it missed events exactly when that replica's
// /api/state said live updates would be lost.
func checkEvents(t *testing.T, stateless bool, kills []*chaosKill, w *stockWatcher, from, to map[int]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	missed, changes := 0, 0
	for _, p := range chaosProducts {
		for s := to[p]; s < from[p]; s++ {
			changes++
			if !w.seen[[2]int{p, s}] {
				missed++
			}
		}
	}
	notices := 0
	for _, st := range w.streams {
		if st.missed {
			notices++
		}
	}
	announced := 0
	for _, k := range kills {
		if !k.stream {
			continue
		}
		// The first stream opened after this kill is the resume.
		var resumed *watchedStream
		for _, st := range w.streams {
			if st.opened.After(k.at) {
				resumed = st
				break
			}
		}
		lose := k.state.loses("live")
		if lose {
			announced++
		}
		switch {
		case resumed == nil:
			t.Errorf("kill %d of %s: the watching tab never resumed", k.n, k.victim)
		case resumed.missed != lose:
			t.Errorf("kill %d of %s, which held the tab's stream: resumed on %s with a missed notice %v; its /api/state (live %+v) said lost %v", k.n, k.victim, resumed.by, resumed.missed, k.state.kind("live"), lose)
		}
	}
	if notices != announced {
		t.Errorf("%d missed notices, %d announced by the /api/state of the replica holding the stream", notices, announced)
	}
	t.Logf("events: the tab saw %d of %d stock changes (%d missed) on %d streams, %d missed notices", changes-missed, changes, missed, len(w.streams), notices)
	if stateless && missed > 0 {
		t.Errorf("stateless: the tab missed %d of %d stock changes", missed, changes)
	}
}

// checkReports: duplicated low-stock reports exactly when /api/state says
// the schedule lives in each replica.
func checkReports(t *testing.T, stateless bool, s *shopper, kills []*chaosKill) {
	r := s.get("/api/outbox?kind=low-stock")
	var v struct {
		Messages []struct {
			Period string `json:"period"`
			SentBy string `json:"sent_by"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /api/outbox: %d %v", r.status, err)
	}
	per := map[string]int{}
	for _, m := range v.Messages {
		per[m.Period]++
	}
	dup := 0
	for _, n := range per {
		if n > 1 {
			dup++
		}
	}
	local := kills[len(kills)-1].state.kind("schedule").Lives == "replica"
	t.Logf("reports: %d periods, %d with more than one report (the schedule lives in the %s)", len(per), dup, kills[len(kills)-1].state.kind("schedule").Lives)
	switch {
	case len(per) < 3:
		t.Errorf("only %d report periods in the run", len(per))
	case local && dup == 0:
		t.Errorf("/api/state says each replica runs its own schedule, yet no period has more than one report")
	case !local && dup > 0:
		t.Errorf("/api/state says the schedule is shared, yet %d of %d periods have more than one report", dup, len(per))
	}
	if stateless && local {
		t.Error("stateless: /api/state says the schedule lives in each replica")
	}
}

// checkLimits: the audit of a replica holding the limited client's counts
// says they would be lost exactly when they live there, and the answers
// after every kill agreed with what the audit said (limitClient.guess).
func checkLimits(t *testing.T, stateless bool, kills []*chaosKill, lc *limitClient) {
	for _, e := range lc.errs {
		t.Error(e)
	}
	resets := 0
	for _, k := range kills {
		if held := lc.local && k.limits > 0; k.state.loses("rate-limits") != held {
			t.Errorf("kill %d of %s: the limited client's attempts counted there: %d; its /api/state (rate-limits %+v) said lost %v", k.n, k.victim, k.limits, k.state.kind("rate-limits"), k.state.loses("rate-limits"))
		}
		if k.limitReset > 0 {
			resets++
		}
	}
	t.Logf("login limit: wrong passwords checked again after %d of %d kills", resets, len(kills))
	if stateless && resets > 0 {
		t.Errorf("stateless: the login limit was checked again after %d kills: it must hold", resets)
	}
}
