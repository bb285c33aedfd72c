// Package store keeps the shop's lasting state: catalog, stock, orders,
// accounts and saved carts, in one SQLite file (the default) or in PostgreSQL
// (a postgres:// URL). Several replica processes may share either, so every
// write runs in a transaction that holds what it changes, and every rule that
// must hold across processes is a constraint in the schema.
//
// All SQL lives here. Queries are written once with ? placeholders and
// rewritten for PostgreSQL; where the dialects must differ (schema, schema
// version, locks at start) each has its own file.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
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

// ErrUnavailable reports that the database cannot answer now, whatever the
// request: locked or busy past Timeout, read-only, an I/O error, PostgreSQL
// down or unreachable. The same request may succeed later; the web layer
// answers 503 with Retry-After.
var ErrUnavailable = errors.New("database unavailable")

// ErrPasswordRefused reports that PostgreSQL refused this replica's password
// as it opened a connection (SQLSTATE 28P01), as in the window of a password
// rotation between ALTER ROLE and the replica's restart with the new one.
// Connections already open go on working, so from the shop's side it is an
// outage of the database, not a fault of the request: an error that matches
// it matches ErrUnavailable too.
var ErrPasswordRefused = errors.New("database refused the password")

// ErrLoginRefused reports that PostgreSQL refused this replica's login for a
// reason other than the password (SQLSTATE 28000: no pg_hba.conf entry, a
// role that may not log in). Like ErrPasswordRefused it matches
// ErrUnavailable.
var ErrLoginRefused = errors.New("database refused the login")

// Timeout bounds every call to the database, so no request waits on it for
// longer. SQLite's busy_timeout is shorter, so that a lock held elsewhere
// ends as SQLITE_BUSY, which names the cause, rather than as a deadline.
const Timeout = 2 * time.Second

// DB is the shop's database. It is safe for concurrent use, and several
// processes may open the same database.
type DB struct {
	// write runs transactions that change data; read runs queries. With
	// SQLite write holds a single connection, so that writers of one
	// process queue in database/sql instead of sleeping in SQLite's busy
	// handler (left to arbitrate between processes), and read is a pool of
	// query-only connections reading WAL snapshots. With PostgreSQL both
	// are the same pool.
	write *sql.DB
	read  *sql.DB

	// postgres selects the PostgreSQL forms of the few queries that
	// differ, and the $n placeholders.
	postgres bool
	// dsn is the PostgreSQL URL, for OpenPool.
	dsn     string
	rebound sync.Map // query with ? → query with $n
	// maxIdle is the pool's idle bound, restored after dropIdle.
	maxIdle int

	// file is the SQLite file as opened, so that readiness notices when
	// the path no longer leads to it (deleted or replaced).
	file *sqliteFile

	// seeded records whether this Open filled the catalog, so tests can
	// prove that racing replicas seed exactly once.
	seeded bool
}

