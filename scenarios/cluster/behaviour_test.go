package cluster_test

// The cluster's behaviour as a shopper sees it: real nginx in front of real
// replicas and a real Redis, started by the harness, driven only through
// nginx's URL and the outside contract (docs/CONTRACT.md). Each test proves
// one claim the lab makes; each would fail if the claim stopped being true.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// requestTimeout bounds one request of a test client: generous, because the
// machine running the tests may be busy; what a test asserts about time it
// asserts separately.
const requestTimeout = 15 * time.Second

// reply is what a test keeps of one response.
type reply struct {
	status   int
	servedBy string
	header   http.Header
	body     string
	took     time.Duration
}

// shopper is one browser: its own cookie jar, no redirect following (a 303
// is the answer under test), talking to one base URL.
type shopper struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newShopper(t *testing.T, base string) *shopper {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &shopper{t: t, base: base, client: &http.Client{
		Jar:           jar,
		Transport:     tr,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request; it is safe for concurrent use and reports problems
// as errors, so goroutines can call it.
func (s *shopper) do(method, path string, form url.Values) (reply, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		return reply{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return reply{took: time.Since(start)}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, servedBy: resp.Header.Get("X-Served-By"), header: resp.Header, body: string(b), took: time.Since(start)}
	if err != nil {
		return r, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return r, nil
}

func (s *shopper) get(path string) reply {
	s.t.Helper()
	r, err := s.do(http.MethodGet, path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

func addForm(productID, quantity int) url.Values {
	return url.Values{"product_id": {strconv.Itoa(productID)}, "quantity": {strconv.Itoa(quantity)}}
}

// add puts quantity × productID in the cart and wants the contract's 303.
func (s *shopper) add(productID, quantity int) reply {
	s.t.Helper()
	r, err := s.do(http.MethodPost, "/cart/items", addForm(productID, quantity))
	if err != nil {
		s.t.Fatal(err)
	}
	if r.status != http.StatusSeeOther {
		s.t.Fatalf("POST /cart/items: %d from %q, want 303", r.status, r.servedBy)
	}
	return r
}

// cookie is the value of the named cookie the browser would send to nginx.
func (s *shopper) cookie(name string) string {
	u, _ := url.Parse(s.base)
	for _, c := range s.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// apiSession is the part of GET /api/session the tests read.
type apiSession struct {
	Replica string `json:"replica"`
	Store   string `json:"store"`
	Session struct {
		State string `json:"state"`
	} `json:"session"`
	Cart struct {
		Count int `json:"count"`
		Items []struct {
			ProductID int `json:"product_id"`
			Quantity  int `json:"quantity"`
		} `json:"items"`
	} `json:"cart"`
}

// session asks whichever replica nginx picks how it sees this session.
func (s *shopper) session() (apiSession, reply) {
	s.t.Helper()
	r := s.get("/api/session")
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /api/session: %d from %q: %s", r.status, r.servedBy, r.body)
	}
	var a apiSession
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		s.t.Fatalf("GET /api/session: %v in %q", err, r.body)
	}
	if a.Replica != r.servedBy {
		s.t.Errorf("/api/session says replica %q, X-Served-By says %q", a.Replica, r.servedBy)
	}
	return a, r
}

var cartCountRE = regexp.MustCompile(`data-testid="cart-count"[^>]*>\s*(\d+)\s*<`)

// cartCount reads the visible item count from a page.
func cartCount(t *testing.T, page string) int {
	t.Helper()
	m := cartCountRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no data-testid=cart-count on the page")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestRoundRobinReachesEveryReplica(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{})
	s := newShopper(t, c.URL())
	seen := make(map[string]int)
	for range 9 {
		r := s.get("/")
		if r.status != http.StatusOK {
			t.Fatalf("GET /: %d", r.status)
		}
		if got := r.header.Get("X-Session-Store"); got != "redis" {
			t.Errorf("X-Session-Store = %q, want redis", got)
		}
		seen[r.servedBy]++
	}
	for _, r := range c.Replicas() {
		if seen[r.Name()] == 0 {
			t.Errorf("%s got none of 9 requests under round robin: %v", r.Name(), seen)
		}
	}
}

// TestRedisCartSurvivesKill: stateless replicas. The replica that wrote the
// cart dies by kill -9 and the next replica reads the same cart from Redis.
func TestRedisCartSurvivesKill(t *testing.T) {
	t.Parallel()
	cartSurvivesKill(t, cluster.StartT(t, cluster.Options{}))
}

// TestCookieCartSurvivesKill: the same kill -9 with the session sealed in
// the browser's cookie: no replica held it, so every other replica opens it
// with the shared key and serves the same cart.
func TestCookieCartSurvivesKill(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Store: "cookie"})
	cartSurvivesKill(t, c)
	if c.SessionKeys() == "" {
		t.Error("a cookie cluster without keys")
	}
}

// cartSurvivesKill adds to a cart, kills -9 the replica that served the add
// and wants every other replica to serve the same cart.
func cartSurvivesKill(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	s := newShopper(t, c.URL())
	writer := s.add(3, 2).servedBy
	r := c.Replica(writer)
	if r == nil {
		t.Fatalf("the add was served by %q, which is no replica of the cluster", writer)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}

	for range 6 {
		a, _ := s.session()
		if a.Replica == writer {
			t.Fatalf("served by %s after kill -9", writer)
		}
		if a.Session.State != "known" || a.Cart.Count != 2 {
			t.Errorf("%s after kill -9 of %s: session %s, cart count %d; want known, 2", a.Replica, writer, a.Session.State, a.Cart.Count)
		}
	}
	page := s.get("/cart")
	if page.status != http.StatusOK || cartCount(t, page.body) != 2 {
		t.Errorf("GET /cart from %s: %d with cart count %d, want 200 and 2", page.servedBy, page.status, cartCount(t, page.body))
	}
}

// TestMemoryCartIsPerReplicaUnderRoundRobin: stateful replicas. Round robin
// sends the browser to replicas that never saw its session; they answer an
// empty cart and leave its cookie alone.
func TestMemoryCartIsPerReplicaUnderRoundRobin(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Store: "memory"})
	s := newShopper(t, c.URL())
	writer := s.add(5, 1).servedBy
	token := s.cookie("session")
	if token == "" {
		t.Fatal("no session cookie after an add")
	}

	others := make(map[string]bool)
	for range 9 {
		a, _ := s.session()
		if a.Store != "memory" {
			t.Errorf("store %q, want memory", a.Store)
		}
		switch {
		case a.Replica == writer:
			if a.Session.State != "known" || a.Cart.Count != 1 {
				t.Errorf("the writer %s: session %s, count %d; want known, 1", writer, a.Session.State, a.Cart.Count)
			}
		default:
			others[a.Replica] = true
			if a.Session.State != "unknown" || a.Cart.Count != 0 {
				t.Errorf("%s, which never saw the session: %s, count %d; want unknown, 0", a.Replica, a.Session.State, a.Cart.Count)
			}
		}
	}
	if len(others) != 2 {
		t.Errorf("9 requests reached only %v besides the writer %s", slices.Sorted(maps.Keys(others)), writer)
	}
	if got := s.cookie("session"); got != token {
		t.Error("a replica that did not know the session replaced the browser's cookie")
	}
}

// TestMemoryCartStaysPutUnderStickyUntilItsReplicaDies: sticky routing keeps
// a stateful session reachable, exactly as long as its replica lives. Then
// the cart is gone and the browser is pinned to a replica that lives.
func TestMemoryCartStaysPutUnderStickyUntilItsReplicaDies(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Store: "memory", LB: "sticky"})
	s := newShopper(t, c.URL())
	first := s.get("/").servedBy
	if pin := s.cookie("shop_route"); pin != first {
		t.Fatalf("after the first response shop_route = %q, want %q (the replica that served it)", pin, first)
	}
	if by := s.add(7, 3).servedBy; by != first {
		t.Fatalf("the add went to %s, not to the pinned %s", by, first)
	}
	for range 6 {
		a, _ := s.session()
		if a.Replica != first || a.Session.State != "known" || a.Cart.Count != 3 {
			t.Fatalf("sticky: %s answered %s with count %d; want %s, known, 3", a.Replica, a.Session.State, a.Cart.Count, first)
		}
	}

	if err := c.Replica(first).Kill(); err != nil {
		t.Fatal(err)
	}
	a, _ := s.session()
	second := a.Replica
	if second == first {
		t.Fatalf("served by %s after kill -9", first)
	}
	// What the README tells a workshop: the cart lived in the dead process.
	if a.Session.State != "unknown" || a.Cart.Count != 0 {
		t.Errorf("after %s died, %s answered %s with count %d; want unknown, 0 (the cart died with its replica)", first, second, a.Session.State, a.Cart.Count)
	}
	if pin := s.cookie("shop_route"); pin != second {
		t.Errorf("after the fallback shop_route = %q, want %q (re-pinned to a living replica)", pin, second)
	}
	for range 4 {
		if by := s.get("/").servedBy; by != second {
			t.Errorf("re-pinned to %s, but served by %s", second, by)
		}
	}
	if by := s.add(7, 1).servedBy; by != second {
		t.Errorf("the new add went to %s, want %s", by, second)
	}
	if a, _ := s.session(); a.Replica != second || a.Cart.Count != 1 {
		t.Errorf("the new cart: %s says count %d; want %s, 1", a.Replica, a.Cart.Count, second)
	}
}

