package store

// One retry, on a fresh connection, for a call whose PostgreSQL connection
// was gone: a server that terminated its backends (pg_terminate_backend, a
// restart, a failover) leaves every pooled connection dead, and each would
// otherwise fail one request before the pool noticed.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// retried runs f, and once more when its connection to PostgreSQL was gone,
// after dropping the pool's idle connections so that the retry dials a new
// one. Every caller is safe to run twice: reads, and writes that are
// idempotent or reconcile a first attempt that did commit (PlaceOrder by
// its key, CreateAccount by its hash).
func retried[T any](ctx context.Context, d *DB, f func(context.Context) (T, error)) (T, error) {
	v, err := f(ctx)
	if err == nil || !d.postgres || !connectionGone(err) || ctx.Err() != nil {
		return v, err
	}
	d.dropIdle()
	return f(ctx)
}

// retriedErr is retried for a call that returns only an error.
func (d *DB) retriedErr(ctx context.Context, f func(context.Context) error) error {
	_, err := retried(ctx, d, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// dropIdle closes the pool's idle connections. They are suspect when one
// was found dead: the server usually ends them all at once, and pgx checks
// a pooled connection only after a second idle, so under load the retry
// would meet another dead one. Connections in use are left to their calls,
// which retry for themselves.
func (d *DB) dropIdle() {
	d.write.SetMaxIdleConns(0)
	d.write.SetMaxIdleConns(d.maxIdle)
}

// connectionGone reports whether err says that the connection the call ran
// on is gone, rather than that the database refused the call: the backend
// was terminated (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
// connect now), the connection broke (08xxx, EOF, reset, broken pipe), or
// the pool handed out one already closed.
func connectionGone(err error) bool {
	switch code := postgresCode(err); {
	case code == "57P01", code == "57P02", code == "57P03", len(code) == 5 && code[:2] == "08":
		return true
	case code != "":
		return false
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
