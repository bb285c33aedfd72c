package web_test

// The near-cache across three replicas: each its own web.Server, its own
// Redis client and near-cached store with its own invalidation connection,
// over one real Redis and one database, served over HTTP. Browsers are
// plain HTTP clients that keep the session cookie themselves, so a test
// can also play one that knows the token but not its last version.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

// cachedCluster starts n replicas with near-caches over one Redis.
func cachedCluster(t *testing.T, n int, co session.CacheOptions) []string {
	t.Helper()
	r := testenv.StartRedis(t)
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var urls []string
	for i := range n {
		name := "shop" + strconv.Itoa(i+1)
		rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
		metrics := web.NewMetrics(name, session.Redis)
		st := session.NewCachedRedis(rc, session.Options{Lock: true, Observer: metrics}, co)
		srv := httptest.NewServer(web.NewServer(web.Config{Replica: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics,
			Limiter: redisclient.NewSharedLimiter(rc, redisclient.Limits{}, nil), Presence: redisclient.NewPresence(rc), Board: redisclient.NewBoard(rc)}, db, st, nil, diskPhotos(t, name)))
		t.Cleanup(func() {
			srv.Close()
			st.Close()
			rc.Close()
		})
		waitLive(t, st)
		urls = append(urls, srv.URL)
	}
	return urls
}

func waitLive(t *testing.T, st *session.CachedRedisStore) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, _, live := st.CacheStats(); live {
			return
		}
	}
	t.Fatal("the near-cache's invalidation connection did not subscribe within 5 s")
}

// shopper is a browser that keeps its session cookie itself.
type shopper struct {
	t      *testing.T
	http   *http.Client
	cookie string // the session cookie's value, "" before the first write
}

func newShopper(t *testing.T) *shopper {
	return &shopper{t: t, http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (s *shopper) send(req *http.Request) (*http.Response, []byte) {
	s.t.Helper()
	if s.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: s.cookie})
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			s.cookie = c.Value
		}
	}
	return resp, body
}

// add puts one of product into the cart on the replica at base; the write
// is acknowledged by its 303.
func (s *shopper) add(base string, product int) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/cart/items", strings.NewReader(url.Values{"product_id": {strconv.Itoa(product)}, "quantity": {"1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := s.send(req); resp.StatusCode != http.StatusSeeOther {
		s.t.Fatalf("add on %s: %d %s", base, resp.StatusCode, body)
	}
}

// cachedView is what /api/session says of the cart and where it came from.
type cachedView struct {
	Session struct {
		NearCache string `json:"near_cache"`
		Version   int64  `json:"version"`
	} `json:"session"`
	Cart struct {
		Count int `json:"count"`
	} `json:"cart"`
}

func (s *shopper) read(base string) cachedView {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/session", nil)
	resp, body := s.send(req)
	var v cachedView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		s.t.Fatalf("GET /api/session on %s: %d %s", base, resp.StatusCode, body)
	}
	return v
}

