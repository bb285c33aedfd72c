package store

// Receipts and the outbox: what background jobs and the schedule write
// (issue 20). Both are keyed so that a job that runs twice (retried, or
// rescued from a replica that died mid-run) writes once.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Receipt states. A missing row is a receipt still pending.
const (
	ReceiptReady  = "ready"
	ReceiptFailed = "failed"
)

// Receipt is the receipt a background job made for an order, or its last
// word that it could not.
type Receipt struct {
	OrderID  string
	State    string // ReceiptReady or ReceiptFailed
	HTML     string // the rendered receipt page; "" when failed
	Reason   string // why it failed; "" when ready
	MadeBy   string // the replica whose job wrote it
	Attempts int
	MadeAt   time.Time
}

// Message is one message in the outbox, the shop's development mailbox.
type Message struct {
	ID int64
	// Key makes the message go out once: a second message with the same
	// key is not sent.
	Key       string
	Kind      string
	Recipient string
	OrderID   string // "" when not about an order
	Period    string // "" when not periodic
	Subject   string
	Body      string
	SentBy    string
	At        time.Time
}

// SaveReceipt stores r and, when r is ready and confirmation is not nil, the
// customer's confirmation message, in one transaction. A receipt already
// there wins, except that a ready receipt replaces a failed one; saved
// reports whether r was written. Running the same job twice therefore
// stores one receipt and sends one confirmation.
func (d *DB) SaveReceipt(ctx context.Context, r Receipt, confirmation *Message) (saved bool, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if r.OrderID == "" || (r.State != ReceiptReady && r.State != ReceiptFailed) {
		return false, fmt.Errorf("store: save receipt: order %q, state %q", r.OrderID, r.State)
	}
	if err := d.checkWritable(); err != nil {
		return false, fmt.Errorf("store: save receipt: %w", err)
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: save receipt: %w", err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO receipts (order_id, state, html, reason, made_by, attempts, made_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, html = excluded.html, reason = excluded.reason,
			made_by = excluded.made_by, attempts = excluded.attempts, made_at = excluded.made_at
		WHERE receipts.state = 'failed' AND excluded.state = 'ready'`),
		r.OrderID, r.State, r.HTML, r.Reason, r.MadeBy, r.Attempts, formatTime(now()))
	if isForeignKeyViolation(err) {
		return false, fmt.Errorf("store: save receipt: order %q: %w", r.OrderID, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("store: save receipt: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: save receipt: %w", err)
	}
	if n == 1 && r.State == ReceiptReady && confirmation != nil {
		if _, err := d.insertMessage(ctx, tx, *confirmation); err != nil {
			return false, fmt.Errorf("store: save receipt: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: save receipt: commit: %w", err)
	}
	return n == 1, nil
}

// Receipt returns the receipt of an order, or an error wrapping ErrNotFound
// while none was made (pending). Callers check ownership.
func (d *DB) Receipt(ctx context.Context, orderID string) (_ Receipt, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	r := Receipt{OrderID: orderID}
	var madeAt string
	err = d.read.QueryRowContext(ctx,
		d.q("SELECT state, html, reason, made_by, attempts, made_at FROM receipts WHERE order_id = ?"), orderID).
		Scan(&r.State, &r.HTML, &r.Reason, &r.MadeBy, &r.Attempts, &madeAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Receipt{}, fmt.Errorf("store: receipt of %q: %w", orderID, ErrNotFound)
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("store: receipt of %q: %w", orderID, err)
	}
	if r.MadeAt, err = parseTime(madeAt); err != nil {
		return Receipt{}, fmt.Errorf("store: receipt of %q: %w", orderID, err)
	}
	return r, nil
}

// SendMessage puts m in the outbox unless a message with its key is there
// already; sent reports whether it went in. The time is the database's
// writer's clock, stamped under the write lock.
func (d *DB) SendMessage(ctx context.Context, m Message) (sent bool, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if err := d.checkWritable(); err != nil {
		return false, fmt.Errorf("store: send %s message: %w", m.Kind, err)
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: send %s message: %w", m.Kind, err)
	}
	defer rollback(tx)
	if sent, err = d.insertMessage(ctx, tx, m); err != nil {
		return false, fmt.Errorf("store: send %s message: %w", m.Kind, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: send %s message: commit: %w", m.Kind, err)
	}
	return sent, nil
}

func (d *DB) insertMessage(ctx context.Context, tx *sql.Tx, m Message) (bool, error) {
	if m.Key == "" || m.Kind == "" {
		return false, fmt.Errorf("message without key or kind")
	}
	orderID := sql.NullString{String: m.OrderID, Valid: m.OrderID != ""}
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO outbox (dedup_key, kind, recipient, order_id, period, subject, body, sent_by, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING`),
		m.Key, m.Kind, m.Recipient, orderID, m.Period, m.Subject, m.Body, m.SentBy, formatTime(now()))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

const messageColumns = `id, dedup_key, kind, recipient, coalesce(order_id, ''), period, subject, body, sent_by, at FROM outbox`