// Open opens the database named by dsn, applies pending migrations and seeds
// the catalog of an empty database. A postgres:// (or postgresql://) URL
// opens PostgreSQL; anything else is the path of a SQLite file, created if
// need be. Replicas starting together on one new database are safe: one of
// them migrates and seeds, the others find the work done.
func Open(ctx context.Context, dsn string) (*DB, error) {
	switch {
	case dsn == "":
		return nil, errors.New("store: open: empty database path")
	case IsPostgresURL(dsn):
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

// SetMaxConns bounds the connections this process opens to the database:
// with PostgreSQL the whole pool (each connection is a server process, and
// the server's max_connections is shared by every replica), with SQLite the
// read connections (writes always go through one more). n <= 0 keeps the
// default, which grows with GOMAXPROCS: a bound that follows the node's
// cores, not the database's capacity, so a deployment sets one (-db-max-conns).
func (d *DB) SetMaxConns(n int) {
	if n <= 0 {
		return
	}
	d.read.SetMaxOpenConns(n)
	d.read.SetMaxIdleConns(n)
}

// IsPostgresURL reports whether dsn names a PostgreSQL database rather than
// a SQLite file.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Close closes the database.
func (d *DB) Close() error {
	err := d.write.Close()
	if d.read != d.write {
		err = errors.Join(d.read.Close(), err)
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the database answers, for readiness checks. With
// SQLite it reads the file header through the read pool (a bare ping would
// not touch the file, and the write connection may be busy with an order) and
// checks that the path still leads to the file that is open: writes to a
// deleted file succeed and are lost at the next start.
func (d *DB) Ping(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	defer classify(ctx, &err)
	return d.retriedErr(ctx, func(ctx context.Context) (err error) {
		if d.file != nil {
			if err := d.file.check(); err != nil {
				return fmt.Errorf("store: ping: %w", err)
			}
		}
		query := "SELECT 1"
		if !d.postgres {
			query = "PRAGMA user_version" // reads the file's header
		}
		var v int
		if err := d.read.QueryRowContext(ctx, query).Scan(&v); err != nil {
			return fmt.Errorf("store: ping: %w", err)
		}
		return nil
	})
}

// checkWritable refuses a write to a SQLite file that was deleted or
// replaced since Open: it would succeed, into a file nobody opens again, and
// the order would be gone at the next start. One stat per write is cheap
// beside the transaction.
func (d *DB) checkWritable() error {
	if d.file == nil {
		return nil
	}
	return d.file.check()
}

// bound limits one call to Timeout. Every exported method that touches the
// database starts with it, and with defer classify(ctx, &err).
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, Timeout)
}

// q returns query for this database: as written for SQLite, with ?
// placeholders numbered $1, $2… for PostgreSQL.
func (d *DB) q(query string) string {
	if !d.postgres {
		return query
	}
	if r, ok := d.rebound.Load(query); ok {
		return r.(string)
	}
	r := rebind(query)
	d.rebound.Store(query, r)
	return r
}

// rebind numbers the ? placeholders of query. Our queries hold no ? inside
// string literals, so no parsing is needed.
func rebind(query string) string {
	var b strings.Builder
	n := 0
	for {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			b.WriteString(query)
			return b.String()
		}
		n++
		b.WriteString(query[:i])
		fmt.Fprintf(&b, "$%d", n)
		query = query[i+1:]
	}
}

// classify marks *err with ErrUnavailable when it says that the database
// cannot answer now (busy, locked, read-only, I/O, connection lost, a
// deadline), as opposed to a refusal of this request. A call whose caller
// gave up (ctx canceled: the client went away) is not the database's fault:
// its error says context.Canceled, whatever the driver made of it (SQLite
// reports an interrupt).
func classify(ctx context.Context, err *error) {
	if *err == nil || errors.Is(*err, ErrUnavailable) {
		return
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		if !errors.Is(*err, context.Canceled) {
			*err = fmt.Errorf("%w: %w", context.Canceled, *err)
		}
		return
	}
	if refused := postgresLoginRefused(*err); refused != nil {
		*err = &unavailableError{err: *err, why: refused}
		return
	}
	if errors.Is(*err, context.DeadlineExceeded) || errors.Is(*err, sql.ErrConnDone) ||
		sqliteUnavailable(*err) || postgresUnavailable(*err) {
		*err = &unavailableError{err: *err}
	}
}

// unavailableError is a database error that matches ErrUnavailable, and
// why when a cause is known, and keeps the driver's error for the log.
type unavailableError struct{ err, why error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	if e.why != nil {
		return []error{ErrUnavailable, e.why, e.err}
	}
	return []error{ErrUnavailable, e.err}
}

// queryer is what the read helpers need, so they run on a pool or inside a
// transaction alike.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	return sqliteIsUniqueViolation(err) || postgresCode(err) == "23505"
}

// isForeignKeyViolation reports whether err is a FOREIGN KEY constraint failure.
func isForeignKeyViolation(err error) bool {
	return sqliteIsForeignKeyViolation(err) || postgresCode(err) == "23503"
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
