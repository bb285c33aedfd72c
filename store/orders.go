package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// NewOrder is a checkout as the web layer hands it over. The owner is the
// account when AccountID is set, else the session: only the owner may replay
// its idempotency key.
type NewOrder struct {
	// IdempotencyKey comes from the checkout form, so a resubmitted or
	// retried form (on any replica) finds the first order instead of
	// buying twice.
	IdempotencyKey string
	SessionID      string
	AccountID      int64 // 0 = anonymous
	Replica        string
	Name           string
	Email          string
	Address        string
	Lines          []NewOrderLine
	// Enqueue, when set, runs inside the order's transaction once the order
	// and its lines are in it, so that work the order starts (its receipt
	// job, in a queue kept in this database) commits with the order or not
	// at all. Its error refuses the order. A replay does not run it.
	Enqueue func(ctx context.Context, tx *sql.Tx, o Order) error
}

// NewOrderLine asks for Quantity units of one product.
type NewOrderLine struct {
	ProductID int64
	Quantity  int
}

// Order is a placed order. Its id is random so that knowing one order's id
// tells nothing about another's.
type Order struct {
	ID             string
	IdempotencyKey string
	SessionID      string
	AccountID      int64 // 0 = anonymous
	Replica        string
	Name           string
	Email          string
	Address        string
	Lines          []OrderLine
	TotalCents     int64
	CreatedAt      time.Time
	// StockLeft is each product's stock right after this order took its
	// share, as the order's own transaction left it: what the live events
	// announce. Only PlaceOrder's new orders carry it; nil otherwise.
	StockLeft map[int64]int
}

// OrderLine is one line of a placed order. Slug, name and price are copied at
// order time, so the order reads the same after the catalog changes.
type OrderLine struct {
	ProductID  int64
	Slug       string
	Name       string
	Quantity   int
	PriceCents int64 // per unit
}

// OutOfStockError names the product that refused an order, so the page can
// say what to take out of the cart. It matches ErrOutOfStock with errors.Is.
type OutOfStockError struct {
	ProductID int64
	Name      string
	Available int
	Requested int
}

// Error says which product is short and by how much.
func (e *OutOfStockError) Error() string {
	return fmt.Sprintf("%s: %s (product %d): %d available, %d requested",
		ErrOutOfStock, e.Name, e.ProductID, e.Available, e.Requested)
}

// Is makes errors.Is(err, ErrOutOfStock) true.
func (e *OutOfStockError) Is(target error) bool {
	return target == ErrOutOfStock
}

// PlaceOrder places o, or finds the order its idempotency key already placed.
//
// created is true when this call placed the order. A key already used by the
// same owner returns that order with created false and changes nothing; used
// by another owner it fails with ErrIdempotencyConflict. Otherwise the whole
// order is refused if any product is unknown (ErrNotFound) or short of stock
// (*OutOfStockError); else stock is decremented and the order stored, all in
// one transaction.
func (d *DB) PlaceOrder(ctx context.Context, o NewOrder) (order Order, created bool, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if err := validateNewOrder(o); err != nil {
		return Order{}, false, fmt.Errorf("store: place order: %w", err)
	}
	type placed struct {
		order   Order
		created bool
	}
	// Safe to run twice: a first attempt that committed before its
	// connection broke is found by its key, as a replay.
	p, err := retried(ctx, d, func(ctx context.Context) (placed, error) {
		// A replay is the common repeat (a reload, a double click, a retry
		// through another replica): answer it from a snapshot without
		// taking the write lock.
		existing, err := d.orderByKey(ctx, o.IdempotencyKey)
		switch {
		case err == nil:
			order, created, err := resolveReplay(existing, o)
			return placed{order, created}, err
		case !errors.Is(err, ErrNotFound):
			return placed{}, fmt.Errorf("store: place order: %w", err)
		}
		order, created, err := d.insertOrder(ctx, o)
		return placed{order, created}, err
	})
	return p.order, p.created, err
}

// maxLineQuantity keeps sums of quantities and prices far from overflow; the
// web layer's own limit is much lower.
const maxLineQuantity = 1_000_000