func scanMessage(s scanner) (Message, error) {
	var m Message
	var at string
	if err := s.Scan(&m.ID, &m.Key, &m.Kind, &m.Recipient, &m.OrderID, &m.Period, &m.Subject, &m.Body, &m.SentBy, &at); err != nil {
		return Message{}, err
	}
	t, err := parseTime(at)
	m.At = t
	return m, err
}

// Messages returns the newest messages of the given kinds, newest first, at
// most limit of them.
func (d *DB) Messages(ctx context.Context, kinds []string, limit int) (_ []Message, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if len(kinds) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(kinds)+1)
	in := ""
	for i, k := range kinds {
		if i > 0 {
			in += ", "
		}
		in += "?"
		args = append(args, k)
	}
	args = append(args, limit)
	rows, err := d.read.QueryContext(ctx,
		d.q("SELECT "+messageColumns+" WHERE kind IN ("+in+") ORDER BY at DESC, id DESC LIMIT ?"), args...)
	if err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	defer rows.Close()
	var ms []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("store: messages: %w", err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	return ms, nil
}

// OrderMessages returns the messages about one order, oldest first. Callers
// check ownership: they are the customer's.
func (d *DB) OrderMessages(ctx context.Context, orderID string) (_ []Message, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	rows, err := d.read.QueryContext(ctx, d.q("SELECT "+messageColumns+" WHERE order_id = ? ORDER BY id"), orderID)
	if err != nil {
		return nil, fmt.Errorf("store: messages of order %q: %w", orderID, err)
	}
	defer rows.Close()
	var ms []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("store: messages of order %q: %w", orderID, err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: messages of order %q: %w", orderID, err)
	}
	return ms, nil
}

// LowStock returns the products with fewer than below units in stock, in
// id order.
func (d *DB) LowStock(ctx context.Context, below int) (_ []Product, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	rows, err := d.read.QueryContext(ctx, d.q("SELECT "+productColumns+" WHERE p.stock < ? ORDER BY p.id"), below)
	if err != nil {
		return nil, fmt.Errorf("store: low stock: %w", err)
	}
	defer rows.Close()
	var ps []Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("store: low stock: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: low stock: %w", err)
	}
	return ps, nil
}

// Postgres reports whether the database is PostgreSQL rather than SQLite,
// for a library that brings its own driver for each (River).
func (d *DB) Postgres() bool { return d.postgres }

// OpenPool opens a second pool on the same database for a library that runs
// its own SQL (River's job queue), so that its polling does not queue behind
// orders. With SQLite it is one write connection (WAL, immediate
// transactions, a busy_timeout of 5 s: River's own queries wait longer than
// a request may); with PostgreSQL a pool of two, on top of the bound
// SetMaxConns sets for the shop's own (poll-only River needs no more: its
// fetches, completions and maintenance are short). The caller closes it.
func (d *DB) OpenPool(ctx context.Context) (*sql.DB, error) {
	if d.postgres {
		db, err := sql.Open("pgx", d.dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open pool: %w", err)
		}
		db.SetMaxOpenConns(2)
		db.SetMaxIdleConns(2)
		db.SetConnMaxIdleTime(time.Minute)
		return db, nil
	}
	db, err := sql.Open("sqlite", sqliteDSNWith(d.file.path, false, 5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	// One connection: SQLite has one writer per file anyway, and River's
	// queries then queue in database/sql rather than in the busy handler.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// MigrateAlong runs fn while holding the lock replicas take to migrate the
// shop's own schema at start, so that another schema living beside ours
// (River's tables) is migrated by one replica at a time. With SQLite fn
// runs in the write transaction that is the lock, and should migrate in tx.
// With PostgreSQL tx is nil: the lock is the same advisory lock, held by a
// session of its own, and fn migrates outside any transaction of ours
// (River's migrations add an enum value and then use it, which one
// transaction may not). It retries while the database is busy or not up
// yet, as Open does.
func (d *DB) MigrateAlong(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	deadline := time.Now().Add(startWait)
	delay := 10 * time.Millisecond
	for {
		err := d.migrateAlongOnce(ctx, fn)
		classify(ctx, &err)
		if err == nil || !errors.Is(err, ErrUnavailable) || time.Now().Add(delay).After(deadline) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while retrying after %w)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func (d *DB) migrateAlongOnce(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if d.postgres {
		conn, err := d.write.Conn(ctx)
		if err != nil {
			return fmt.Errorf("store: migrate along: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("store: migrate along: lock: %w", err)
		}
		// Unlocked even if ctx ended; a session that breaks drops it anyway.
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
		if err := fn(ctx, nil); err != nil {
			return fmt.Errorf("store: migrate along: %w", err)
		}
		return nil
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate along: %w", err)
	}
	defer rollback(tx)
	if err := fn(ctx, tx); err != nil {
		return fmt.Errorf("store: migrate along: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate along: commit: %w", err)
	}
	return nil
}
