package web_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/uploads"
	"github.com/statelab/shop/web"
	"golang.org/x/crypto/bcrypt"
)

// testShop is one replica over a real SQLite file and a real session store.
type testShop struct {
	t     *testing.T
	srv   *httptest.Server
	db    *store.DB
	redis *testenv.Redis
	// sessionKeys are the cookie store's keys (testKey when empty), and
	// cookieLimit its size limit (session.CookieLimit when 0).
	sessionKeys []string
	cookieLimit int
}

// testKey seals cookie sessions in tests.
const testKey = "test-key-0123456789-0123456789-0123456789"

func (ts *testShop) keys() []string {
	if len(ts.sessionKeys) == 0 {
		return []string{testKey}
	}
	return ts.sessionKeys
}

// newShop starts a replica named replica with the given session store; for
// redis it starts a real redis-server on a free port.
func newShop(t *testing.T, kind string) *testShop {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := &testShop{t: t, db: db}
	if kind == session.Redis {
		ts.redis = testenv.StartRedis(t)
	}
	return ts.serve(ts.parts(kind, "shop1", true), db, "shop1")
}

// replicaParts is what main builds for one replica: its session store,
// observed by its metrics, and the Redis client the replicas share (nil
// without one).
type replicaParts struct {
	sessions session.Store
	redis    *redisclient.Client
	metrics  *web.Metrics
	// photos is the replica's review photo store: a directory of its own
	// unless a test puts another there.
	photos web.Photos
	// live is the replica's event hub; nil lets the Server make a local
	// one of its own.
	live web.Live
}

// parts builds a replica's parts over ts's Redis, closed when the test ends.
func (ts *testShop) parts(kind, replica string, lock bool) replicaParts {
	ts.t.Helper()
	p := replicaParts{metrics: web.NewMetrics(replica, kind), photos: diskPhotos(ts.t, replica)}
	o := session.Options{Lock: lock, Observer: p.metrics}
	switch kind {
	case session.Redis:
		p.redis = redisclient.New(redisclient.Config{Addr: ts.redis.Addr()})
		p.sessions = session.NewRedis(p.redis, o)
	case session.Cookie:
		if ts.redis != nil { // a Redis for the shared services, if the test has one
			p.redis = redisclient.New(redisclient.Config{Addr: ts.redis.Addr()})
		}
		var err error
		p.sessions, err = session.NewCookie(session.CookieOptions{Keys: ts.keys(), Epochs: ts.db, Limit: ts.cookieLimit}, o)
		if err != nil {
			ts.t.Fatal(err)
		}
	default:
		p.sessions = session.NewMemory(o)
	}
	if p.redis != nil {
		p.metrics.WatchRedisPool(p.redis.ActiveConns)
	}
	ts.t.Cleanup(func() {
		p.sessions.Close()
		if p.redis != nil {
			p.redis.Close()
		}
	})
	return p
}

// newServer is a replica's handler over p.
func (ts *testShop) newServer(p replicaParts, db web.Store, cfg web.Config) *web.Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(&testWriter{ts.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
	}
	// One bcrypt hash at the default cost takes a second or more under the
	// race detector, most of the package's time: replicas hash at the
	// lowest cost unless a test is about hashing taking time
	// (TestPasswordHashingIsBounded, TestLoginBurst set the default).
	if cfg.PasswordCost == 0 {
		cfg.PasswordCost = bcrypt.MinCost
	}
	cfg.Metrics = p.metrics
	if p.redis != nil { // as main hands the shared services over
		if cfg.Limiter == nil {
			cfg.Limiter = redisclient.NewSharedLimiter(p.redis, redisclient.Limits{}, cfg.Logger)
		}
		cfg.Presence = redisclient.NewPresence(p.redis)
		cfg.Board = redisclient.NewBoard(p.redis)
	}
	if p.photos == nil { // parts built by hand
		p.photos = diskPhotos(ts.t, cfg.Replica)
	}
	return web.NewServer(cfg, db, p.sessions, p.live, p.photos)
}

// diskPhotos is a replica's own photo directory (its disk).
func diskPhotos(t testing.TB, replica string) *uploads.Disk {
	t.Helper()
	d, err := uploads.NewDisk(filepath.Join(t.TempDir(), replica+"-uploads"), replica)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (ts *testShop) serve(p replicaParts, db *store.DB, replica string) *testShop {
	ts.srv = httptest.NewServer(ts.newServer(p, db, web.Config{Replica: replica}))
	ts.t.Cleanup(ts.srv.Close)
	return ts
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// client is one browser: its own cookie jar, redirects not followed so each
// status is seen.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func (ts *testShop) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: ts.t, base: ts.srv.URL, http: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status int
	header http.Header
	body   string
	doc    *goquery.Document
}

// testid returns the trimmed text of the first element with data-testid=id.
func (r *response) testid(id string) string {
	return strings.TrimSpace(r.doc.Find(`[data-testid="` + id + `"]`).First().Text())
}

func (r *response) count(id string) int { return r.doc.Find(`[data-testid="` + id + `"]`).Length() }

func (c *client) do(req *http.Request) *response {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	doc, _ := goquery.NewDocumentFromReader(strings.NewReader(string(b)))
	return &response{status: resp.StatusCode, header: resp.Header, body: string(b), doc: doc}
}

func (c *client) get(path string) *response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

func (c *client) post(path string, form url.Values) *response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

func (c *client) add(productID, quantity int) *response {
	c.t.Helper()
	return c.post("/cart/items", url.Values{"product_id": {strconv.Itoa(productID)}, "quantity": {strconv.Itoa(quantity)}})
}

// apiSession is the contract's /api/session shape.
type apiSession struct {
	Replica string `json:"replica"`
	Store   string `json:"store"`
	Session struct {
		State string `json:"state"`
		Born  string `json:"born"`
	} `json:"session"`
	Cart struct {
		Count int `json:"count"`
		Rev   int `json:"rev"`
		Items []struct {
			ProductID int64 `json:"product_id"`
			Quantity  int   `json:"quantity"`
		} `json:"items"`
	} `json:"cart"`
}

func (c *client) session() apiSession {
	c.t.Helper()
	r := c.get("/api/session")
	if r.status != http.StatusOK {
		c.t.Fatalf("GET /api/session: %d %s", r.status, r.body)
	}
	var s apiSession
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		c.t.Fatalf("GET /api/session: %v in %s", err, r.body)
	}
	return s
}

func sessionCookieSet(r *response) bool {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "session" {
			return true
		}
	}
	return false
}

func stores() []string { return session.Kinds() }
