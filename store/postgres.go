package store

// PostgreSQL: opening a pool through pgx's database/sql driver, the schema
// version and the lock that lets replicas start together, and which
// PostgreSQL errors mean "unavailable".

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// migrationLock is the key of the advisory lock that serializes migrations
// and the seed between replicas starting together ("statelab" in ASCII).
const migrationLock int64 = 0x73746174656c6162

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", Redact(dsn), err)
	}
	// Every connection is a server process: a few per replica are plenty,
	// since no transaction waits on anything but the database.
	n := max(4, 2*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	// A restarted server leaves dead connections in the pool; database/sql
	// replaces them when a call finds one bad, and this ages out the rest.
	db.SetConnMaxIdleTime(time.Minute)

	d := &DB{write: db, read: db, postgres: true, dsn: dsn, maxIdle: n}
	if d.seeded, err = d.migrateWaitingForServer(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", Redact(dsn), err)
	}
	return d, nil
}

// startWait bounds how long Open waits for a PostgreSQL that does not answer
// yet: replicas and their database are often started together (a first
// deploy, a whole cluster restarted), and a replica that waits a little
// starts cleanly instead of crashing and being restarted with a backoff.
const startWait = 15 * time.Second

// migrateWaitingForServer runs migrate, retrying while PostgreSQL is
// unavailable (refusing connections, starting up), for up to startWait.
func (d *DB) migrateWaitingForServer(ctx context.Context) (seeded bool, err error) {
	deadline := time.Now().Add(startWait)
	delay := 100 * time.Millisecond
	for {
		seeded, err = d.migrate(ctx)
		classify(ctx, &err)
		// A refused login is an outage to a running replica, but at start
		// it is most often a typo in -db: waiting would not mend it.
		if err == nil || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPasswordRefused) ||
			errors.Is(err, ErrLoginRefused) || time.Now().Add(delay).After(deadline) {
			return seeded, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("%w (while waiting for the server after %w)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// Redact returns dsn with the password of a postgres:// URL replaced by
// "xxxxx", fit for a log line or an error; a file path comes back as is.
func Redact(dsn string) string {
	if !IsPostgresURL(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// postgresCode returns the SQLSTATE of a PostgreSQL error, or "".
func postgresCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// postgresLoginRefused returns ErrPasswordRefused or ErrLoginRefused when
// err is PostgreSQL refusing to open a connection for these credentials
// (class 28, invalid authorization specification), else nil.
func postgresLoginRefused(err error) error {
	switch code := postgresCode(err); code {
	case "28P01":
		return ErrPasswordRefused
	case "28000":
		return ErrLoginRefused
	}
	return nil
}

// postgresUnavailable reports whether err says that PostgreSQL cannot
// answer now: the connection failed or broke, the server is shutting down,
// starting or short of resources, or the transaction lost a race the
// client should simply retry.
func postgresUnavailable(err error) bool {
	if code := postgresCode(err); code != "" {
		switch {
		case strings.HasPrefix(code, "08"), // connection exception
			strings.HasPrefix(code, "53"),  // insufficient resources
			strings.HasPrefix(code, "57P"), // shutdown, cannot connect now
			strings.HasPrefix(code, "58"),  // system error, I/O
			code == "40001",                // serialization failure
			code == "40P01",                // deadlock detected
			code == "25006",                // read-only transaction (a standby)
			code == "55P03":                // lock not available
			return true
		}
		return false
	}
	var (
		connect *pgconn.ConnectError
		netErr  net.Error
	)
	return errors.As(err, &connect) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET)
}
