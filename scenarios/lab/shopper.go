package lab

// Virtual shoppers: each has its own cookie jar, as a browser would, and its
// own record of what its cart must hold. That record is a range per product,
// because a write that fails with a 5xx or without an answer (the replica
// died mid-request, Redis went away between the write and its reply) may or
// may not have reached the session: the shopper cannot know, so the judge
// accepts either.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statelab/shop/session"
)

const (
	// attempts per action: the first try and its retries.
	attempts = 4
	// retryBase is the first backoff; it doubles per retry (50, 100, 200 ms).
	retryBase = 50 * time.Millisecond
	// requestTimeout covers the shop's bounded lock wait (~2 s) plus its
	// store timeout (~1 s).
	requestTimeout = 4 * time.Second
)

// qtyRange is what one product's quantity may be: lo if every uncertain add
// was lost, hi if every one arrived.
type qtyRange struct{ lo, hi int }

// shopper is one virtual browser.
type shopper struct {
	name   string
	base   string
	client *http.Client
	rec    *recorder

	mu       sync.Mutex
	want     map[int]qtyRange // product id → what the cart must hold
	token    string           // the session token the shop gave last (the cookie without its version)
	replaced string           // why the shopper knows its session was lost, "" if not
	replica  string           // X-Served-By of the last successful write
	arrived  bool             // has opened the catalog
	// missing is set when the shop answered 404 to an add: the script
	// names a product the catalog does not have.
	missing string
	// loggedIn: the session holds the shopper's account; accountWant is
	// what the account's saved cart holds while the shopper is logged out.
	loggedIn    bool
	registered  bool
	accountWant map[int]qtyRange
	// orders are the ids of the orders the shopper placed, for the
	// judge to read their receipts.
	orders   []string
	photo    []byte // the photo of the shopper's review, nil before one
	photoKey string // its key under /uploads/
}

// hasPhoto reports whether the shopper has posted a review with a photo.
func (s *shopper) hasPhoto() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.photoKey != ""
}

func newShopper(name, base string, tr http.RoundTripper, rec *recorder) *shopper {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &shopper{
		name: name,
		base: base,
		rec:  rec,
		want: map[int]qtyRange{},
		client: &http.Client{
			Transport: tr,
			Jar:       jar,
			Timeout:   requestTimeout,
			// A write answers 303 to /cart; following it would double the
			// requests without telling the judge anything.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// products is how many products the cart holds (some of each may be
// uncertain): what a checkout of it changes the stock of.
func (s *shopper) products() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.want {
		if q.lo > 0 {
			n++
		}
	}
	return n
}

// hasSession reports whether the shop has given this shopper a session.
func (s *shopper) hasSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token != ""
}

// lastReplica is the replica that served the shopper's last successful write:
// in memory mode, the one holding its session.
func (s *shopper) lastReplica() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replica
}

// arrive opens the catalog, as a person does before buying: the first
// response of a sticky cluster pins the browser to a replica. Only the first
// call does anything; a failure is recorded and otherwise ignored, as a
// person would just go on.
func (s *shopper) arrive(ctx context.Context) {
	s.mu.Lock()
	done := s.arrived
	s.arrived = true
	s.mu.Unlock()
	if done {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/", nil)
	if err != nil {
		panic(err) // the URL and method are ours
	}
	s.do(req, "opens the catalog", false)
}

// add puts qty of product into the cart, retrying a 5xx or no answer: each
// leaves unknown whether the write happened, so it widens the range the
// judge accepts. It reports false when it gave up.
func (s *shopper) add(ctx context.Context, product, qty int) bool {
	s.arrive(ctx)
	form := url.Values{"product_id": {strconv.Itoa(product)}, "quantity": {strconv.Itoa(qty)}}.Encode()
	for attempt := range attempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				s.rec.giveUp()
				return false
			case <-time.After(retryBase << (attempt - 1)):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/cart/items", strings.NewReader(form))
		if err != nil {
			panic(err) // the URL and method are ours
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, replica, err := s.do(req, fmt.Sprintf("adds %d of product %d", qty, product), attempt > 0)
		switch {
		case err != nil && ctx.Err() != nil:
			s.uncertain(product, qty)
			s.rec.giveUp()
			return false
		case err != nil:
			s.uncertain(product, qty)
			continue
		}
		switch {
		case resp.StatusCode == http.StatusSeeOther:
			s.added(resp, replica, product, qty)
			return true
		case resp.StatusCode >= 500:
			// Even the shop's own 503 may come after the write: when Redis
			// goes down between applying the session's SET and answering
			// it, the commit fails, the page says 503, and the cart holds
			// the items (the redis-outage scenario caught this).
			s.uncertain(product, qty)
			continue
		case resp.StatusCode == http.StatusNotFound:
			s.mu.Lock()
			s.missing = fmt.Sprintf("the shop answers 404 to adding product %d: no such product", product)
			s.mu.Unlock()
			s.rec.giveUp()
			return false
		default:
			// 4xx: retrying the same request cannot help.
			s.rec.giveUp()
			return false
		}
	}
	s.rec.giveUp()
	return false
}

// productMissing is an error when an add met a product the shop does not
// have: a mistake in the script, not an outcome to judge.
func (s *shopper) productMissing() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.missing == "" {
		return nil
	}
	return errors.New(s.missing)
}

