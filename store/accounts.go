package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Account is a registered customer. The store keeps the password hash as
// given; hashing and checking belong to the web layer.
type Account struct {
	ID           int64
	Email        string
	PasswordHash []byte
	CreatedAt    time.Time
	// SessionEpoch starts at 0 and only grows (BumpSessionEpoch): a
	// session that carries an older epoch is revoked.
	SessionEpoch int64
}

// CreateAccount registers email, which is unique regardless of ASCII case; an
// email already registered fails with an error wrapping ErrEmailTaken.
func (d *DB) CreateAccount(ctx context.Context, email string, hash []byte) (_ Account, err error) {
	switch {
	case email == "":
		return Account{}, errors.New("store: create account: empty email")
	case len(hash) == 0:
		// An empty hash would let any password match a careless check.
		return Account{}, errors.New("store: create account: empty password hash")
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if err := d.checkWritable(); err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	a := Account{Email: email, PasswordHash: hash, CreatedAt: now()}
	// A single INSERT in autocommit mode waits for the write lock under
	// busy_timeout, so it needs no explicit transaction. RETURNING gives
	// the id on both databases (pgx has no LastInsertId).
	err = d.write.QueryRowContext(ctx,
		d.q("INSERT INTO accounts (email, password_hash, created_at) VALUES (?, ?, ?) RETURNING id"),
		email, hash, formatTime(a.CreatedAt)).Scan(&a.ID)
	if isUniqueViolation(err) {
		return Account{}, fmt.Errorf("store: create account: %w", ErrEmailTaken)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	return a, nil
}

// AccountByEmail returns the account registered with email (ASCII case does
// not matter), or an error wrapping ErrNotFound.
func (d *DB) AccountByEmail(ctx context.Context, email string) (_ Account, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	// SQLite's column is NOCASE; PostgreSQL's unique index is on
	// lower(email) in the "C" collation, which folds ASCII only, and the
	// lookup must fold the same way to use it.
	where := "email = ?"
	if d.postgres {
		where = `lower(email) = lower(CAST(? AS TEXT) COLLATE "C")`
	}
	a, err := scanAccount(d.read.QueryRowContext(ctx,
		d.q("SELECT id, email, password_hash, created_at, session_epoch FROM accounts WHERE "+where), email))
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %q: %w", email, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account %q: %w", email, err)
	}
	return a, nil
}

// Account returns the account with id, or an error wrapping ErrNotFound.
func (d *DB) Account(ctx context.Context, id int64) (_ Account, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	a, err := scanAccount(d.read.QueryRowContext(ctx,
		d.q("SELECT id, email, password_hash, created_at, session_epoch FROM accounts WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account %d: %w", id, err)
	}
	return a, nil
}

func scanAccount(s scanner) (Account, error) {
	var (
		a         Account
		createdAt string
	)
	if err := s.Scan(&a.ID, &a.Email, &a.PasswordHash, &createdAt, &a.SessionEpoch); err != nil {
		return Account{}, err
	}
	t, err := parseTime(createdAt)
	if err != nil {
		return Account{}, err
	}
	a.CreatedAt = t
	return a, nil
}

// SavedCart returns the cart the account saved, as SaveCart stored it, or nil
// and no error when there is none. The store does not read the bytes: the cart
// format belongs to the web layer.
func (d *DB) SavedCart(ctx context.Context, accountID int64) (_ []byte, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	var data []byte
	err = d.read.QueryRowContext(ctx,
		d.q("SELECT data FROM saved_carts WHERE account_id = ?"), accountID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: saved cart of account %d: %w", accountID, err)
	}
	return data, nil
}

// SaveCart replaces the account's saved cart. Empty data deletes it, so an
// emptied cart does not come back at the next login. An unknown account fails
// with an error wrapping ErrNotFound.
func (d *DB) SaveCart(ctx context.Context, accountID int64, data []byte) (err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if err := d.checkWritable(); err != nil {
		return fmt.Errorf("store: save cart of account %d: %w", accountID, err)
	}
	if len(data) == 0 {
		_, err = d.write.ExecContext(ctx, d.q("DELETE FROM saved_carts WHERE account_id = ?"), accountID)
	} else {
		_, err = d.write.ExecContext(ctx,
			d.q(`INSERT INTO saved_carts (account_id, data, updated_at) VALUES (?, ?, ?)
			 ON CONFLICT (account_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`),
			accountID, data, formatTime(now()))
	}
	if isForeignKeyViolation(err) {
		return fmt.Errorf("store: save cart of account %d: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: save cart of account %d: %w", accountID, err)
	}
	return nil
}

// SessionEpoch returns the account's session epoch, or an error wrapping
// ErrNotFound. Sessions sealed in cookies carry the epoch of their login and
// are revoked when it changes: a read on every logged-in request.
func (d *DB) SessionEpoch(ctx context.Context, accountID int64) (_ int64, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	var epoch int64
	err = d.read.QueryRowContext(ctx,
		d.q("SELECT session_epoch FROM accounts WHERE id = ?"), accountID).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: session epoch of account %d: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: session epoch of account %d: %w", accountID, err)
	}
	return epoch, nil
}

// BumpSessionEpoch raises the account's session epoch by one and returns the
// new value, revoking every session that carries an older one (logout,
// password change). An unknown account fails with an error wrapping
// ErrNotFound.
func (d *DB) BumpSessionEpoch(ctx context.Context, accountID int64) (_ int64, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	var epoch int64
	err = d.write.QueryRowContext(ctx,
		d.q("UPDATE accounts SET session_epoch = session_epoch + 1 WHERE id = ? RETURNING session_epoch"), accountID).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: bump session epoch of account %d: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: bump session epoch of account %d: %w", accountID, err)
	}
	return epoch, nil
}
