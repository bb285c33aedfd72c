package cluster_test

import (
	"database/sql"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/store"
)

var idempotencyKeyRE = regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`)

// checkoutForm fills s's cart with one unit of productID and returns a
// checkout form carrying a fresh idempotency key.
func checkoutForm(t *testing.T, s *shopper, productID int) url.Values {
	t.Helper()
	s.add(productID, 1)
	m := idempotencyKeyRE.FindStringSubmatch(s.get("/checkout").body)
	if m == nil {
		t.Fatal("GET /checkout: no idempotency_key in the form")
	}
	return url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {m[1]}}
}

// TestTwoReplicasOnOnePostgres is what replicas on different hosts need: one
// database that every replica sees. An order placed through one replica is
// read through the other, an email registered on one is taken on the other,
// and checkouts racing through both for the last units never sell more than
// there is.
func TestTwoReplicasOnOnePostgres(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Replicas: 2, Database: cluster.DatabasePostgres})
	r1, r2 := c.Replicas()[0], c.Replicas()[1]

	// Redis sessions follow the shopper from one replica to the other, so
	// what the second replica shows comes from the shared database.
	s := newShopper(t, r1.URL())
	r, err := s.do(http.MethodPost, "/checkout", checkoutForm(t, s, 2))
	if err != nil || r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/orders/") {
		t.Fatalf("POST /checkout on %s = %d %q, %v; want 303 to the order", r1.Name(), r.status, r.header.Get("Location"), err)
	}
	order := r.header.Get("Location")
	s.base = r2.URL()
	if r := s.get(order); r.status != http.StatusOK || r.servedBy != r2.Name() {
		t.Errorf("GET %s on %s = %d (served by %q), want 200 from the shared database", order, r2.Name(), r.status, r.servedBy)
	}

	a := newShopper(t, r1.URL())
	reg := url.Values{"email": {"grace@example.com"}, "password": {"correct horse battery"}}
	if r, err := a.do(http.MethodPost, "/register", reg); err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("POST /register on %s = %d, %v; want 303", r1.Name(), r.status, err)
	}
	b := newShopper(t, r2.URL())
	if r, err := b.do(http.MethodPost, "/register", reg); err != nil || r.status != http.StatusUnprocessableEntity {
		t.Errorf("POST /register of the same email on %s = %d, %v; want 422 (taken)", r2.Name(), r.status, err)
	}

	// The last units: set the stock straight in the database, then race
	// more checkouts than that through both replicas at once.
	const productID, units, buyers = 5, 4, 16
	db, err := sql.Open("pgx", c.Database())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), "UPDATE products SET stock = $1 WHERE id = $2", units, productID); err != nil {
		t.Fatal(err)
	}
	shoppers := make([]*shopper, buyers)
	forms := make([]url.Values, buyers)
	for i := range shoppers {
		base := r1.URL()
		if i%2 == 1 {
			base = r2.URL()
		}
		shoppers[i] = newShopper(t, base)
		forms[i] = checkoutForm(t, shoppers[i], productID)
	}
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		statuses = make([]int, buyers)
		errs     = make([]error, buyers)
	)
	for i, s := range shoppers {
		wg.Go(func() {
			<-start
			r, err := s.do(http.MethodPost, "/checkout", forms[i])
			statuses[i], errs[i] = r.status, err
		})
	}
	close(start)
	wg.Wait()

	sold := 0
	count := map[int]int{}
	for i, st := range statuses {
		if errs[i] != nil {
			t.Errorf("buyer %d: %v", i, errs[i])
		}
		count[st]++
		switch st {
		case http.StatusSeeOther:
			sold++
		case http.StatusUnprocessableEntity: // out of stock
		default:
			t.Errorf("buyer %d: POST /checkout = %d, want 303 or 422 (out of stock)", i, st)
		}
	}
	t.Logf("%d buyers for %d units: %v", buyers, units, count)
	var stock, lines int
	if err := db.QueryRowContext(t.Context(), "SELECT stock FROM products WHERE id = $1", productID).Scan(&stock); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(t.Context(),
		"SELECT CAST(coalesce(sum(quantity), 0) AS BIGINT) FROM order_lines WHERE product_id = $1", productID).Scan(&lines); err != nil {
		t.Fatal(err)
	}
	if sold != units || stock != 0 || lines != units {
		t.Errorf("%d checkouts of 1 unit succeeded, stock is %d, order lines hold %d: want %d, 0, %d (sold out, never oversold)",
			sold, stock, lines, units, units)
	}

	// PostgreSQL stopped: writes answer a clean 503 within the store's
	// bound, the cached catalog still serves, readiness says so, and
	// everything recovers by itself once the server is back.
	down := newShopper(t, r1.URL())
	form := checkoutForm(t, down, 1)
	pg := c.Postgres()
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	limit := store.Timeout + 1500*time.Millisecond // the bound, and slack for a busy machine
	for _, rs := range []*cluster.Replica{r1, r2} {
		down.base = rs.URL()
		r, err := down.do(http.MethodPost, "/checkout", form)
		if err != nil || r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "database") {
			t.Errorf("POST /checkout on %s with PostgreSQL stopped = %d (Retry-After %q), %v; want 503 naming the database",
				rs.Name(), r.status, r.header.Get("Retry-After"), err)
		}
		if r.took > limit {
			t.Errorf("POST /checkout on %s with PostgreSQL stopped took %s, want at most %s", rs.Name(), r.took, limit)
		}
		if r := down.get("/"); r.status != http.StatusOK {
			t.Errorf("GET / on %s with PostgreSQL stopped = %d, want 200 (the catalog is cached)", rs.Name(), r.status)
		}
		if r := down.get("/readyz"); r.status != http.StatusServiceUnavailable {
			t.Errorf("GET /readyz on %s with PostgreSQL stopped = %d, want 503", rs.Name(), r.status)
		}
	}
	if err := pg.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, rs := range []*cluster.Replica{r1, r2} {
		down.base = rs.URL()
		deadline := time.Now().Add(30 * time.Second)
		for down.get("/readyz").status != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready 30 s after PostgreSQL restarted", rs.Name())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if r, err := down.do(http.MethodPost, "/checkout", form); err != nil || r.status != http.StatusSeeOther {
		t.Errorf("POST /checkout after PostgreSQL restarted = %d, %v; want 303", r.status, err)
	}
}
