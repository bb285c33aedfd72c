package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/store"
)

var pg testenv.SharedPostgres

func TestMain(m *testing.M) {
	code := m.Run()
	if err := pg.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close postgres:", err)
	}
	os.Exit(code)
}

// backends are the databases the queue must work on alike.
var backends = []struct {
	name   string
	newDSN func(t testing.TB) string
}{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "shop.db") }},
	{"postgres", pg.NewDatabase},
}

func openDB(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// receiptPage is a renderer as web's: the order's id and total in a page.
func receiptPage(o store.Order, _ string) (string, error) {
	return fmt.Sprintf("<h1>Receipt %s</h1><p>%d cents</p>", o.ID, o.TotalCents), nil
}

// placeOrder places an order of one unit of product 1, enqueuing its receipt
// job in the order's transaction.
func placeOrder(t testing.TB, db *store.DB, replica string, enqueue func(context.Context, *sql.Tx, store.Order) error) store.Order {
	t.Helper()
	o, created, err := db.PlaceOrder(context.Background(), store.NewOrder{
		IdempotencyKey: fmt.Sprintf("key-%d-%s", time.Now().UnixNano(), t.Name()),
		SessionID:      "sid", Replica: replica, Name: "Ada", Email: "ada@example.com", Address: "1 Loop Road",
		Lines:   []store.NewOrderLine{{ProductID: 1, Quantity: 2}},
		Enqueue: enqueue,
	})
	if err != nil || !created {
		t.Fatalf("place order: created %v, %v", created, err)
	}
	return o
}

type receipts interface {
	Receipt(ctx context.Context, o store.Order) (jobs.Status, error)
}

// waitState polls until o's receipt is in state want, or fails after d.
func waitState(t testing.TB, r receipts, o store.Order, want string, d time.Duration) jobs.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, err := r.Receipt(context.Background(), o)
		if err == nil && s.State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt of %s: state %q (err %v) after %s, want %q", o.ID, s.State, err, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueMakesReceiptOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, b.newDSN(t))
			q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: "shop1", Render: receiptPage})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			o := placeOrder(t, db, "shop1", q.EnqueueTx)
			s := waitState(t, q, o, jobs.Ready, 10*time.Second)
			if !strings.Contains(s.HTML, "Receipt "+o.ID) || s.MadeBy != "shop1" {
				t.Errorf("receipt = %+v", s)
			}
			if s.Confirmation == nil || s.Confirmation.Recipient != "ada@example.com" || !strings.Contains(s.Confirmation.Body, o.ID) {
				t.Errorf("confirmation = %+v", s.Confirmation)
			}
			// A second run of the job (a retry, a rescue) writes nothing.
			saved, err := db.SaveReceipt(context.Background(), store.Receipt{OrderID: o.ID, State: store.ReceiptReady, HTML: "again", MadeBy: "shop2"},
				&store.Message{Key: jobs.KindConfirmation + "/" + o.ID, Kind: jobs.KindConfirmation, OrderID: o.ID, SentBy: "shop2"})
			if err != nil || saved {
				t.Errorf("second save: saved %v, %v; want false, nil", saved, err)
			}
			ms, err := db.OrderMessages(context.Background(), o.ID)
			if err != nil || len(ms) != 1 {
				t.Errorf("messages of the order: %d, %v; want 1", len(ms), err)
			}
			// Staff never see a customer's confirmation.
			staff, err := db.Messages(context.Background(), jobs.StaffKinds, 100)
			if err != nil || len(staff) != 0 {
				t.Errorf("staff messages = %v, %v; want none", staff, err)
			}
		})
	}
}

func TestQueueEnqueuesInTheOrdersTransaction(t *testing.T) {
	t.Parallel()
	db := openDB(t, filepath.Join(t.TempDir(), "shop.db"))
	q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: "shop1", Render: receiptPage})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// An order refused after its job was enqueued leaves no job: the
	// enqueue rolls back with it.
	boom := errors.New("refused after the enqueue")
	_, _, err = db.PlaceOrder(context.Background(), store.NewOrder{
		IdempotencyKey: "rolled-back-order-key", SessionID: "sid", Replica: "shop1", Name: "Ada", Email: "ada@example.com", Address: "1 Loop Road",
		Lines: []store.NewOrderLine{{ProductID: 1, Quantity: 1}},
		Enqueue: func(ctx context.Context, tx *sql.Tx, o store.Order) error {
			if err := q.EnqueueTx(ctx, tx, o); err != nil {
				return err
			}
			return boom
		},
	})
	if !errors.Is(err, boom) {
		t.Fatalf("place order: %v, want %v", err, boom)
	}
	if _, err := db.OrderByKey(context.Background(), "rolled-back-order-key"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused order exists: %v", err)
	}
	// The queue works on: the next order's receipt comes.
	o := placeOrder(t, db, "shop1", q.EnqueueTx)
	waitState(t, q, o, jobs.Ready, 10*time.Second)
}