// TestRollingRestartLosesNoRequest restarts every replica in turn (SIGTERM,
// wait for the exit, start, wait until ready and back in nginx's rotation)
// while shoppers browse and add to their carts. Not one request may fail,
// and every acknowledged add must be in its cart afterwards.
func TestRollingRestartLosesNoRequest(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{})
	ctx := t.Context()

	const (
		shoppers = 4
		// loadPause paces each shopper: steady load, not all the CPU of a
		// shared machine.
		loadPause = 2 * time.Millisecond
	)
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		served   = make(map[string]int)
		total    atomic.Int64
		carts    [shoppers]map[int]int // what each shopper's cart must hold
	)
	start := time.Now()
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf("%6.3fs ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
	}
	check := func(r reply, err error, method, path string) bool {
		total.Add(1)
		if err != nil {
			fail("%v", err)
			return false
		}
		if r.status < 200 || r.status >= 400 {
			fail("%s %s: %d from %q: %.200s", method, path, r.status, r.servedBy, r.body)
			return false
		}
		mu.Lock()
		served[r.servedBy]++
		mu.Unlock()
		return true
	}
	ss := make([]*shopper, shoppers)
	for i := range ss {
		ss[i] = newShopper(t, c.URL())
		carts[i] = make(map[int]int)
		wg.Go(func() {
			s, cart := ss[i], carts[i]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(loadPause):
				}
				r, err := s.do(http.MethodGet, "/", nil)
				check(r, err, "GET", "/")
				id := n%24 + 1
				r, err = s.do(http.MethodPost, "/cart/items", addForm(id, 1))
				if check(r, err, "POST", "/cart/items") {
					cart[id]++
				}
				// A line holds at most 99: empty it long before.
				if cart[id] >= 20 {
					path := "/cart/items/" + strconv.Itoa(id)
					r, err = s.do(http.MethodPost, path, url.Values{"quantity": {"0"}})
					if check(r, err, "POST", path) {
						delete(cart, id)
					}
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	probe := newShopper(t, c.URL())
	for _, r := range c.Replicas() {
		if err := r.Term(); err != nil {
			t.Fatal(err)
		}
		if code, err := r.Wait(ctx); err != nil || code != 0 {
			t.Fatalf("%s after SIGTERM: exit %d, %v; want 0", r.Name(), code, err)
		}
		// Start returns once the replica's own /readyz answers 200.
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Back in rotation: nginx may keep a replica it saw refuse
		// connections out for its fail_timeout.
		deadline := time.Now().Add(20 * time.Second)
		for probe.get("/healthz").servedBy != r.Name() {
			if time.Now().After(deadline) {
				t.Fatalf("nginx sent nothing to %s for 20 s after its restart", r.Name())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stopLoad()

	t.Logf("%d requests in %v, served by %v", total.Load(), time.Since(start).Round(time.Millisecond), served)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the rolling restart:\n%s", len(failures), total.Load(), strings.Join(failures, "\n"))
	}
	if dropped := sentThenDropped(t, c); len(dropped) > 0 {
		t.Errorf("%d requests were written onto connections a stopping replica then closed (nginx resent the GETs; a POST there is a 502):\n%s", len(dropped), strings.Join(dropped, "\n"))
	}
	for _, r := range c.Replicas() {
		if served[r.Name()] == 0 {
			t.Errorf("%s served none of the load", r.Name())
		}
	}
	for i, s := range ss {
		a, _ := s.session()
		got := make(map[int]int)
		for _, it := range a.Cart.Items {
			got[it.ProductID] = it.Quantity
		}
		if !maps.Equal(got, carts[i]) {
			t.Errorf("shopper %d: the acknowledged writes make the cart %v, but it holds %v", i, carts[i], got)
		}
	}
}

// sentThenDropped returns the lines of nginx's error log about requests it
// had already written to a replica when the connection failed. nginx resends
// a GET to another replica, so the shopper sees nothing, but never a POST:
// each line is a request a rolling restart only got away with by luck.
// Failures while connecting are not among them: nothing was sent, and nginx
// retries those, a POST too.
func sentThenDropped(t *testing.T, c *cluster.Cluster) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir(), "nginx", "error.log"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "upstream") && !strings.Contains(line, "while connecting to upstream") &&
			(strings.Contains(line, "[error]") || strings.Contains(line, "[crit]")) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

// concurrentAdds creates a session with an empty cart, then fires n adds of
// one product on it at once through nginx, as n tabs of one browser would.
// A 503 with Retry-After (the session lock's bounded wait ran out) is
// retried as its header asks: refused is not lost. It returns the cart's
// count afterwards, the status of every final answer and who served them.
func concurrentAdds(t *testing.T, c *cluster.Cluster, n int) (count int, statuses map[int]int, by map[string]int) {
	t.Helper()
	s := newShopper(t, c.URL())
	s.add(2, 1)
	if r, err := s.do(http.MethodPost, "/cart/items/2", url.Values{"quantity": {"0"}}); err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("emptying the cart: %v, %d", err, r.status)
	}
	if a, _ := s.session(); a.Session.State != "known" || a.Cart.Count != 0 {
		t.Fatalf("before the adds: session %s, count %d; want known, 0", a.Session.State, a.Cart.Count)
	}

	var (
		mu      sync.Mutex
		ready   sync.WaitGroup
		done    sync.WaitGroup
		barrier = make(chan struct{})
	)
	statuses, by = make(map[int]int), make(map[string]int)
	retries := 0
	for range n {
		ready.Add(1)
		done.Go(func() {
			ready.Done()
			<-barrier
			for attempt := 1; ; attempt++ {
				r, err := s.do(http.MethodPost, "/cart/items", addForm(1, 1))
				if err != nil {
					t.Error(err)
					return
				}
				if r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "" && attempt < 5 {
					mu.Lock()
					retries++
					mu.Unlock()
					wait, _ := strconv.Atoi(r.header.Get("Retry-After"))
					time.Sleep(time.Duration(min(max(wait, 0), 2)) * time.Second)
					continue
				}
				mu.Lock()
				statuses[r.status]++
				by[r.servedBy]++
				mu.Unlock()
				return
			}
		})
	}
	ready.Wait()
	close(barrier)
	done.Wait()
	if retries > 0 {
		t.Logf("%d adds waited past the lock's bounded wait and were retried", retries)
	}
	a, _ := s.session()
	return a.Cart.Count, statuses, by
}

// TestConcurrentAddsWithLockLoseNothing: 40 tabs add at once across three
// replicas; the session lock serializes the read-modify-write cycles.
func TestConcurrentAddsWithLockLoseNothing(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Lock: "on"})
	const n = 40
	count, statuses, by := concurrentAdds(t, c, n)
	t.Logf("statuses %v, served by %v", statuses, by)
	if statuses[http.StatusSeeOther] != n {
		t.Errorf("answers %v, want %d × 303", statuses, n)
	}
	if len(by) < 2 {
		t.Errorf("the adds were served by %v: not across replicas", by)
	}
	if count != n {
		t.Errorf("with the session lock on, %d concurrent adds left a cart of %d: %d updates lost", n, count, n-count)
	}
}

