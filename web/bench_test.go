package web

// Go benchmarks of the hot handlers and of the session store, each over
// memory, a real Redis, and a real Redis behind the near-cache (the cached
// read: Session/redis+cache/load) (make benchcmp compares them with
// docs/bench-baseline.txt). They call the whole Server — middleware,
// session, handler, render — without a network in between, so they show
// what the replica itself spends per request; the cluster bench
// (scenarios/bench) shows the rest.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/uploads"
)

// redisCached names the redis store with its near-cache in the benchmarks.
const redisCached = "redis+cache"

// benchKinds are the stores each benchmark runs over.
var benchKinds = []string{session.Memory, session.Redis, redisCached, session.Cookie}

// benchServer is one replica over a fresh SQLite file and the given store,
// logging at info to nowhere: the log line is part of a request's cost.
func benchServer(b *testing.B, kind string) *Server {
	b.Helper()
	db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "shop.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storeKind := kind
	if kind == redisCached {
		storeKind = session.Redis
	}
	metrics := NewMetrics("shop1", storeKind)
	opts := session.Options{Lock: true, Observer: metrics}
	var sessions session.Store
	var rc *redisclient.Client
	switch kind {
	case session.Redis, redisCached:
		rc = redisclient.New(redisclient.Config{Addr: testenv.StartRedis(b).Addr()})
		b.Cleanup(func() { rc.Close() })
		if kind == redisCached {
			cached := session.NewCachedRedis(rc, opts, session.CacheOptions{})
			waitCacheLive(b, cached)
			sessions = cached
		} else {
			sessions = session.NewRedis(rc, opts)
		}
	case session.Cookie:
		sessions, err = session.NewCookie(session.CookieOptions{Keys: []string{"bench-key-0123456789-0123456789-0123456789"}, Epochs: db}, opts)
		if err != nil {
			b.Fatal(err)
		}
	default:
		sessions = session.NewMemory(opts)
	}
	b.Cleanup(func() { sessions.Close() })
	log := slog.New(NewLogHandler(slog.NewJSONHandler(io.Discard, nil))).With("replica", "shop1")
	photos, err := uploads.NewDisk(filepath.Join(b.TempDir(), "uploads"), "shop1")
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Replica: "shop1", Logger: log, Metrics: metrics}
	if rc != nil { // as main hands the shared services over
		cfg.Limiter = redisclient.NewSharedLimiter(rc, redisclient.Limits{}, log)
		cfg.Presence = redisclient.NewPresence(rc)
		cfg.Board = redisclient.NewBoard(rc)
	}
	return NewServer(cfg, db, sessions, nil, photos)
}

// waitCacheLive waits, bounded, until the near-cache's invalidation
// connection is subscribed: until then it serves nothing.
func waitCacheLive(tb testing.TB, c *session.CachedRedisStore) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, _, live := c.CacheStats(); live {
			return
		}
	}
	tb.Fatal("near-cache: invalidation connection not subscribed after 5s")
}

// newSession adds one item through the handler, as a browser's first add,
// and returns the session cookie.
func newSession(b *testing.B, s *Server) *http.Cookie {
	b.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, addRequest(1, nil))
	for _, c := range rec.Result().Cookies() {
		if c.Name == "session" {
			return c
		}
	}
	b.Fatalf("first add: %d, no session cookie", rec.Code)
	return nil
}

func addRequest(productID int, cookie *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/cart/items", strings.NewReader("product_id="+strconv.Itoa(productID)+"&quantity=1"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return r
}

// discard is a ResponseWriter that keeps only the status: httptest's
// recorder would count its own buffer's growth as the handler's.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(status int)      { d.status = status }

func (d *discard) reset() {
	clear(d.h)
	d.status = 0
}

func BenchmarkPages(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			s := benchServer(b, kind)
			cookie := newSession(b, s)
			cat, err := s.catalog.load(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			get := func(path string, want int) func(b *testing.B) {
				return func(b *testing.B) {
					w := &discard{h: http.Header{}}
					r := httptest.NewRequest(http.MethodGet, path, nil)
					r.AddCookie(cookie)
					b.ReportAllocs()
					for b.Loop() {
						w.reset()
						s.ServeHTTP(w, r)
						if w.status != want {
							b.Fatalf("GET %s: %d", path, w.status)
						}
					}
				}
			}
			b.Run("catalog", get("/", http.StatusOK))
			b.Run("product", get("/products/"+cat.products[0].Slug, http.StatusOK))
			b.Run("cart", get("/cart", http.StatusOK))
			b.Run("add", func(b *testing.B) {
				w := &discard{h: http.Header{}}
				cookie := newSession(b, s)
				n := 0
				b.ReportAllocs()
				for b.Loop() {
					// A line holds at most 99: move to a fresh session well
					// before any line of this one fills up.
					if n++; n == len(cat.products)*90 {
						b.StopTimer()
						cookie, n = newSession(b, s), 1
						b.StartTimer()
					}
					w.reset()
					s.ServeHTTP(w, addRequest(n%len(cat.products)+1, cookie))
					if w.status != http.StatusSeeOther {
						b.Fatalf("add: %d", w.status)
					}
				}
			})
		})
	}
}

// BenchmarkSession is the session store alone: a load (one Redis GET) and
// a load-modify-save (GET, then SET ... PXAT), with a cart of
// three lines, through the session package's JSON encoding.
func BenchmarkSession(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			s := benchServer(b, kind)
			ctx := context.Background()
			sess, err := s.sessions.Load(ctx, "", false)
			if err != nil {
				b.Fatal(err)
			}
			sess.Touch("shop1")
			sess.SetCart(json.RawMessage(`{"v":1,"rev":3,"items":[{"product_id":1,"quantity":2},{"product_id":4,"quantity":1},{"product_id":7,"quantity":5}]}`))
			token, _, err := s.sessions.Save(ctx, sess)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("load", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sess, err := s.sessions.Load(ctx, token, false)
					if err != nil || sess.SID() == "" {
						b.Fatalf("load: %v", err)
					}
				}
			})
			b.Run("load-commit", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sess, err := s.sessions.Load(ctx, token, false)
					if err != nil {
						b.Fatal(err)
					}
					sess.Touch("shop1")
					if _, _, err := s.sessions.Save(ctx, sess); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