func validateNewOrder(o NewOrder) error {
	switch {
	case o.IdempotencyKey == "":
		return errors.New("empty idempotency key")
	case o.AccountID == 0 && o.SessionID == "":
		// An order nobody owns could be replayed by anybody.
		return errors.New("no session and no account")
	case len(o.Lines) == 0:
		return errors.New("no lines")
	}
	for _, l := range o.Lines {
		if l.Quantity < 1 || l.Quantity > maxLineQuantity {
			return fmt.Errorf("product %d: quantity %d, want 1..%d", l.ProductID, l.Quantity, maxLineQuantity)
		}
	}
	return nil
}

// insertOrder places o in one transaction (immediate with SQLite). The order
// row goes in first: if the UNIQUE idempotency key refuses it, another
// request (perhaps in another process) placed that key after our snapshot,
// and its order, not our stock check, decides the answer.
//
// Stock is decremented by conditional updates (stock >= n) in product id
// order. With SQLite the write lock already serializes writers; with
// PostgreSQL the update waits for a concurrent order's row lock and then
// sees its result, so two replicas cannot both sell the last unit, and the
// fixed order keeps two orders of the same products from deadlocking.
func (d *DB) insertOrder(ctx context.Context, o NewOrder) (Order, bool, error) {
	order := Order{
		ID:             newOrderID(),
		IdempotencyKey: o.IdempotencyKey,
		SessionID:      o.SessionID,
		AccountID:      o.AccountID,
		Replica:        o.Replica,
		Name:           o.Name,
		Email:          o.Email,
		Address:        o.Address,
	}
	if err := d.checkWritable(); err != nil {
		return Order{}, false, fmt.Errorf("store: place order: %w", err)
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return Order{}, false, fmt.Errorf("store: place order: %w", err)
	}
	defer rollback(tx)
	// Stamped under the write lock, so that times follow commit order
	// across processes and "newest first" means what it says.
	order.CreatedAt = now()

	_, err = tx.ExecContext(ctx,
		d.q(`INSERT INTO orders (id, idempotency_key, session_id, account_id, replica, name, email, address, created_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		order.ID, order.IdempotencyKey, order.SessionID, nullID(order.AccountID),
		order.Replica, order.Name, order.Email, order.Address, formatTime(order.CreatedAt))
	switch {
	case isUniqueViolation(err):
		rollback(tx)
		existing, err := d.orderByKey(ctx, o.IdempotencyKey)
		if err != nil {
			return Order{}, false, fmt.Errorf("store: place order: resolve key after unique violation: %w", err)
		}
		return resolveReplay(existing, o)
	case isForeignKeyViolation(err):
		return Order{}, false, fmt.Errorf("store: place order: account %d: %w", o.AccountID, ErrNotFound)
	case err != nil:
		return Order{}, false, fmt.Errorf("store: place order: %w", err)
	}

	// Check every line before changing anything: a short product refuses
	// the whole order, and the error names the first one in line order.
	products := make(map[int64]Product, len(o.Lines))
	requested := make(map[int64]int, len(o.Lines))
	for _, l := range o.Lines {
		p, ok := products[l.ProductID]
		if !ok {
			err := tx.QueryRowContext(ctx,
				d.q("SELECT slug, name, price_cents, stock FROM products WHERE id = ?"), l.ProductID).
				Scan(&p.Slug, &p.Name, &p.PriceCents, &p.Stock)
			if errors.Is(err, sql.ErrNoRows) {
				return Order{}, false, fmt.Errorf("store: place order: product %d: %w", l.ProductID, ErrNotFound)
			}
			if err != nil {
				return Order{}, false, fmt.Errorf("store: place order: product %d: %w", l.ProductID, err)
			}
			p.ID = l.ProductID
			products[l.ProductID] = p
		}
		requested[l.ProductID] += l.Quantity
		order.Lines = append(order.Lines, OrderLine{
			ProductID:  p.ID,
			Slug:       p.Slug,
			Name:       p.Name,
			Quantity:   l.Quantity,
			PriceCents: p.PriceCents,
		})
		order.TotalCents += p.PriceCents * int64(l.Quantity)
	}
	for _, l := range order.Lines {
		if p, n := products[l.ProductID], requested[l.ProductID]; n > p.Stock {
			return Order{}, false, fmt.Errorf("store: place order: %w", &OutOfStockError{
				ProductID: p.ID, Name: p.Name, Available: p.Stock, Requested: n,
			})
		}
	}

	order.StockLeft = make(map[int64]int, len(requested))
	for _, id := range slices.Sorted(maps.Keys(requested)) {
		n := requested[id]
		// RETURNING: the stock this very update left, not a later read
		// that another replica's order may already have changed.
		var left int
		err := tx.QueryRowContext(ctx,
			d.q("UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ? RETURNING stock"), n, id, n).Scan(&left)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Order{}, false, fmt.Errorf("store: place order: product %d: %w", id, err)
		}
		if err == nil {
			order.StockLeft[id] = left
		} else {
			// Another replica's order took the stock after our read.
			p := products[id]
			if err := tx.QueryRowContext(ctx, d.q("SELECT stock FROM products WHERE id = ?"), id).Scan(&p.Stock); err != nil {
				return Order{}, false, fmt.Errorf("store: place order: product %d: %w", id, err)
			}
			return Order{}, false, fmt.Errorf("store: place order: %w", &OutOfStockError{
				ProductID: id, Name: p.Name, Available: p.Stock, Requested: n,
			})
		}
	}
	for i, l := range order.Lines {
		if _, err := tx.ExecContext(ctx,
			d.q(`INSERT INTO order_lines (order_id, line, product_id, slug, name, quantity, price_cents)
			 VALUES (?, ?, ?, ?, ?, ?, ?)`),
			order.ID, i+1, l.ProductID, l.Slug, l.Name, l.Quantity, l.PriceCents); err != nil {
			return Order{}, false, fmt.Errorf("store: place order: line %d: %w", i+1, err)
		}
	}
	if o.Enqueue != nil {
		if err := o.Enqueue(ctx, tx, order); err != nil {
			return Order{}, false, fmt.Errorf("store: place order: enqueue: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Order{}, false, fmt.Errorf("store: place order: commit: %w", err)
	}
	return order, true, nil
}

// resolveReplay answers a key that already has an order: the order for its
// owner, a conflict for anybody else.
func resolveReplay(existing Order, o NewOrder) (Order, bool, error) {
	if !sameOwner(existing, o) {
		return Order{}, false, fmt.Errorf("store: place order: key %q: %w", o.IdempotencyKey, ErrIdempotencyConflict)
	}
	return existing, false, nil
}

// sameOwner reports whether o comes from whoever placed existing: the same
// account when either has one, else the same session.
func sameOwner(existing Order, o NewOrder) bool {
	if existing.AccountID != 0 || o.AccountID != 0 {
		return existing.AccountID == o.AccountID
	}
	return existing.SessionID == o.SessionID
}

// orderIDEncoding is lowercase so that ids read well in URLs.
var orderIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newOrderID returns 16 base32 characters (80 random bits): order pages are
// guarded by ownership, and unguessable ids keep a missing check from
// exposing every order.
func newOrderID() string {
	var b [10]byte
	// crypto/rand.Read never fails; it crashes the program if the
	// system's source fails.
	_, _ = rand.Read(b[:])
	return orderIDEncoding.EncodeToString(b[:])
}

// nullID stores 0 as NULL, so that the foreign key applies only to real
// accounts.
func nullID(id int64) sql.NullInt64 {
	return sql.NullInt64{Int64: id, Valid: id != 0}
}

// Order returns the order with id, or an error wrapping ErrNotFound. Callers
// check ownership: the id alone is no permission.
func (d *DB) Order(ctx context.Context, id string) (_ Order, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Order, err error) {
		o, err := d.orderWhere(ctx, "id", id)
		if err != nil {
			return Order{}, fmt.Errorf("store: order %q: %w", id, err)
		}
		return o, nil
	})
}

// OrderByKey returns the order placed with an idempotency key, or an error
// wrapping ErrNotFound. Callers check ownership.
func (d *DB) OrderByKey(ctx context.Context, key string) (_ Order, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Order, err error) {
		o, err := d.orderWhere(ctx, "idempotency_key", key)
		if err != nil {
			return Order{}, fmt.Errorf("store: order with key %q: %w", key, err)
		}
		return o, nil
	})
}

// orderWhere reads the one order whose unique column equals value.
func (d *DB) orderWhere(ctx context.Context, column, value string) (Order, error) {
	tx, err := d.readTx(ctx)
	if err != nil {
		return Order{}, err
	}
	defer rollback(tx)
	o, err := scanOrder(tx.QueryRowContext(ctx, d.q("SELECT "+orderColumns+" WHERE "+column+" = ?"), value))
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, err
	}
	if err := d.loadLines(ctx, tx, []*Order{&o}); err != nil {
		return Order{}, err
	}
	return o, nil
}

// OrdersByAccount returns the account's orders, newest first.
func (d *DB) OrdersByAccount(ctx context.Context, accountID int64) (_ []Order, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ []Order, err error) {
		tx, err := d.readTx(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: orders of account %d: %w", accountID, err)
		}
		defer rollback(tx)
		// Insertion order breaks ties: SQLite's rowid, PostgreSQL's seq.
		tiebreak := "rowid"
		if d.postgres {
			tiebreak = "seq"
		}
		rows, err := tx.QueryContext(ctx,
			d.q("SELECT "+orderColumns+" WHERE account_id = ? ORDER BY created_at DESC, "+tiebreak+" DESC"), accountID)
		if err != nil {
			return nil, fmt.Errorf("store: orders of account %d: %w", accountID, err)
		}
		defer rows.Close()
		var orders []Order
		for rows.Next() {
			o, err := scanOrder(rows)
			if err != nil {
				return nil, fmt.Errorf("store: orders of account %d: %w", accountID, err)
			}
			orders = append(orders, o)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: orders of account %d: %w", accountID, err)
		}
		rows.Close()
		ptrs := make([]*Order, len(orders))
		for i := range orders {
			ptrs[i] = &orders[i]
		}
		if err := d.loadLines(ctx, tx, ptrs); err != nil {
			return nil, fmt.Errorf("store: orders of account %d: %w", accountID, err)
		}
		return orders, nil
	})
}

// readTx begins a read-only (deferred) transaction, so that an order and its
// lines come from one snapshot.
func (d *DB) readTx(ctx context.Context) (*sql.Tx, error) {
	return d.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
}

// orderByKey returns the order placed with key, or an error wrapping
// ErrNotFound.
func (d *DB) orderByKey(ctx context.Context, key string) (Order, error) {
	tx, err := d.readTx(ctx)
	if err != nil {
		return Order{}, err
	}
	defer rollback(tx)
	o, err := scanOrder(tx.QueryRowContext(ctx, d.q("SELECT "+orderColumns+" WHERE idempotency_key = ?"), key))
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("order with key %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("order with key %q: %w", key, err)
	}
	if err := d.loadLines(ctx, tx, []*Order{&o}); err != nil {
		return Order{}, fmt.Errorf("order with key %q: %w", key, err)
	}
	return o, nil
}

const orderColumns = `id, idempotency_key, session_id, account_id, replica, name, email, address, created_at
	FROM orders`

func scanOrder(s scanner) (Order, error) {
	var (
		o         Order
		accountID sql.NullInt64
		createdAt string
	)
	if err := s.Scan(&o.ID, &o.IdempotencyKey, &o.SessionID, &accountID, &o.Replica,
		&o.Name, &o.Email, &o.Address, &createdAt); err != nil {
		return Order{}, err
	}
	o.AccountID = accountID.Int64
	t, err := parseTime(createdAt)
	if err != nil {
		return Order{}, err
	}
	o.CreatedAt = t
	return o, nil
}

// loadLines fills the lines and totals of orders. One query per order is
// fine for SQLite, which runs in-process, so a query is a function call; with
// PostgreSQL it is a round trip per order, and an account's order page is the
// only caller with more than one.
func (d *DB) loadLines(ctx context.Context, q queryer, orders []*Order) error {
	for _, o := range orders {
		rows, err := q.QueryContext(ctx,
			d.q(`SELECT product_id, slug, name, quantity, price_cents
			 FROM order_lines WHERE order_id = ? ORDER BY line`), o.ID)
		if err != nil {
			return fmt.Errorf("lines: %w", err)
		}
		o.Lines, o.TotalCents = nil, 0
		for rows.Next() {
			var l OrderLine
			if err := rows.Scan(&l.ProductID, &l.Slug, &l.Name, &l.Quantity, &l.PriceCents); err != nil {
				rows.Close()
				return fmt.Errorf("lines: %w", err)
			}
			o.Lines = append(o.Lines, l)
			o.TotalCents += l.PriceCents * int64(l.Quantity)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("lines: %w", err)
		}
	}
	return nil
}
