package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// replicaAt is another replica named name over the same database as shop,
// with its own session backend: a fresh memory store (another process), or
// the same Redis (a stateless sibling). It returns the replica's server too,
// for Announce.
func (ts *testShop) replicaAt(name string, kind string) (*httptest.Server, *web.Server) {
	ts.t.Helper()
	srv := ts.newServer(ts.parts(kind, name, true), ts.db, web.Config{Replica: name})
	hs := httptest.NewServer(srv)
	ts.t.Cleanup(hs.Close)
	return hs, srv
}

// at is the same browser (cookie jar) talking to another replica. Cookies
// ignore ports, so every replica on 127.0.0.1 sees the same cookies, as
// replicas behind one nginx would.
func (c *client) at(base string) *client {
	return &client{t: c.t, base: base, http: c.http}
}

// ribbon is what a page's ribbon says.
type ribbon struct {
	servedBy, store, state, born, writer, rev, unknown, home, trail, stateText string
}

func ribbonOf(r *response) ribbon {
	var rb ribbon
	rb.servedBy = r.testid("served-by")
	rb.store = r.testid("session-store")
	rb.state, _ = r.doc.Find(`[data-testid="session-state"]`).Attr("data-state")
	rb.stateText = strings.Join(strings.Fields(r.testid("session-state")), " ")
	rb.born = r.testid("born-on")
	rb.writer = r.testid("last-writer")
	rb.rev = r.testid("cart-rev")
	rb.unknown = r.testid("unknown-session")
	rb.home = r.testid("session-home")
	var stops []string
	r.doc.Find(`[data-testid="trail-stop"]`).Each(func(_ int, s *goquery.Selection) {
		stops = append(stops, strings.TrimSpace(s.Text()))
	})
	rb.trail = strings.Join(stops, " ")
	return rb
}

// TestRibbon: what the ribbon says per store and per situation: a new
// browser, the replica that wrote the cart, another replica, and a session
// this replica does not know.
func TestRibbon(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()

			rb := ribbonOf(c.get("/"))
			if rb.servedBy != "shop1" || rb.store != kind || rb.state != "none" || rb.trail != "shop1" {
				t.Errorf("new browser: ribbon %+v, want shop1/%s, state none, trail shop1", rb, kind)
			}

			// Same replica: it wrote the cart and knows it.
			c.add(1, 2)
			r := c.get("/cart")
			rb = ribbonOf(r)
			if rb.state != "known" || rb.born != "shop1" || rb.writer != "shop1" || rb.rev != "1" || rb.unknown != "" {
				t.Errorf("same replica: ribbon %+v, want known, born and written on shop1, cart version 1", rb)
			}
			wantLives := map[string]string{session.Memory: "your cart lives only in shop1's memory", session.Redis: "your cart lives in Redis, shared by every replica",
				session.Cookie: "your cart lives in your browser (sealed, " + strconv.Itoa(len("session=")+len(c.cookie("session"))) + " bytes)"}[kind]
			if got := r.testid("cart-lives"); got != wantLives {
				t.Errorf("same replica: ribbon says %q, want %q", got, wantLives)
			}
			if rb.trail != "shop1 shop1 shop1" {
				t.Errorf("same replica: trail %q, want shop1 ×3 (catalog, add, cart)", rb.trail)
			}

			// Another replica: shares the cart with redis, has never seen it with memory.
			other, _ := shop.replicaAt("shop2", kind)
			r = c.at(other.URL).get("/cart")
			rb = ribbonOf(r)
			if rb.servedBy != "shop2" || rb.trail != "shop1 shop1 shop1 shop2" {
				t.Errorf("other replica: served by %q, trail %q", rb.servedBy, rb.trail)
			}
			switch kind {
			case session.Redis, session.Cookie:
				if rb.state != "known" || rb.born != "shop1" || rb.writer != "shop1" || r.testid("cart-count") != "2" {
					t.Errorf("%s, other replica: ribbon %+v, cart %q; want the cart born and written on shop1", kind, rb, r.testid("cart-count"))
				}
			case session.Memory:
				want := "this replica has never seen your session: with memory sessions, your cart lived on shop1"
				if rb.state != "unknown" || rb.home != "shop1" || !strings.Contains(rb.stateText, want) {
					t.Errorf("memory, other replica: ribbon %+v\nwant it to say %q", rb, want)
				}
				if got := r.testid("cart-count"); got != "0" {
					t.Errorf("memory, other replica: cart-count %q, want 0", got)
				}
			}

			// Unknown session: the replica that issued it restarted (memory),
			// or the store lost it (redis).
			switch kind {
			case session.Memory:
				restarted, _ := shop.replicaAt("shop1", kind)
				rb = ribbonOf(c.at(restarted.URL).get("/"))
				if rb.state != "unknown" || !strings.Contains(rb.stateText, "this replica created your session but no longer has it") {
					t.Errorf("memory, restarted replica: ribbon %+v", rb)
				}
			case session.Redis:
				req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
				req.Header.Set("Cookie", "session="+strings.Repeat("A", 43))
				rb = ribbonOf(shop.client().do(req))
				if rb.state != "unknown" || !strings.Contains(rb.stateText, "the session store has no session for your cookie") || rb.home != "" {
					t.Errorf("redis, unknown token: ribbon %+v", rb)
				}
			case session.Cookie:
				req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
				req.Header.Set("Cookie", "session="+c.cookie("session")[:40]+"tampered")
				rb = ribbonOf(shop.client().do(req))
				if rb.state != "unknown" || !strings.Contains(rb.stateText, "your session cookie could not be used") || !strings.Contains(rb.stateText, "tampered") {
					t.Errorf("cookie, tampered: ribbon %+v", rb)
				}
			}
		})
	}
}