// TestNearCacheReadYourWrites is the property: shoppers write and read one
// session each, on replicas picked at random, and no read ever shows less
// than the shopper's last acknowledged write. It holds with invalidation,
// and by the cookie's version alone without it; the last case drops the
// version from the cookie with invalidation off, to show that the check
// catches stale reads when nothing prevents them.
func TestNearCacheReadYourWrites(t *testing.T) {
	for _, tc := range []struct {
		name          string
		invalidation  bool
		keepVersion   bool
		wantViolation bool
	}{
		{"invalidation and version", true, true, false},
		{"version only", false, true, false},
		{"neither (the check can fail)", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replicas := cachedCluster(t, 3, session.CacheOptions{NoInvalidation: !tc.invalidation})
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			const shoppers, steps = 6, 120
			var mu sync.Mutex
			var violations []string
			hits := 0
			var wg sync.WaitGroup
			for i := range shoppers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(i)))
					s := newShopper(t)
					acked := 0
					for step := range steps {
						base := replicas[rng.IntN(len(replicas))]
						if acked == 0 || rng.IntN(2) == 0 {
							s.add(base, 1+rng.IntN(24))
							acked++
							continue
						}
						if !tc.keepVersion {
							s.cookie, _, _ = strings.Cut(s.cookie, ".")
						}
						v := s.read(base)
						mu.Lock()
						if v.Session.NearCache == session.CacheHit {
							hits++
						}
						if v.Cart.Count < acked {
							violations = append(violations, "shopper "+strconv.Itoa(i)+" step "+strconv.Itoa(step)+" on "+base+
								": read "+strconv.Itoa(v.Cart.Count)+" items from "+v.Session.NearCache+" after "+strconv.Itoa(acked)+" acknowledged")
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			t.Logf("%d near-cache hits; %d stale reads", hits, len(violations))
			if hits == 0 {
				t.Error("no read was served from a near-cache: the property was never put to the test")
			}
			switch {
			case tc.wantViolation && len(violations) == 0:
				t.Error("no stale read caught without invalidation or version: the check cannot fail")
			case !tc.wantViolation && len(violations) > 0:
				t.Errorf("%d reads showed less than the last acknowledged write, first: %s", len(violations), violations[0])
			}
		})
	}
}

// TestNearCacheOtherClientSeesWrite: a second client that holds only the
// session's token, no version, sees a write made on another replica within
// 100 ms, though its replica had the session cached. Without invalidation
// it does not: the copy stays.
func TestNearCacheOtherClientSeesWrite(t *testing.T) {
	for _, invalidation := range []bool{true, false} {
		t.Run("invalidation="+strconv.FormatBool(invalidation), func(t *testing.T) {
			replicas := cachedCluster(t, 3, session.CacheOptions{NoInvalidation: !invalidation})
			writer, watcher := newShopper(t), newShopper(t)
			writer.add(replicas[0], 1)
			stale := 0
			for round := range 5 {
				watcher.cookie, _, _ = strings.Cut(writer.cookie, ".")
				on := replicas[1+round%2]
				want := round + 1
				// The watcher's replica holds the session in its cache.
				for deadline := time.Now().Add(time.Second); ; {
					v := watcher.read(on)
					if v.Session.NearCache == session.CacheHit && (v.Cart.Count == want || !invalidation) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("round %d: %s never served the session from its near-cache", round, on)
					}
				}
				writer.add(replicas[0], 2)
				start := time.Now()
				for watcher.read(on).Cart.Count != want+1 {
					if time.Since(start) > 100*time.Millisecond {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
				if watcher.read(on).Cart.Count != want+1 {
					stale++
				}
			}
			switch {
			case invalidation && stale > 0:
				t.Errorf("%d of 5 writes stayed invisible to a client without the version for over 100 ms", stale)
			case !invalidation && stale == 0:
				t.Error("without invalidation the other client still saw every write: the check cannot fail")
			}
		})
	}
}

// TestNearCacheVisible: the inspector says the answer came from the
// near-cache, and /metrics counts the hit.
func TestNearCacheVisible(t *testing.T) {
	base := cachedCluster(t, 1, session.CacheOptions{})[0]
	s := newShopper(t)
	s.add(base, 1)
	for deadline := time.Now().Add(time.Second); s.read(base).Session.NearCache != session.CacheHit; {
		if time.Now().After(deadline) {
			t.Fatal("never served from the near-cache")
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/session", nil)
	resp, body := s.send(req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-testid="inspector-near-cache"`) ||
		!strings.Contains(string(body), "came from shop1&#39;s near-cache") {
		t.Errorf("the inspector does not say the answer came from the near-cache: %d\n%s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/metrics", nil)
	_, body = s.send(req)
	hit := regexp.MustCompile(`(?m)^shop_session_near_cache_total\{event="hit"[^}]*\} ([0-9]+)$`).FindSubmatch(body)
	if hit == nil || string(hit[1]) == "0" {
		t.Errorf("/metrics counts no near-cache hit:\n%s", regexp.MustCompile(`(?m)^shop_session_near_cache.*$`).FindAll(body, -1))
	}
}
