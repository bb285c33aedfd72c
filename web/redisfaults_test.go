package web_test

// Redis that answers but refuses (out of memory, a password it wants), and
// a session whose lock another request holds: each named for what it is.

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// redisDo runs one command on the test's Redis, outside the shop.
func redisDo(t *testing.T, addr, password string, cmd string, args ...any) any {
	t.Helper()
	opts := []redis.DialOption{}
	if password != "" {
		opts = append(opts, redis.DialPassword(password))
	}
	conn, err := redis.Dial("tcp", addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reply, err := conn.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return reply
}

// cookieValue is the value of the client's cookie name, "" without one.
func (c *client) cookieValue(name string) string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// setCookie gives the client a cookie for its server.
func (c *client) setCookie(name, value string) {
	u, _ := url.Parse(c.base)
	c.http.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// TestRedisOutOfMemory: a Redis at maxmemory with noeviction refuses
// writes: the write is a 503 that says Redis is out of memory, /readyz is
// 503 and says the same, reads still work, and all of it ends when Redis
// has room again.
func TestRedisOutOfMemory(t *testing.T) {
	shop := newShop(t, session.Redis)
	c := shop.client()
	if r := c.add(1, 2); r.status != http.StatusSeeOther {
		t.Fatalf("add: %d", r.status)
	}
	addr := shop.redis.Addr()
	redisDo(t, addr, "", "CONFIG", "SET", "maxmemory-policy", "noeviction")
	redisDo(t, addr, "", "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { redisDo(t, addr, "", "CONFIG", "SET", "maxmemory", "0") })

	r := c.add(1, 1)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("add with Redis out of memory: %d (Retry-After %q), want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if msg := r.testid("error-message") + r.testid("store-notice"); !strings.Contains(msg, "out of memory") || strings.Contains(msg, "not answering") {
		t.Errorf("the 503 page says %q; want it to name Redis out of memory, not 'not answering'", msg)
	}
	if got := c.get("/readyz"); got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "out of memory") {
		t.Errorf("/readyz with Redis refusing writes: %d %q, want 503 naming out of memory", got.status, got.body)
	}
	if got := c.session(); got.Cart.Count != 2 {
		t.Errorf("reads with Redis out of memory: cart %d, want 2", got.Cart.Count)
	}

	redisDo(t, addr, "", "CONFIG", "SET", "maxmemory", "0")
	c.waitFor("/readyz", http.StatusOK, "not ready once Redis has room")
	if r := c.add(1, 1); r.status != http.StatusSeeOther {
		t.Errorf("add once Redis has room: %d", r.status)
	}
}

// TestRedisPasswordRequired: a Redis with requirepass refuses a replica
// without the password (NOAUTH), and pages, /readyz and the log say so; a
// replica given the password works.
func TestRedisPasswordRequired(t *testing.T) {
	shop := newShop(t, session.Redis)
	before := shop.client()
	before.add(1, 1)
	addr := shop.redis.Addr()
	redisDo(t, addr, "", "CONFIG", "SET", "requirepass", "s3cret")
	t.Cleanup(func() { redisDo(t, addr, "s3cret", "CONFIG", "SET", "requirepass", "") })

	var logs testenv.Buffer
	without := shop.parts(session.Redis, "shop1", true)
	shop.srv = httptest.NewServer(shop.newServer(without, shop.db, web.Config{Replica: "shop1",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}))
	t.Cleanup(shop.srv.Close)
	c := shop.client()
	c.setCookie("session", before.cookieValue("session"))
	r := c.add(1, 1)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("add without the password: %d, want 503", r.status)
	}
	if msg := r.testid("error-message"); !strings.Contains(msg, "password") {
		t.Errorf("the 503 page says %q; want it to name the refused password", msg)
	}
	if got := c.get("/").testid("store-trouble"); !strings.Contains(got, "password") {
		t.Errorf("ribbon says %q; want the refused password", got)
	}
	if got := c.get("/readyz"); got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "password") {
		t.Errorf("/readyz without the password: %d %q", got.status, got.body)
	}
	if got := c.get("/cluster").testid("cluster-error"); !strings.Contains(got, "password") {
		t.Errorf("/cluster without the password says %q", got)
	}
	if !strings.Contains(logs.String(), "NOAUTH") || !strings.Contains(logs.String(), "session store refused our password") {
		t.Errorf("the log does not name NOAUTH:\n%s", logs.String())
	}

	rc := redisclient.New(redisclient.Config{Addr: addr, Password: "s3cret"})
	t.Cleanup(func() { rc.Close() })
	with := replicaParts{metrics: web.NewMetrics("shop2", session.Redis), redis: rc}
	with.sessions = session.NewRedis(rc, session.Options{Lock: true, Observer: with.metrics})
	good := &testShop{t: t, db: shop.db, redis: shop.redis}
	good.srv = httptest.NewServer(good.newServer(with, shop.db, web.Config{Replica: "shop2"}))
	t.Cleanup(good.srv.Close)
	g := good.client()
	if r := g.add(1, 1); r.status != http.StatusSeeOther {
		t.Errorf("add with the password: %d", r.status)
	}
	if r := g.get("/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz with the password: %d %q", r.status, r.body)
	}
}

// TestLockBusyPage: a write that waits out the lock wait because another
// request holds its session's lock says exactly that, not that the store
// is away.
func TestLockBusyPage(t *testing.T) {
	shop := newShop(t, session.Redis)
	c := shop.client()
	c.add(1, 1)
	token := c.cookieValue("session")
	if token == "" {
		t.Fatal("no session cookie after an add")
	}
	redisDo(t, shop.redis.Addr(), "", "SET", session.LockPrefix+token, "someone-else", "PX", 10000)
	r := c.add(1, 1)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("add with the lock held elsewhere: %d (Retry-After %q)", r.status, r.header.Get("Retry-After"))
	}
	if msg := r.testid("error-message"); !strings.Contains(msg, "holds its lock") {
		t.Errorf("the page says %q; want that another request holds the session's lock", msg)
	}
	if r.count("session-busy") != 1 || r.count("store-notice") != 0 || strings.Contains(r.body, "not answering") {
		t.Errorf("the page says the store is away (notice %d, busy %d)", r.count("store-notice"), r.count("session-busy"))
	}
}

// TestWriteAfterRedisStall is issue 10's item 8 as a browser meets it:
// Redis stopped (SIGSTOP) during a locked write and resumed 2 s later; the
// write during the stall is a 503, and once Redis answers again the next
// writes on that session go through at once, not after the stale lock's
// TTL.
func TestWriteAfterRedisStall(t *testing.T) {
	shop := newShop(t, session.Redis)
	c := shop.client()
	c.add(1, 1)
	if err := shop.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.redis.Resume() })
	if r := c.add(1, 1); r.status != http.StatusServiceUnavailable {
		t.Errorf("add during the stall: %d, want 503", r.status)
	}
	time.Sleep(time.Second)
	if err := shop.redis.Resume(); err != nil {
		t.Fatal(err)
	}
	c.waitFor("/readyz", http.StatusOK, "not ready 5 s after Redis resumed")
	for i := range 2 {
		if r := c.add(2, 1); r.status != http.StatusSeeOther {
			t.Fatalf("add %d after Redis answers again: %d, want 303 (a stale lock from the stall?)", i+1, r.status)
		}
	}
	if got := c.session().Cart.Count; got != 3 {
		t.Errorf("cart %d after the stall, want 3 (the write during the stall changed nothing)", got)
	}
}
