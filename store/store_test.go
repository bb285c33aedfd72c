package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
)

// pg is one PostgreSQL server for the package's tests, each of which takes a
// database of its own on it.
var pg testenv.SharedPostgres

func TestMain(m *testing.M) {
	code := m.Run()
	if err := pg.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close postgres:", err)
	}
	os.Exit(code)
}

// backend is a kind of database the suite runs against.
type backend struct {
	name string
	// newDSN returns what Open takes for a new, empty database.
	newDSN func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "shop.db") }},
	{"postgres", pg.NewDatabase},
}

// eachBackend runs f as a subtest on SQLite and on PostgreSQL: the store
// must behave the same on both.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openTest opens a new database of backend b and closes it when the test
// ends; it returns the database and what Open took.
func openTest(t testing.TB, b backend) (*DB, string) {
	t.Helper()
	dsn := b.newDSN(t)
	d := openPath(t, dsn)
	return d, dsn
}

// openPath opens path (a file or a URL) and closes it when the test ends.
func openPath(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// count runs a count(*) query, bypassing the API under test.
func count(t testing.TB, d *DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.read.QueryRowContext(context.Background(), d.q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// seedProductCount is the number of products in seedCatalog.
func seedProductCount() int {
	n := 0
	for _, c := range seedCatalog {
		n += len(c.Products)
	}
	return n
}

func TestOpenMigratesEmptyFile(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ms, err := loadMigrations(d.dialect())
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.schemaVersion(t.Context(), d.read)
		if err != nil {
			t.Fatal(err)
		}
		if v != len(ms) || v == 0 {
			t.Errorf("schema version = %d, want %d", v, len(ms))
		}
		if !d.seeded {
			t.Error("first Open of an empty database did not seed")
		}
		tables := "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?"
		if d.postgres {
			tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ?"
		}
		for _, table := range []string{"categories", "products", "orders", "order_lines", "accounts", "saved_carts"} {
			if n := count(t, d, tables, table); n != 1 {
				t.Errorf("table %s missing", table)
			}
		}
		if err := d.Ping(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if d.postgres {
			return
		}
		var mode string
		if err := d.read.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" {
			t.Errorf("journal_mode = %q, want wal", mode)
		}
	})
}

func TestSecondOpenIsNoop(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		first, path := openTest(t, b)
		schema := func(d *DB) string {
			query := "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name"
			if d.postgres {
				query = `SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns
					WHERE table_schema = 'public'
					UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`
			}
			rows, err := d.read.QueryContext(t.Context(), query)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var b strings.Builder
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				b.WriteString(s + ";\n")
			}
			return b.String()
		}
		before := schema(first)

		// Hold the write lock: a second start must not need it, so a replica
		// can start while another one is in the middle of an order.
		tx, err := first.write.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rollback(tx)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		second, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("second Open while the write lock is held: %v", err)
		}
		defer second.Close()
		rollback(tx)

		if second.seeded {
			t.Error("second Open seeded again")
		}
		if seeded, err := second.migrate(t.Context()); err != nil || seeded {
			t.Errorf("migrate again = %v, %v; want false, nil", seeded, err)
		}
		if after := schema(second); after != before {
			t.Errorf("schema changed on second Open:\n%s\nwant\n%s", after, before)
		}
	})
}

func TestSeedSurvivesReopen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		path := b.newDSN(t)
		d, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		// Stock changes the way the shop changes it: by selling.
		if _, _, err := d.PlaceOrder(t.Context(), NewOrder{
			IdempotencyKey: "k1", SessionID: "s1",
			Lines: []NewOrderLine{{ProductID: 3, Quantity: 7}},
		}); err != nil {
			t.Fatal(err)
		}
		want, err := d.Products(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}

		d = openPath(t, path)
		if d.seeded {
			t.Error("reopen seeded again")
		}
		got, err := d.Products(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("after reopen %d products, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("after reopen product %d = %+v, want %+v", want[i].ID, got[i], want[i])
			}
		}
		if got[2].Stock != seedCatalog[0].Products[2].Stock-7 {
			t.Errorf("stock of product 3 = %d, want seed stock - 7", got[2].Stock)
		}
		if n := count(t, d, "SELECT count(*) FROM categories"); n != len(seedCatalog) {
			t.Errorf("%d categories after reopen, want %d", n, len(seedCatalog))
		}
	})
}