// TestRibbonUnknownWithoutHome: a memory replica that does not know the
// session and has no trustworthy record of where it was born says so
// without naming a replica. A forged or stale session_home is ignored.
func TestRibbonUnknownWithoutHome(t *testing.T) {
	shop := newShop(t, session.Memory)
	for name, cookie := range map[string]string{
		"no home cookie":     "",
		"home of another":    "; session_home=shop7.00000000",
		"forged markup home": "; session_home=<b>x</b>.12345678",
	} {
		req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
		req.Header.Set("Cookie", "session="+strings.Repeat("B", 43)+cookie)
		rb := ribbonOf(shop.client().do(req))
		if rb.state != "unknown" || rb.home != "" || !strings.Contains(rb.stateText, "your cart lives only on the replica that created it") {
			t.Errorf("%s: ribbon %+v", name, rb)
		}
	}
}

// TestTrailCookie: the trail is strictly parsed, capped at five, HttpOnly
// and SameSite=Lax, and not rewritten when it does not change.
func TestTrailCookie(t *testing.T) {
	shop := newShop(t, session.Memory)
	for _, tc := range []struct{ sent, want string }{
		{"", "shop1"},
		{"shop9.shop8", "shop9 shop8 shop1"},
		{"a.b.c.d.e", "b c d e shop1"},
		{"a.b.c.d.e.f", "shop1"},                     // more than five: not one we wrote
		{"shop2.<script>alert(1)</script>", "shop1"}, // markup: the whole cookie goes
		{"shop2..shop3", "shop1"},
		{strings.Repeat("x", 40), "shop1"},
	} {
		req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
		if tc.sent != "" {
			req.AddCookie(&http.Cookie{Name: "trail", Value: tc.sent})
		}
		r := shop.client().do(req)
		if got := ribbonOf(r).trail; got != tc.want {
			t.Errorf("trail cookie %q: ribbon trail %q, want %q", tc.sent, got, tc.want)
		}
		var set *http.Cookie
		for _, ck := range (&http.Response{Header: r.header}).Cookies() {
			if ck.Name == "trail" {
				set = ck
			}
		}
		if set == nil || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" || set.Value != strings.ReplaceAll(tc.want, " ", ".") {
			t.Errorf("trail cookie %q: Set-Cookie %+v, want HttpOnly SameSite=Lax Path=/ %q", tc.sent, set, tc.want)
		}
	}

	// A sticky browser on its replica: the trail does not change, no cookie.
	req, _ := http.NewRequest(http.MethodGet, shop.srv.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: "trail", Value: "shop1.shop1.shop1.shop1.shop1"})
	r := shop.client().do(req)
	if got := r.header.Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("unchanged trail: Set-Cookie %q, want none", got)
	}
}

