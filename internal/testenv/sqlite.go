package testenv

import (
	"database/sql"
	"testing"

	_ "modernc.org/sqlite" // the driver the shop's store uses
)

// HoldSQLite opens the SQLite file at path from a second connection, as
// another process would, and holds BEGIN EXCLUSIVE on it until release
// (or the test's end): every other writer of the file waits for its busy
// timeout meanwhile.
func HoldSQLite(t testing.TB, path string) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
}