// TestConcurrentAddsWithoutLockLoseUpdates shows the anomaly the lock
// prevents: with -session-lock off, concurrent read-modify-write cycles on
// one session overwrite each other although every add answered 303. A lucky
// run can interleave nothing, so it tries up to three times.
func TestConcurrentAddsWithoutLockLoseUpdates(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Lock: "off"})
	const n = 40
	for attempt := 1; attempt <= 3; attempt++ {
		count, statuses, by := concurrentAdds(t, c, n)
		if statuses[http.StatusSeeOther] != n {
			t.Fatalf("answers %v, want %d × 303: every add must be acknowledged for a loss to be a lost update", statuses, n)
		}
		t.Logf("attempt %d: %d acknowledged adds left a cart of %d (served by %v)", attempt, n, count, by)
		if count < n {
			return
		}
	}
	t.Errorf("with the session lock off, 3 runs of %d concurrent adds lost no update: the lost-update anomaly is not reproducible", n)
}

// TestRedisOutageThroughNginx: with Redis stopped, the shop degrades as the
// contract says on every replica, fails fast, and comes back by itself with
// the cart intact once Redis returns (append-only persistence).
func TestRedisOutageThroughNginx(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{})
	ctx := t.Context()
	s := newShopper(t, c.URL())
	s.add(4, 2)
	token := s.cookie("session")
	if err := c.Redis().Stop(); err != nil {
		t.Fatal(err)
	}

	const slow = 2 * time.Second
	tests := []struct {
		method, path string
		status       int
	}{
		{"GET", "/", http.StatusOK},
		{"GET", "/cart", http.StatusServiceUnavailable},
		{"POST", "/cart/items", http.StatusServiceUnavailable},
	}
	seen := make(map[string]bool)
	for range 3 { // round robin: every replica answers each route
		for _, tt := range tests {
			var form url.Values
			if tt.method == "POST" {
				form = addForm(4, 1)
			}
			r, err := s.do(tt.method, tt.path, form)
			if err != nil {
				t.Fatal(err)
			}
			seen[r.servedBy] = true
			if r.took > slow {
				t.Errorf("%s %s took %v from %s with Redis down; want at most %v", tt.method, tt.path, r.took, r.servedBy, slow)
			}
			if r.status != tt.status {
				t.Errorf("%s %s from %s with Redis down: %d, want %d", tt.method, tt.path, r.servedBy, r.status, tt.status)
			}
			if tt.status == http.StatusOK && !strings.Contains(r.body, `data-testid="store-notice"`) {
				t.Errorf("%s %s from %s with Redis down: no store-notice", tt.method, tt.path, r.servedBy)
			}
		}
	}
	if len(seen) != len(c.Replicas()) {
		t.Errorf("only %v answered during the outage", slices.Sorted(maps.Keys(seen)))
	}

	if err := c.Redis().Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Each replica, asked directly with the browser's cookie, recovers by
	// itself (nobody restarts it) and finds the cart Redis kept.
	direct := &http.Client{Timeout: requestTimeout}
	for _, r := range c.Replicas() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, err := directSession(direct, r.URL(), token)
			if err == nil && a.Session.State == "known" && a.Cart.Count == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s 10 s after Redis came back: %+v, %v; want the cart of 2", r.Name(), a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for range 3 {
		if page := s.get("/cart"); page.status != http.StatusOK || cartCount(t, page.body) != 2 {
			t.Errorf("GET /cart from %s after the outage: %d, want 200 with 2 items", page.servedBy, page.status)
		}
	}
	s.add(4, 1)
	if a, _ := s.session(); a.Cart.Count != 3 {
		t.Errorf("after the outage an add made a cart of %d, want 3", a.Cart.Count)
	}
}

// directSession asks one replica, bypassing nginx, for the session with
// this token.
func directSession(client *http.Client, base, token string) (apiSession, error) {
	var a apiSession
	req, err := http.NewRequest(http.MethodGet, base+"/api/session", nil)
	if err != nil {
		return a, err
	}
	req.AddCookie(&http.Cookie{Name: "session", Value: token})
	resp, err := client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("GET %s/api/session: %s", base, resp.Status)
	}
	return a, json.NewDecoder(resp.Body).Decode(&a)
}