// email is the shopper's account: unique to the run, so a cluster the lab
// did not start never has it from an earlier run.
func (s *shopper) email(runID string) string {
	return s.name + "-" + runID + "@lab.example"
}

// labPassword is every lab account's password; guesses use others.
const labPassword = "statelab-lab-password"

// actionGuess is the action of a guessed password: the judge counts them.
const actionGuess = "guesses a password"

// post sends a form, retrying no answer or a 5xx (retry says whether that
// is safe), and returns the last response's status and replica; 0 when
// none came.
func (s *shopper) post(ctx context.Context, path string, form url.Values, action string, retry bool) (*http.Response, string) {
	s.arrive(ctx)
	tries := 1
	if retry {
		tries = attempts
	}
	for attempt := range tries {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ""
			case <-time.After(retryBase << (attempt - 1)):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
		if err != nil {
			panic(err) // the URL and method are ours
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, replica, err := s.do(req, action, attempt > 0)
		if err == nil && resp.StatusCode < 500 {
			return resp, replica
		}
	}
	return nil, ""
}

// renewed takes the token a login or logout gave: a new token the shopper
// expected, not a lost session.
func (s *shopper) renewed(resp *http.Response) {
	for _, c := range resp.Cookies() {
		if c.Name == "session" && c.Value != "" {
			token, _, _ := strings.Cut(c.Value, ".")
			s.token = token
		}
	}
}

// logIn registers the shopper's account the first time, logs in after. It
// returns the status (0 for no answer) and who answered.
func (s *shopper) logIn(ctx context.Context, runID string) (int, string) {
	s.mu.Lock()
	path, action := "/login", "logs in"
	if !s.registered {
		path, action = "/register", "registers and logs in"
	}
	s.mu.Unlock()
	form := url.Values{"email": {s.email(runID)}, "password": {labPassword}}
	resp, replica := s.post(ctx, path, form, action, true)
	if resp == nil {
		return 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.StatusCode == http.StatusSeeOther {
		s.registered = true
		if !s.loggedIn {
			// The account's saved cart joins the browser's.
			for p, r := range s.accountWant {
				w := s.want[p]
				w.lo, w.hi = min(w.lo+r.lo, 99), min(w.hi+r.hi, 99)
				s.want[p] = w
			}
			s.accountWant = nil
		}
		s.loggedIn = true
		s.renewed(resp)
	}
	return resp.StatusCode, replica
}

// logOut logs out: the cart stays with the account.
func (s *shopper) logOut(ctx context.Context) (int, string) {
	resp, replica := s.post(ctx, "/logout", nil, "logs out", true)
	if resp == nil {
		return 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.StatusCode == http.StatusSeeOther {
		if s.loggedIn {
			s.accountWant = s.want
		}
		s.want = map[int]qtyRange{}
		s.loggedIn = false
		s.renewed(resp)
	}
	return resp.StatusCode, replica
}

// checkOut places an order with one idempotency key for every attempt:
// a retry after no answer cannot order twice.
func (s *shopper) checkOut(ctx context.Context, runID, key string) (int, string) {
	form := url.Values{"name": {s.name}, "email": {s.email(runID)}, "address": {"1 Lab Street, Testville"}, "idempotency_key": {key}}
	resp, replica := s.post(ctx, "/checkout", form, "checks out", true)
	if resp == nil {
		return 0, ""
	}
	if resp.StatusCode == http.StatusSeeOther {
		s.mu.Lock()
		s.want = map[int]qtyRange{}
		// The replica that took the order runs its receipt job (with
		// -jobs memory): "replica of NAME" names it.
		s.replica = replica
		if id, ok := strings.CutPrefix(resp.Header.Get("Location"), "/orders/"); ok && id != "" && !slices.Contains(s.orders, id) {
			s.orders = append(s.orders, id)
		}
		s.mu.Unlock()
	}
	return resp.StatusCode, replica
}

// guess sends one wrong password for the shopper's account, once.
func (s *shopper) guess(ctx context.Context, runID string, i int) int {
	form := url.Values{"email": {s.email(runID)}, "password": {fmt.Sprintf("wrong-guess-%04d", i)}}
	resp, _ := s.post(ctx, "/login", form, actionGuess, false)
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// do sends one request, records it and closes the body.
func (s *shopper) do(req *http.Request, action string, retry bool) (*http.Response, string, error) {
	start := time.Now()
	at := s.rec.since()
	resp, err := s.client.Do(req)
	q := Request{Shopper: s.name, Action: action, At: at, Latency: time.Since(start), Retry: retry}
	if err != nil {
		s.rec.request(q)
		return nil, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	q.Status = resp.StatusCode
	q.Replica = resp.Header.Get("X-Served-By")
	s.rec.request(q)
	return resp, q.Replica, nil
}

func (s *shopper) uncertain(product, qty int) {
	s.mu.Lock()
	r := s.want[product]
	r.hi += qty
	s.want[product] = r
	s.mu.Unlock()
}

func (s *shopper) added(resp *http.Response, replica string, product, qty int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.want[product]
	r.lo += qty
	r.hi += qty
	s.want[product] = r
	s.replica = replica
	if k, _ := session.Lookup(resp.Header.Get("X-Session-Store")); k.Traits.Place == session.InBrowser {
		// The cookie is the sealed session itself, resealed on every
		// write: its value says nothing about a new session. A lost one
		// shows in the judge's reads (an unknown session, an empty cart).
		return
	}
	for _, c := range resp.Cookies() {
		if c.Name != "session" || c.Value == "" {
			continue
		}
		// The shopper never logs in, so the token only changes when the
		// replica did not know the session and started a new one. (With a
		// near-cache the cookie also names the session's version, which
		// every write changes: "<token>.<version>".)
		token, _, _ := strings.Cut(c.Value, ".")
		if s.token != "" && token != s.token && s.replaced == "" {
			s.replaced = fmt.Sprintf("%s did not know the session and started a new one at %.2fs", replica, s.rec.since().Seconds())
		}
		s.token = token
	}
}

// cartView is the part of GET /api/session the judge reads.
type cartView struct {
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

// readAttempts is how often the judge asks before it calls a cart
// unreadable: like a person reloading the page for about two seconds. Right
// after a Redis restart a replica's pooled connections fail once each.
const readAttempts = 10

// readCart asks the shop for the cart as the shopper's browser would, through
// the load balancer, retrying when the shop cannot answer.
func (s *shopper) readCart(ctx context.Context) (cartView, error) {
	var last error
	for attempt := range readAttempts {
		if attempt > 0 {
			time.Sleep(min(retryBase<<(attempt-1), 250*time.Millisecond))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/session", nil)
		if err != nil {
			return cartView{}, err
		}
		resp, err := s.client.Do(req)
		if err != nil {
			last = err
			continue
		}
		var v cartView
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		switch {
		case resp.StatusCode != http.StatusOK:
			last = fmt.Errorf("GET /api/session: %s", resp.Status)
		case err != nil:
			last = fmt.Errorf("GET /api/session: %w", err)
		default:
			return v, nil
		}
	}
	if last == nil {
		last = errors.New("GET /api/session: no attempt")
	}
	return cartView{}, last
}

// peek reads the cart the way another device of the shopper's would that
// holds only the session token, not the version of its last write: through
// the load balancer, with a cookie of its own. It returns the cart's item
// count, the fewest items the shopper surely has (its acknowledged adds) and
// who answered.
func (s *shopper) peek(ctx context.Context) (count, acked int, replica, source string, err error) {
	s.mu.Lock()
	token := s.token
	for _, r := range s.want {
		acked += r.lo
	}
	s.mu.Unlock()
	if token == "" {
		return 0, 0, "", "", errors.New("no session yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/session", nil)
	if err != nil {
		return 0, 0, "", "", err
	}
	req.Header.Set("Cookie", "session="+token)
	start, at := time.Now(), s.rec.since()
	other := *s.client
	other.Jar = nil // the other device: its own cookie, the token alone
	resp, err := other.Do(req)
	q := Request{Shopper: s.name, Action: "peeks from another device", At: at, Latency: time.Since(start)}
	if err != nil {
		s.rec.request(q)
		return 0, 0, "", "", err
	}
	defer resp.Body.Close()
	var v struct {
		cartView
		Session struct {
			NearCache string `json:"near_cache"`
		} `json:"session"`
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	q.Status, q.Replica = resp.StatusCode, resp.Header.Get("X-Served-By")
	s.rec.request(q)
	if resp.StatusCode != http.StatusOK || err != nil {
		return 0, 0, q.Replica, "", fmt.Errorf("GET /api/session: %s", resp.Status)
	}
	return v.Cart.Count, acked, q.Replica, v.Session.NearCache, nil
}

// snapshot returns what the shopper believes, for the judge.
func (s *shopper) snapshot() (want map[int]qtyRange, replaced string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want = make(map[int]qtyRange, len(s.want))
	for p, r := range s.want {
		want[p] = r
	}
	return want, s.replaced
}
