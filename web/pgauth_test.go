package web_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
)

// TestPostgresPasswordRotation: between ALTER ROLE and the replica's restart
// with the new password, connections the pool holds go on working and every
// new one is refused (28P01). From the shopper's side the database is down
// for that window: a 503 with Retry-After that says the password was
// refused, and /readyz says the same, never a 500. A role that may not log
// in (28000) is the same outage, named as a refused login; and the replica
// recovers by itself once the database lets it in again. Issue 22's open
// item: both were a 500.
func TestPostgresPasswordRotation(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	u, err := url.Parse(pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dsn, err := pg.PasswordRole(ctx, "shop", "old_password", strings.TrimPrefix(u.Path, "/"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newShopAt(t, dsn)
	c := ts.client()
	const product = "/products/espresso-cup"
	for _, path := range []string{product, "/readyz"} {
		if r := c.get(path); r.status != 200 {
			t.Fatalf("GET %s before the rotation = %d, want 200", path, r.status)
		}
	}

	// dropConnections ends the shop's connections, so that its next call
	// opens a new one, as a pool does when its connections age out.
	dropConnections := func() {
		t.Helper()
		if err := pg.Exec(ctx, "postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'shop'"); err != nil {
			t.Fatal(err)
		}
	}
	alter := func(statement string) {
		t.Helper()
		if err := pg.Exec(ctx, "postgres", statement); err != nil {
			t.Fatal(err)
		}
	}

	alter("ALTER ROLE shop PASSWORD 'new_password'")
	if r := c.get(product); r.status != 200 {
		t.Errorf("GET %s right after ALTER ROLE, on a pooled connection = %d, want 200", product, r.status)
	}
	dropConnections()
	refused := func(why, ready string) {
		t.Helper()
		start := time.Now()
		r := c.get(product)
		wantDatabase503(t, "GET "+product, start, r)
		if !strings.Contains(r.body, why) {
			t.Errorf("GET %s: the page does not say %q:\n%s", product, why, r.body)
		}
		start = time.Now()
		wantDatabase503(t, "POST /register", start, c.register("ann@example.com", "correct horse battery"))
		r = c.get("/readyz")
		if r.status != 503 || r.header.Get("Retry-After") == "" || strings.TrimSpace(r.body) != ready {
			t.Errorf("GET /readyz = %d, Retry-After %q, %q; want 503 with Retry-After, %q",
				r.status, r.header.Get("Retry-After"), strings.TrimSpace(r.body), ready)
		}
	}
	refused("password as it opened a new connection", "database refused the password")

	// The old password again, but a role that may not log in: 28000.
	alter("ALTER ROLE shop PASSWORD 'old_password' NOLOGIN")
	refused("login as it opened a new connection", "database refused the login")

	alter("ALTER ROLE shop LOGIN")
	for _, path := range []string{product, "/readyz"} {
		if r := c.get(path); r.status != 200 {
			t.Errorf("GET %s once the database lets the replica in again = %d, want 200", path, r.status)
		}
	}
}
