// Package store keeps the shop's lasting state in one SQLite file: catalog,
// stock, orders, accounts and saved carts. Several replica processes may share
// the file, so every write runs in an immediate transaction and every rule that
// must hold across processes is a constraint in the schema.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound reports that a product, order or account does not exist. The web
// layer turns it into a 404.
var ErrNotFound = errors.New("not found")

// ErrOutOfStock reports that an order asked for more than is in stock. The
// error that carries it is an *OutOfStockError naming the product.
var ErrOutOfStock = errors.New("out of stock")

// ErrIdempotencyConflict reports that an idempotency key was already used by
// another session or account; replaying it must not reveal their order.
var ErrIdempotencyConflict = errors.New("idempotency key used by another owner")

// ErrEmailTaken reports that an account with that email already exists.
var ErrEmailTaken = errors.New("email already registered")

// DB is the shop's database. It is safe for concurrent use, and several
// processes may open the same file.
type DB struct {
	// write holds a single connection: writers of one process queue in
	// database/sql instead of sleeping in SQLite's busy handler, which is
	// left to arbitrate between processes only.
	write *sql.DB
	// read is a pool of query-only connections; in WAL mode they read a
	// snapshot and never wait for writers.
	read *sql.DB

	// seeded records whether this Open filled the catalog, so tests can
	// prove that racing replicas seed exactly once.
	seeded bool
}

// Open opens (creating if need be) the database file at path, applies pending
// migrations and seeds the catalog of an empty database. Replicas starting
// together on one new file are safe: the first to take the write lock migrates
// and seeds, the others find the work done.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: open: empty database path")
	}
	write, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)

	read, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	// Keep every connection: opening one re-runs the pragmas.
	read.SetMaxIdleConns(n)

	d := &DB{write: write, read: read}
	seeded, err := d.migrateRetryingBusy(ctx)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	d.seeded = seeded
	return d, nil
}

// dsn builds a modernc DSN for path. The path becomes a file: URI so that
// names with '?' or '#' still mean a file; SQLite ignores the driver's
// underscore parameters.
func dsn(path string, readOnly bool) string {
	// Clean folds a leading "//", which a file: URI would read as a host.
	p := filepath.ToSlash(filepath.Clean(path))
	p = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if readOnly {
		// A write that strays into the read pool fails loudly instead
		// of running as a deferred transaction that may hit SQLITE_BUSY.
		// Its transactions stay deferred: they only read, and an
		// immediate one would take the write lock for nothing.
		q.Add("_pragma", "query_only(1)")
	} else {
		// A deferred transaction that reads and then writes cannot wait
		// for another process's write lock (SQLite answers SQLITE_BUSY
		// at once); an immediate one takes the lock up front, under
		// busy_timeout.
		q.Set("_txlock", "immediate")
	}
	return "file:" + p + "?" + q.Encode()
}

// Close closes the database.
func (d *DB) Close() error {
	if err := errors.Join(d.read.Close(), d.write.Close()); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the database answers, for readiness checks. It reads
// the file header through the read pool: a bare ping would not touch the file,
// and the write connection may be busy with an order.
func (d *DB) Ping(ctx context.Context) error {
	var v int
	if err := d.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// queryer is what the read helpers need, so they run on a pool or inside a
// transaction alike.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteCode returns the extended SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// isBusy reports whether err is SQLITE_BUSY or one of its extended codes.
func isBusy(err error) bool {
	return sqliteCode(err)&0xff == sqlite3.SQLITE_BUSY
}

// isForeignKeyViolation reports whether err is a FOREIGN KEY constraint failure.
func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// timeLayout is fixed-width so that stored times sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// now returns the current time as stored: UTC, without a monotonic reading,
// so a value read back compares equal to the one returned at creation.
func now() time.Time {
	return time.Now().UTC()
}

func formatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t, nil
}

// rollback ends tx after a failure; its own error is dropped because the
// failure that led here is the one worth reporting.
func rollback(tx *sql.Tx) {
	_ = tx.Rollback()
}
