package web_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/web"
)

// TestLoginWhileLimiterRedisIsAway: a cookie replica keeps its sessions in
// the browser and Redis only for the shared login limit. With that Redis
// stopped, logins keep working, counted per replica (still limited), and
// the log says the limit went per replica; before, every login was a 503
// saying the session store was not answering. Issue 22, item 6.
func TestLoginWhileLimiterRedisIsAway(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// A cheap hash: this test is about the limit, not bcrypt's cost.
	hash, err := bcrypt.GenerateFromPassword([]byte("the right password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAccount(t.Context(), "ada@example.com", hash); err != nil {
		t.Fatal(err)
	}
	ts := &testShop{t: t, db: db, redis: testenv.StartRedis(t)}
	var logs testenv.Buffer
	cfg := web.Config{Replica: "shop1", Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ts.srv = httptest.NewServer(ts.newServer(ts.parts(session.Cookie, "shop1", true), db, cfg))
	t.Cleanup(ts.srv.Close)
	if err := ts.redis.Stop(); err != nil {
		t.Fatal(err)
	}

	c := ts.client()
	c.add(1, 2)
	r := c.login("ada@example.com", "a wrong guess")
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("a wrong password with the limiter's Redis away: %d %q, want 422", r.status, r.testid("error-message"))
	}
	if r := c.login("ada@example.com", "the right password"); r.status != http.StatusSeeOther {
		t.Errorf("the right password with the limiter's Redis away: %d %q, want 303", r.status, r.testid("error-message"))
	}
	if got := c.session(); got.Cart.Count != 2 {
		t.Errorf("the cart after logging in: %d items, want 2", got.Cart.Count)
	}
	// Still limited, per replica: five wrong passwords, then 429.
	other := ts.client()
	for i := range 5 {
		if r := other.login("ada@example.com", "another guess"); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("wrong password %d: %d, want 422", i+1, r.status)
		}
	}
	if r := other.login("ada@example.com", "the right password"); r.status != http.StatusTooManyRequests {
		t.Errorf("the right password after five wrong ones, counted per replica: %d, want 429", r.status)
	}
	if got := logs.String(); !strings.Contains(got, "counting login attempts per replica") {
		t.Errorf("the log does not say the login limit went per replica:\n%s", got)
	}
	if strings.Contains(logs.String(), "session store") {
		t.Errorf("the log blames the session store, which a cookie replica does not keep in Redis:\n%s", logs.String())
	}
}
