package store

// SQLite: opening the file with two pools, the DSN's pragmas, the file's
// identity for readiness, and which SQLite errors mean "unavailable".

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeout is how long SQLite waits for another process's lock before it
// answers SQLITE_BUSY: well inside Timeout, so that a request bound by
// Timeout ends with the error that names the cause.
const busyTimeout = 1500 * time.Millisecond

func openSQLite(ctx context.Context, path string) (*DB, error) {
	write, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)

	read, err := sql.Open("sqlite", sqliteDSN(path, true))
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
	// The file exists now: remember which one it is.
	if d.file, err = openedFile(path); err != nil {
		d.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return d, nil
}

// sqliteDSN builds a modernc DSN for path. The path becomes a file: URI so
// that names with '?' or '#' still mean a file; SQLite ignores the driver's
// underscore parameters.
func sqliteDSN(path string, readOnly bool) string {
	return sqliteDSNWith(path, readOnly, busyTimeout)
}

// sqliteDSNWith is sqliteDSN with another busy_timeout.
func sqliteDSNWith(path string, readOnly bool, busy time.Duration) string {
	// Clean folds a leading "//", which a file: URI would read as a host.
	p := filepath.ToSlash(filepath.Clean(path))
	p = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
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

// sqliteFile is the database file as it was when opened.
type sqliteFile struct {
	path string
	info os.FileInfo
}

func openedFile(path string) (*sqliteFile, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &sqliteFile{path: path, info: info}, nil
}

// errFileGone reports that the path no longer leads to the open database
// file. Writes would still succeed, into a file nobody will open again.
var errFileGone = errors.New("database file deleted or replaced under the running process")

// check reports whether path still names the file that is open (same device
// and inode), so that a deleted or replaced file is not taken for a
// healthy one.
func (f *sqliteFile) check() error {
	info, err := os.Stat(f.path)
	if err != nil || !os.SameFile(info, f.info) {
		return &unavailableError{err: fmt.Errorf("%s: %w", f.path, errFileGone)}
	}
	return nil
}

// sqliteCode returns the extended SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func sqliteIsUniqueViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func sqliteIsForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// isBusy reports whether err is SQLITE_BUSY or one of its extended codes.
func isBusy(err error) bool {
	return sqliteCode(err)&0xff == sqlite3.SQLITE_BUSY
}

// sqliteUnavailable reports whether err is SQLite saying the file cannot be
// used now (locked, read-only, I/O, full, cannot open), not that the request
// broke a rule.
func sqliteUnavailable(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_NOMEM:
		return true
	}
	return false
}
