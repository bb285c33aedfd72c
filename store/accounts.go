package store

import (
	"bytes"
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
func (d *DB) CreateAccount(ctx context.Context, email string, hash []byte) (Account, error) {
	return d.CreateAccountWithCart(ctx, email, hash, nil)
}

// CreateAccountWithCart is CreateAccount that also saves the account's cart
// (nil for none) in the same transaction: registering is one outcome,
// never an account whose cart write failed (a full disk) behind a 503.
func (d *DB) CreateAccountWithCart(ctx context.Context, email string, hash, cart []byte) (_ Account, err error) {
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
	retry := false
	return retried(ctx, d, func(ctx context.Context) (Account, error) {
		a, err := d.insertAccount(ctx, email, hash, cart)
		if retry && errors.Is(err, ErrEmailTaken) {
			// The first attempt's connection broke after its commit: the
			// account holding our hash (its salt makes it ours alone) is
			// the one we made.
			if got, gotErr := d.AccountByEmail(ctx, email); gotErr == nil && bytes.Equal(got.PasswordHash, hash) {
				return got, nil
			}
		}
		retry = true
		return a, err
	})
}

func (d *DB) insertAccount(ctx context.Context, email string, hash, cart []byte) (Account, error) {
	if err := d.checkWritable(); err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	defer rollback(tx)
	a := Account{Email: email, PasswordHash: hash, CreatedAt: now()}
	// RETURNING gives the id on both databases (pgx has no LastInsertId).
	err = tx.QueryRowContext(ctx,
		d.q("INSERT INTO accounts (email, password_hash, created_at) VALUES (?, ?, ?) RETURNING id"),
		email, hash, formatTime(a.CreatedAt)).Scan(&a.ID)
	if isUniqueViolation(err) {
		return Account{}, fmt.Errorf("store: create account: %w", ErrEmailTaken)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	if len(cart) > 0 {
		if _, err := tx.ExecContext(ctx, d.q("INSERT INTO saved_carts (account_id, data, updated_at) VALUES (?, ?, ?)"),
			a.ID, cart, formatTime(a.CreatedAt)); err != nil {
			return Account{}, fmt.Errorf("store: create account: save its cart: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	return a, nil
}

// DeleteNewAccount takes back an account that was just created, with its
// saved cart, when the rest of its registration failed (the session could
// not be saved). An account that placed an order is never deleted; a
// missing one is no error.
func (d *DB) DeleteNewAccount(ctx context.Context, id int64) (err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return d.retriedErr(ctx, func(ctx context.Context) error {
		if err := d.checkWritable(); err != nil {
			return fmt.Errorf("store: delete new account %d: %w", id, err)
		}
		if _, err := d.write.ExecContext(ctx,
			d.q("DELETE FROM accounts WHERE id = ? AND NOT EXISTS (SELECT 1 FROM orders WHERE account_id = ?)"), id, id); err != nil {
			return fmt.Errorf("store: delete new account %d: %w", id, err)
		}
		return nil
	})
}

// AccountByEmail returns the account registered with email (ASCII case does
// not matter), or an error wrapping ErrNotFound.
func (d *DB) AccountByEmail(ctx context.Context, email string) (_ Account, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Account, err error) {
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
	})
}

// Account returns the account with id, or an error wrapping ErrNotFound.
func (d *DB) Account(ctx context.Context, id int64) (_ Account, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Account, err error) {
		a, err := scanAccount(d.read.QueryRowContext(ctx,
			d.q("SELECT id, email, password_hash, created_at, session_epoch FROM accounts WHERE id = ?"), id))
		if errors.Is(err, sql.ErrNoRows) {
			return Account{}, fmt.Errorf("store: account %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return Account{}, fmt.Errorf("store: account %d: %w", id, err)
		}
		return a, nil
	})
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
	return retried(ctx, d, func(ctx context.Context) (_ []byte, err error) {
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
	})
}

// SaveCart replaces the account's saved cart. Empty data deletes it, so an
// emptied cart does not come back at the next login. An unknown account fails
// with an error wrapping ErrNotFound.
func (d *DB) SaveCart(ctx context.Context, accountID int64, data []byte) (err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return d.retriedErr(ctx, func(ctx context.Context) (err error) {
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
	})
}

// SessionEpoch returns the account's session epoch, or an error wrapping
// ErrNotFound. Sessions sealed in cookies carry the epoch of their login and
// are revoked when it changes: a read on every logged-in request.
func (d *DB) SessionEpoch(ctx context.Context, accountID int64) (_ int64, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ int64, err error) {
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
	})
}

// BumpSessionEpoch raises the account's session epoch by one and returns the
// new value, revoking every session that carries an older one (logout,
// password change). An unknown account fails with an error wrapping
// ErrNotFound.
func (d *DB) BumpSessionEpoch(ctx context.Context, accountID int64) (_ int64, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ int64, err error) {
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
	})
}