func TestQueueFailureIsRetriedThenReported(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, b.newDSN(t))
			var calls atomic.Int32
			failing := func(store.Order, string) (string, error) {
				calls.Add(1)
				return "", errors.New("the receipt printer is out of paper")
			}
			q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: "shop1", Render: failing, MaxAttempts: 3, RetryBase: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			o := placeOrder(t, db, "shop1", q.EnqueueTx)
			s := waitState(t, q, o, jobs.Failed, 20*time.Second)
			if !strings.Contains(s.Reason, "out of paper") || !strings.Contains(s.Reason, "3 attempts") || s.Attempts != 3 {
				t.Errorf("failed receipt = %+v; want the reason after 3 attempts", s)
			}
			if n := calls.Load(); n != 3 {
				t.Errorf("renderer called %d times, want 3 (retried until the last attempt)", n)
			}
			if ms, _ := db.OrderMessages(context.Background(), o.ID); len(ms) != 0 {
				t.Errorf("a failed receipt sent %d messages", len(ms))
			}
		})
	}
}

func TestMemoryReceipts(t *testing.T) {
	t.Parallel()
	db := openDB(t, filepath.Join(t.TempDir(), "shop.db"))
	m := jobs.NewMemory(jobs.Options{Replica: "shop1", Render: receiptPage, Delay: 50 * time.Millisecond})
	defer m.Close()
	o := placeOrder(t, db, "shop1", m.EnqueueTx)
	m.Placed(o)
	if d := m.Describe(context.Background()); d.HeldHere != 1 || !d.LostIfKilled {
		t.Errorf("describe while running = %+v; want 1 held, lost if killed", d)
	}
	s := waitState(t, m, o, jobs.Ready, 5*time.Second)
	if s.HeldBy != "shop1" || s.Confirmation == nil {
		t.Errorf("status = %+v", s)
	}
	// Nothing reached the database: it is in this process only.
	if _, err := db.Receipt(context.Background(), o.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("memory receipt in the database: %v", err)
	}
	// Another replica cannot see it: pending, held by shop1.
	other := jobs.NewMemory(jobs.Options{Replica: "shop2", Render: receiptPage})
	defer other.Close()
	if s, _ := other.Receipt(context.Background(), o); s.State != jobs.Pending || s.HeldBy != "shop1" {
		t.Errorf("seen from shop2: %+v; want pending, held by shop1", s)
	}
	// shop1 restarted (a new process of the same name): lost.
	restarted := jobs.NewMemory(jobs.Options{Replica: "shop1", Render: receiptPage})
	defer restarted.Close()
	if s, _ := restarted.Receipt(context.Background(), o); s.State != jobs.Lost || !strings.Contains(s.Reason, "restarted") {
		t.Errorf("seen from the restarted shop1: %+v; want lost", s)
	}
}

func TestMemoryFailureIsRetriedThenReported(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	m := jobs.NewMemory(jobs.Options{Replica: "shop1", MaxAttempts: 2, RetryBase: 10 * time.Millisecond,
		Render: func(store.Order, string) (string, error) { calls.Add(1); return "", errors.New("template missing") }})
	defer m.Close()
	o := store.Order{ID: "order1", Replica: "shop1"}
	m.Placed(o)
	s := waitState(t, m, o, jobs.Failed, 5*time.Second)
	if !strings.Contains(s.Reason, "template missing") || calls.Load() != 2 {
		t.Errorf("status = %+v after %d calls; want failed with the reason after 2", s, calls.Load())
	}
}

// TestQueueWaitsOutADatabaseOutage: the database file is locked by another
// process while a receipt job runs. The job waits and retries without
// spending its attempt (one here: an outage that counted as a failure
// would fail the receipt), and the receipt is made once the database answers.
func TestQueueWaitsOutADatabaseOutage(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shop.db")
	db := openDB(t, path)
	q, err := jobs.OpenQueue(context.Background(), db, jobs.Options{Replica: "shop1", Render: receiptPage,
		Delay: 300 * time.Millisecond, MaxAttempts: 1, RetryBase: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	o := placeOrder(t, db, "shop1", q.EnqueueTx)
	release := testenv.HoldSQLite(t, path)
	time.Sleep(4 * time.Second)
	// Reads still answer from the WAL: the receipt is pending, not failed.
	if s, err := q.Receipt(context.Background(), o); err != nil || s.State != jobs.Pending {
		t.Errorf("receipt while the database is locked: %+v, %v; want pending", s, err)
	}
	release()
	s := waitState(t, q, o, jobs.Ready, 20*time.Second)
	if s.Confirmation == nil {
		t.Errorf("no confirmation after the outage: %+v", s)
	}
}