func TestSeededCatalog(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		cs, err := d.Categories(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ps, err := d.Products(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) < 4 || len(cs) != len(seedCatalog) {
			t.Errorf("%d categories, want at least 4 and %d", len(cs), len(seedCatalog))
		}
		if len(ps) < 24 || len(ps) != seedProductCount() {
			t.Errorf("%d products, want at least 24 and %d", len(ps), seedProductCount())
		}
		for i, c := range cs {
			if c.ID != int64(i+1) || c.Slug != seedCatalog[i].Slug {
				t.Errorf("category %d = %+v, want id %d slug %s (seed order)", i, c, i+1, seedCatalog[i].Slug)
			}
		}
		slugs := map[string]bool{}
		i := 0
		for ci, c := range seedCatalog {
			for _, sp := range c.Products {
				if i >= len(ps) {
					break
				}
				p := ps[i]
				i++
				if p.ID != int64(i) || p.Slug != sp.Slug {
					t.Errorf("product %d = id %d slug %s, want id %d slug %s (seed order)", i, p.ID, p.Slug, i, sp.Slug)
				}
				if p.CategoryID != int64(ci+1) || p.CategorySlug != c.Slug || p.CategoryName != c.Name {
					t.Errorf("product %s in category %d %s %q, want %d %s %q",
						p.Slug, p.CategoryID, p.CategorySlug, p.CategoryName, ci+1, c.Slug, c.Name)
				}
				if p.Stock < 100 {
					t.Errorf("product %s starts with stock %d, want at least 100", p.Slug, p.Stock)
				}
				if p.PriceCents <= 0 || p.Name == "" || p.Description == "" {
					t.Errorf("product %s incomplete: %+v", p.Slug, p)
				}
				if slugs[p.Slug] {
					t.Errorf("slug %s used twice", p.Slug)
				}
				slugs[p.Slug] = true
			}
		}
	})
}

func TestOpenSeedingRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const replicas = 8
		path := b.newDSN(t)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			dbs   = make([]*DB, replicas)
			errs  = make([]error, replicas)
		)
		for i := range replicas {
			wg.Go(func() {
				<-start
				dbs[i], errs[i] = Open(t.Context(), path)
			})
		}
		close(start)
		wg.Wait()

		seeded := 0
		for i, d := range dbs {
			if errs[i] != nil {
				t.Errorf("replica %d: Open: %v", i, errs[i])
				continue
			}
			defer d.Close()
			if d.seeded {
				seeded++
			}
		}
		if t.Failed() {
			return
		}
		if seeded != 1 {
			t.Errorf("%d replicas seeded, want exactly 1", seeded)
		}
		d := dbs[0]
		if n := count(t, d, "SELECT count(*) FROM products"); n != seedProductCount() {
			t.Errorf("%d products, want %d", n, seedProductCount())
		}
		if n := count(t, d, "SELECT count(*) FROM categories"); n != len(seedCatalog) {
			t.Errorf("%d categories, want %d", n, len(seedCatalog))
		}
		if n := count(t, d, "SELECT max(id) FROM products"); n != seedProductCount() {
			t.Errorf("max product id %d, want %d", n, seedProductCount())
		}
	})
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		path := b.newDSN(t)
		d, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := d.write.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.setSchemaVersion(t.Context(), tx, 999); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if d, err := Open(t.Context(), path); err == nil {
			d.Close()
			t.Fatal("Open of a database from a newer binary succeeded")
		} else if !strings.Contains(err.Error(), "999") {
			t.Errorf("error %q does not name the version", err)
		}
	})
}

func TestOpenOddPaths(t *testing.T) {
	for _, name := range []string{"shop.db", "we?ird#name%20.db", "with space.db"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			d := openPath(t, path)
			if err := d.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("database not at %q: %v", path, err)
			}
		})
	}
	if _, err := Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func TestReadPoolIsQueryOnly(t *testing.T) {
	d, _ := openTest(t, backends[0])
	if _, err := d.read.ExecContext(t.Context(), "UPDATE products SET stock = 0"); err == nil {
		t.Error("a write through the read pool succeeded")
	}
}

func TestDSNKinds(t *testing.T) {
	tests := []struct {
		dsn      string
		postgres bool
		redacted string
	}{
		{"shop.db", false, "shop.db"},
		{"/var/lib/shop/postgres.db", false, "/var/lib/shop/postgres.db"},
		{"postgres://shop:s3cret@db:5432/shop?sslmode=disable", true, "postgres://shop:xxxxx@db:5432/shop?sslmode=disable"},
		{"postgresql://shop@db/shop", true, "postgresql://shop@db/shop"},
	}
	for _, tt := range tests {
		if got := IsPostgresURL(tt.dsn); got != tt.postgres {
			t.Errorf("IsPostgresURL(%q) = %v, want %v", tt.dsn, got, tt.postgres)
		}
		if got := Redact(tt.dsn); got != tt.redacted {
			t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.redacted)
		}
	}
}

// TestSetMaxConns: -db-max-conns bounds the connections one replica holds,
// on both backends: the next one waits rather than opening another (with
// PostgreSQL, another server process out of max_connections).
func TestSetMaxConns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		// acquire takes connections until one is refused within a short
		// wait, then gives them all back; it returns how many it got.
		acquire := func(upTo int) int {
			var held []*sql.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for len(held) < upTo {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				c, err := d.read.Conn(ctx)
				cancel()
				if err != nil {
					break
				}
				held = append(held, c)
			}
			return len(held)
		}
		if got := acquire(3); got != 3 {
			t.Fatalf("before SetMaxConns(2): %d connections at once, want the default's 3 or more", got)
		}
		d.SetMaxConns(2)
		if got := acquire(3); got != 2 {
			t.Errorf("after SetMaxConns(2): %d connections at once, want 2", got)
		}
		d.SetMaxConns(0) // keeps the bound
		if got := acquire(3); got != 2 {
			t.Errorf("SetMaxConns(0) changed the bound: %d connections at once, want 2", got)
		}
	})
}
