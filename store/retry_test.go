package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// TestPostgresTerminatedConnections: after pg_terminate_backend ends every
// connection the pool holds, the next call of each kind, read or write,
// succeeds on a new connection instead of failing with the dead one's
// error. Issue 22, item 9 (18 of 681 requests answered 503, catalog GETs
// among them).
func TestPostgresTerminatedConnections(t *testing.T) {
	dsn := pg.NewDatabase(t)
	d := openPath(t, dsn)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.SetMaxOpenConns(1)
	acct := createAccount(t, d, "ann@example.com")

	// terminate fills the pool with live connections, then has the server
	// end all of them. The call that follows comes well within a second,
	// so pgx does not ping the connection it takes first (it pings only
	// those idle longer).
	terminate := func() {
		t.Helper()
		// Twice: pgx pings a pooled connection when it was idle over a
		// second, or never used since it was made; the second round
		// makes each one as recently used as under load.
		for range 2 {
			var conns []*sql.Conn
			for tries := 0; len(conns) < 4; tries++ {
				c, err := d.read.Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.PingContext(t.Context()); err != nil {
					// A connection the last round left dead: the pool
					// discards it as it comes back.
					c.Close()
					if tries > 20 {
						t.Fatal(err)
					}
					continue
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Close()
			}
		}
		var n int
		if err := admin.QueryRowContext(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 4 {
			t.Fatalf("terminated %d backends, want at least 4", n)
		}
		for deadline := time.Now().Add(5 * time.Second); ; {
			var left int
			if err := admin.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d backends still there 5 s after pg_terminate_backend", left)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	key := 0
	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return d.Ping(t.Context()) }},
		{"Categories", func() error { _, err := d.Categories(t.Context()); return err }},
		{"Products", func() error { _, err := d.Products(t.Context()); return err }},
		{"Product", func() error { _, err := d.Product(t.Context(), 1); return err }},
		{"AccountByEmail", func() error { _, err := d.AccountByEmail(t.Context(), "ann@example.com"); return err }},
		{"SavedCart", func() error { _, err := d.SavedCart(t.Context(), acct.ID); return err }},
		{"SaveCart", func() error { return d.SaveCart(t.Context(), acct.ID, []byte(`{"v":1}`)) }},
		{"BumpSessionEpoch", func() error { _, err := d.BumpSessionEpoch(t.Context(), acct.ID); return err }},
		{"CreateAccount", func() error {
			key++
			_, err := d.CreateAccount(t.Context(), fmt.Sprintf("new%d@example.com", key), []byte("a hash"))
			return err
		}},
		{"PlaceOrder", func() error {
			key++
			_, created, err := d.PlaceOrder(t.Context(), NewOrder{IdempotencyKey: fmt.Sprintf("terminated-key-%04d", key), AccountID: acct.ID,
				Name: "Ann", Email: "ann@example.com", Address: "1 Main Street", Lines: []NewOrderLine{{ProductID: 1, Quantity: 1}}})
			if err == nil && !created {
				return fmt.Errorf("a new key's order was not created")
			}
			return err
		}},
		{"OrdersByAccount", func() error { _, err := d.OrdersByAccount(t.Context(), acct.ID); return err }},
	}
	for _, c := range calls {
		terminate()
		if err := c.call(); err != nil {
			t.Errorf("%s on a pool whose connections were terminated: %v", c.name, err)
		}
	}
}

// TestConnectionGone: which errors mean the connection is gone (retried
// once) and which are the database's answer (not retried).
func TestConnectionGone(t *testing.T) {
	for _, tt := range []struct {
		err  error
		gone bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P02"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{fmt.Errorf("store: x: %w", driver.ErrBadConn), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{&pgconn.PgError{Code: "57014"}, false}, // query canceled
		{&pgconn.PgError{Code: "53300"}, false}, // too many connections: a new one fails too
		{context.DeadlineExceeded, false},
		{ErrNotFound, false},
	} {
		if got := connectionGone(tt.err); got != tt.gone {
			t.Errorf("connectionGone(%v) = %v, want %v", tt.err, got, tt.gone)
		}
	}
}