// TestSessionInspector: /session shows the session as this replica sees it
// without ever showing the whole token, and explains both stores.
func TestSessionInspector(t *testing.T) {
	for _, kind := range stores() {
		t.Run(kind, func(t *testing.T) {
			shop := newShop(t, kind)
			c := shop.client()
			if r := c.get("/session"); r.status != 200 || r.count("inspector-none") != 1 {
				t.Errorf("GET /session without a session: %d, inspector-none %d", r.status, r.count("inspector-none"))
			}
			c.add(3, 1)
			r := c.get("/session")
			token := c.cookie("session")
			if r.status != 200 || (kind != session.Cookie && len(token) != 43) {
				t.Fatalf("GET /session: %d, token %q", r.status, token)
			}
			if strings.Contains(r.body, token) || strings.Contains(r.body, token[:12]) {
				t.Error("the inspector shows the session cookie")
			}
			if kind == session.Cookie {
				if got := r.testid("inspector-token"); !strings.HasPrefix(got, "the session itself, encrypted and authenticated") {
					t.Errorf("inspector token %q", got)
				}
				if strings.Contains(r.body, "<dt>Token</dt>") {
					t.Error("a cookie session's inspector speaks of a token")
				}
				if got := r.testid("inspector-sealed-with"); !strings.HasPrefix(got, "key 1 of 1") {
					t.Errorf("sealed with %q, want key 1 of 1", got)
				}
				if got := r.testid("inspector-size"); !strings.HasPrefix(got, strconv.Itoa(len("session=")+len(token))+" bytes in your browser's cookie") {
					t.Errorf("size %q, want the cookie's bytes", got)
				}
			} else if got := r.testid("inspector-token"); !strings.HasPrefix(got, token[:6]) {
				t.Errorf("inspector token %q, want it to start like %q", got, token[:6])
			}
			if r.count("risk") != 3 {
				t.Errorf("%d risks explained, want 3 (Redis outage, key change, logout)", r.count("risk"))
			}
			var keys []string
			r.doc.Find(`[data-testid="inspector-key"]`).Each(func(_ int, s *goquery.Selection) {
				keys = append(keys, s.AttrOr("data-key", ""))
			})
			if got := strings.Join(keys, " "); got != "born born_at cart sid writer" {
				t.Errorf("raw keys %q", got)
			}
			if got := r.testid("inspector-size"); got == "" || strings.HasPrefix(got, "0 ") {
				t.Errorf("size %q", got)
			}
			if got := r.testid("inspector-ttl"); !strings.Contains(got, "23h") && !strings.Contains(got, "24h") {
				t.Errorf("TTL %q, want about 24h", got)
			}
			wantLock := map[string]string{session.Memory: "free", session.Redis: "free", session.Cookie: "none: -session-lock has no effect with cookies"}[kind]
			if got := r.testid("inspector-lock"); !strings.HasPrefix(got, wantLock) {
				t.Errorf("lock %q, want %q", got, wantLock)
			}
			if first, _ := r.doc.Find(`[data-testid="story"]`).First().Attr("data-store"); first != kind || r.count("story") != len(session.Kinds()) {
				t.Errorf("stories: first %q of %d, want %s first of %d", first, r.count("story"), kind, len(session.Kinds()))
			}
			if kind == session.Redis {
				// A write in flight on another replica holds the lock in Redis.
				conn, err := redis.Dial("tcp", shop.redis.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.Do("SET", "lock:session:"+token, "x", "PX", 5000); err != nil {
					t.Fatal(err)
				}
				if got := c.get("/session").testid("inspector-lock"); !strings.HasPrefix(got, "held") {
					t.Errorf("lock while held: %q", got)
				}
			}
		})
	}
}

// TestInspectorShowsRenewal: after a login-style renewal the inspector says
// the token changed and why.
func TestInspectorShowsRenewal(t *testing.T) {
	shop := newShop(t, session.Memory)
	c := shop.client()
	c.add(1, 1)
	before := c.cookie("session")
	if r := c.post("/register", url.Values{"email": {"grace@example.com"}, "password": {"a long enough password"}}); r.status != http.StatusSeeOther {
		t.Fatalf("register: %d", r.status)
	}
	after := c.cookie("session")
	r := c.get("/session")
	if before == after || !strings.Contains(r.testid("renewed"), "register") {
		t.Errorf("token %q → %q; inspector says %q, want the renewal at register", before[:6], after[:6], r.testid("renewed"))
	}
	if got := r.testid("inspector-token"); !strings.HasPrefix(got, after[:6]) {
		t.Errorf("inspector token %q, want the new token %q…", got, after[:6])
	}
}

// TestClusterView: memory replicas speak only for themselves; redis
// replicas see each other's announcements, which vanish when the announcer
// stops.
func TestClusterView(t *testing.T) {
	t.Run(session.Memory, func(t *testing.T) {
		shop := newShop(t, session.Memory)
		r := shop.client().get("/cluster")
		if r.status != 200 || r.count("member") != 1 || r.count("cluster-memory") != 1 {
			t.Errorf("GET /cluster: %d, %d members, memory note %d", r.status, r.count("member"), r.count("cluster-memory"))
		}
	})
	t.Run(session.Redis, func(t *testing.T) {
		shop := newShop(t, session.Redis)
		_, shop2 := shop.replicaAt("shop2", session.Redis)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { shop2.Announce(ctx, "127.0.0.1:9999"); close(done) }()

		members := func() map[string]string {
			r := shop.client().get("/cluster")
			m := map[string]string{}
			r.doc.Find(`[data-testid="member"]`).Each(func(_ int, s *goquery.Selection) {
				m[s.AttrOr("data-replica", "")] = s.AttrOr("data-ready", "")
				if s.AttrOr("data-gone", "") == "true" {
					m[s.AttrOr("data-replica", "")] = "gone"
				}
			})
			return m
		}
		deadline := time.Now().Add(5 * time.Second)
		for members()["shop2"] != "true" {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("shop2 never showed up ready on shop1's /cluster: %v", members())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := members(); got["shop1"] != "true" {
			t.Errorf("shop1 does not list itself ready: %v", got)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatal("Announce did not return after its context ended")
		}
		// Withdrawn at once, and kept as a gone row for a while so the
		// class sees it go.
		if got := members(); got["shop2"] != "gone" {
			t.Errorf("shop2 after its announcer stopped: %q, want a gone row: %v", got["shop2"], got)
		}
	})
}
