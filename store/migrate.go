package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds one directory of numbered migrations per dialect:
// the schema must differ (types, collations, identity columns), the
// numbering does not.
//
//go:embed migrations
var migrationFiles embed.FS

// migration is one numbered schema change; migration n moves the database
// from version n-1 to n.
type migration struct {
	version int
	name    string
	sql     string
}

// dialect names the migrations directory of d.
func (d *DB) dialect() string {
	if d.postgres {
		return "postgres"
	}
	return "sqlite"
}

// loadMigrations reads the embedded migrations of a dialect in version order.
// Numbers must run 1..N without gaps, because the schema version records
// only the last one applied.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries { // ReadDir sorts by name
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and '_'", e.Name())
		}
		if want := len(ms) + 1; v != want {
			return nil, fmt.Errorf("migration %s: number %d, want %d", e.Name(), v, want)
		}
		b, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms, nil
}

// busyRetryBudget bounds how long Open keeps retrying a start that fails with
// SQLITE_BUSY.
const busyRetryBudget = 5 * time.Second

// migrateRetryingBusy runs migrate, retrying while it fails with SQLITE_BUSY.
//
// The first connection to a new file converts it to WAL, which upgrades a
// shared lock to an exclusive one; SQLite does not run the busy handler for
// that upgrade (waiting could deadlock), so replicas racing on a new file get
// SQLITE_BUSY at once, whatever busy_timeout says. The conversion is stored in
// the file, so once one replica has done it the others' retries succeed and
// later connections find WAL already set and take no lock for it.
func (d *DB) migrateRetryingBusy(ctx context.Context) (seeded bool, err error) {
	deadline := time.Now().Add(busyRetryBudget)
	delay := 5 * time.Millisecond
	for {
		seeded, err = d.migrate(ctx)
		if err == nil || !isBusy(err) || time.Now().Add(delay).After(deadline) {
			return seeded, err
		}
		// Jitter, so that racing replicas do not retry in step.
		t := time.NewTimer(delay/2 + rand.N(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("%w (while retrying after %w)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// migrate brings the schema up to date and seeds a database that had none. It
// reports whether it seeded.
//
// Replicas may start together on one new database. Only the process holding
// the lock decides (SQLite: the write lock of an immediate transaction;
// PostgreSQL: an advisory lock held to the end of the transaction), and it
// migrates and seeds in the same transaction, so the others see either
// nothing or everything. With SQLite the version is first read without a
// lock, so that a normal start takes no write lock at all.
func (d *DB) migrate(ctx context.Context) (seeded bool, err error) {
	ms, err := loadMigrations(d.dialect())
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	latest := len(ms)

	if !d.postgres {
		v, err := d.schemaVersion(ctx, d.write)
		if err != nil {
			return false, fmt.Errorf("migrate: %w", err)
		}
		if v == latest {
			return false, nil
		}
	}

	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer rollback(tx)
	if d.postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return false, fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
			return false, fmt.Errorf("migrate: %w", err)
		}
	}

	v, err := d.schemaVersion(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	switch {
	case v == latest:
		return false, nil // another process won the race
	case v > latest:
		return false, fmt.Errorf("migrate: database is at version %d, this binary knows only %d", v, latest)
	}
	for _, m := range ms[v:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return false, fmt.Errorf("migrate: %s: %w", m.name, err)
		}
	}
	if v == 0 {
		if err := d.seed(ctx, tx); err != nil {
			return false, fmt.Errorf("seed: %w", err)
		}
	}
	if err := d.setSchemaVersion(ctx, tx, latest); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate: commit: %w", err)
	}
	return v == 0, nil
}

// schemaVersion reads the number of the last migration applied: SQLite's
// user_version, or the one row of PostgreSQL's schema_version (none: 0).
func (d *DB) schemaVersion(ctx context.Context, q queryer) (int, error) {
	query := "PRAGMA user_version"
	if d.postgres {
		query = "SELECT coalesce(max(version), 0) FROM schema_version"
	}
	var v int
	if err := q.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func (d *DB) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	var err error
	if d.postgres {
		if _, err = tx.ExecContext(ctx, "DELETE FROM schema_version"); err == nil {
			_, err = tx.ExecContext(ctx, "INSERT INTO schema_version (version) VALUES ($1)", v)
		}
	} else {
		// PRAGMA takes no parameters; v is an int we computed.
		_, err = tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
	}
	if err != nil {
		return fmt.Errorf("set schema version %d: %w", v, err)
	}
	return nil
}

// seed fills the catalog with explicit ids, so that categories and products
// are numbered 1..N in seedCatalog order whatever the database would pick.
func (d *DB) seed(ctx context.Context, tx *sql.Tx) error {
	var productID int64
	for i, c := range seedCatalog {
		categoryID := int64(i + 1)
		if _, err := tx.ExecContext(ctx,
			d.q("INSERT INTO categories (id, slug, name) VALUES (?, ?, ?)"),
			categoryID, c.Slug, c.Name); err != nil {
			return fmt.Errorf("category %s: %w", c.Slug, err)
		}
		for _, p := range c.Products {
			productID++
			if _, err := tx.ExecContext(ctx,
				d.q(`INSERT INTO products (id, slug, name, description, price_cents, stock, category_id)
				 VALUES (?, ?, ?, ?, ?, ?, ?)`),
				productID, p.Slug, p.Name, p.Description, p.PriceCents, p.Stock, categoryID); err != nil {
				return fmt.Errorf("product %s: %w", p.Slug, err)
			}
		}
	}
	return nil
}
