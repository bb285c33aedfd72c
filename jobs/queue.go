package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	"github.com/statelab/shop/state"
	"github.com/statelab/shop/store"
)

// receiptArgs is the receipt job as River stores it: the order is all it
// needs, the rest is read when it runs.
type receiptArgs struct {
	OrderID string `json:"order_id"`
}

// Kind names the job in River's tables.
func (receiptArgs) Kind() string { return "receipt" }

// QueueJobs keeps receipt jobs and their results in the shop's database,
// with River: SQLite through riversqlite on a pool of its own, PostgreSQL
// through riverdatabasesql. The job is inserted in the order's own
// transaction, so an order never lacks its job.
type QueueJobs struct {
	opts    Options
	db      *store.DB
	pool    *sql.DB
	driver  riverdriver.Driver[*sql.Tx]
	client  *river.Client[*sql.Tx]
	running atomic.Int64 // receipt jobs running in this process

	stopSweep context.CancelFunc
	swept     chan struct{}
}

// OpenQueue migrates River's tables beside the shop's (one replica at a
// time, under the shop's migration lock), then starts a River client that
// works receipt jobs in this process until Close.
func OpenQueue(ctx context.Context, db *store.DB, opts Options) (*QueueJobs, error) {
	opts = opts.withDefaults()
	pool, err := db.OpenPool(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	q := &QueueJobs{opts: opts, db: db, pool: pool}
	if db.Postgres() {
		q.driver = riverdatabasesql.New(pool)
	} else {
		q.driver = riversqlite.New(pool)
	}
	migrator, err := rivermigrate.New(q.driver, &rivermigrate.Config{Logger: opts.Logger})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: river migrations: %w", err)
	}
	if err := db.MigrateAlong(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if tx == nil {
			_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		} else {
			_, err = migrator.MigrateTx(ctx, tx, rivermigrate.DirectionUp, nil)
		}
		return err
	}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: migrate River's tables: %w", err)
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &receiptWorker{q: q})
	q.client, err = river.NewClient(q.driver, &river.Config{
		ID:     fmt.Sprintf("%s-%d", opts.Replica, time.Now().UnixNano()),
		Logger: opts.Logger,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		// Poll, on both databases: riversqlite's notifications are an
		// extra row inserted in every order's transaction and a query on
		// River's one connection every 50 ms, and riverdatabasesql cannot
		// LISTEN without a pgx pool of its own. Fetching is a write, which
		// on SQLite takes the file's one write lock from the checkouts:
		// every 250 ms at most, a receipt is ready about that soon.
		FetchPollInterval: 250 * time.Millisecond,
		FetchCooldown:     250 * time.Millisecond,
		PollOnly:          true,
		Workers:           workers,
		MaxAttempts:       opts.MaxAttempts,
		RetryPolicy:       retryPolicy{opts},
		// A job whose replica died stays "running" until rescued. River's
		// own rescuer (on its elected leader, every 30 s) keeps the
		// default's safety net at our horizon; the sweeper below rescues
		// every second, so a dead replica's job is finished by another
		// within RescueAfter plus a few seconds.
		JobTimeout:           opts.jobTimeout(),
		RescueStuckJobsAfter: opts.RescueAfter,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: river client: %w", err)
	}
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: start river: %w", err)
	}
	sweepCtx, stop := context.WithCancel(context.Background())
	q.stopSweep, q.swept = stop, make(chan struct{})
	go q.sweep(sweepCtx)
	return q, nil
}

// Kind is Queue.
func (q *QueueJobs) Kind() string { return Queue }

// EnqueueTx inserts o's receipt job in tx, the order's own transaction:
// both commit or neither.
func (q *QueueJobs) EnqueueTx(ctx context.Context, tx *sql.Tx, o store.Order) error {
	if _, err := q.client.InsertTx(ctx, tx, receiptArgs{OrderID: o.ID}, nil); err != nil {
		return fmt.Errorf("jobs: enqueue the receipt of %s: %w", o.ID, err)
	}
	return nil
}

// Placed does nothing: the job was queued with the order.
func (q *QueueJobs) Placed(store.Order) {}

// Receipt reads o's receipt from the database: every replica sees the same.
func (q *QueueJobs) Receipt(ctx context.Context, o store.Order) (Status, error) {
	r, err := q.db.Receipt(ctx, o.ID)
	if errors.Is(err, store.ErrNotFound) {
		return Status{State: Pending}, nil
	}
	if err != nil {
		return Status{}, err
	}
	s := Status{State: r.State, HTML: r.HTML, Reason: r.Reason, MadeBy: r.MadeBy, MadeAt: r.MadeAt, Attempts: r.Attempts}
	if r.State == store.ReceiptReady {
		ms, err := q.db.OrderMessages(ctx, o.ID)
		if err != nil {
			return Status{}, err
		}
		for i := range ms {
			if ms[i].Kind == KindConfirmation {
				s.Confirmation = &ms[i]
			}
		}
	}
	return s, nil
}

// Describe says where the jobs live for the state audit: in the database,
// so this replica's death loses none (its running jobs are rescued).
func (q *QueueJobs) Describe(context.Context) state.Description {
	n := int(q.running.Load())
	return state.Description{
		Kind:         "jobs",
		Lives:        state.Database,
		HeldHere:     n,
		LostIfKilled: false,
		Note: fmt.Sprintf("-jobs queue: receipt jobs and their results are rows in the database (River); %d running in this process. If it dies mid-job another replica rescues the job after %s and finishes it.",
			n, q.opts.RescueAfter),
	}
}

// Close stops the client (running jobs get a moment to finish) and its pool.
func (q *QueueJobs) Close() error {
	q.stopSweep()
	<-q.swept
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := q.client.Stop(ctx)
	if err != nil {
		err = errors.Join(err, q.client.StopAndCancel(ctx))
	}
	return errors.Join(err, q.pool.Close())
}

// sweep rescues the jobs of dead replicas every second. River's own rescuer
// runs only on its leader and only every 30 s, and a dead leader is
// replaced after up to 15 s more, which together overshoot the 30 s in
// which a killed replica's job must be finished. The rescue is River's own
// operation (the driver's JobRescueMany), and it is conditional: a job
// still running, or rescued already by another replica, is left alone, so
// every replica may sweep.
func (q *QueueJobs) sweep(ctx context.Context) {
	defer close(q.swept)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := q.rescueOnce(ctx); err != nil && ctx.Err() == nil {
			q.opts.Logger.Warn("jobs: rescue of stuck jobs failed; retrying", "err", err)
		}
	}
}

func (q *QueueJobs) rescueOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, store.Timeout)
	defer cancel()
	exec := q.driver.GetExecutor()
	horizon := time.Now().Add(-q.opts.RescueAfter)
	stuck, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{Max: 100, StuckHorizon: horizon})
	if err != nil || len(stuck) == 0 {
		return err
	}
	now := time.Now().UTC()
	p := &riverdriver.JobRescueManyParams{StuckHorizon: horizon}
	for _, job := range stuck {
		e, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(job.Attempt, 0),
			Error: "rescued: the replica running it stopped answering (killed?); another replica takes it over"})
		if err != nil {
			return err
		}
		// Available at once, whatever the attempt count: the replica's
		// death is not the job's failure.
		p.ID = append(p.ID, job.ID)
		p.Error = append(p.Error, e)
		p.FinalizedAt = append(p.FinalizedAt, nil)
		p.ScheduledAt = append(p.ScheduledAt, now)
		p.State = append(p.State, string(rivertype.JobStateAvailable))
	}
	_, err = exec.JobRescueMany(ctx, p)
	if err == nil {
		q.opts.Logger.Info("jobs: rescued stuck jobs", "count", len(stuck))
	}
	return err
}

// retryPolicy waits RetryBase after the first failure, doubling after each.
type retryPolicy struct{ opts Options }

// NextRetry implements river.ClientRetryPolicy.
func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(p.opts.backoff(max(job.Attempt, 1)))
}

// receiptWorker makes one receipt per job.
type receiptWorker struct {
	river.WorkerDefaults[receiptArgs]
	q *QueueJobs
}

// Work makes the receipt of the job's order and saves it with the
// customer's confirmation, keyed by the order: a second run (a retry, or a
// rescue of a job whose replica died after saving) finds them and sends
// nothing twice. A database that does not answer snoozes the job without
// spending an attempt: an outage loses nothing and fails nothing.
func (w *receiptWorker) Work(ctx context.Context, job *river.Job[receiptArgs]) error {
	q := w.q
	q.running.Add(1)
	defer q.running.Add(-1)
	start := time.Now()
	id := job.Args.OrderID
	o, err := q.db.Order(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return river.JobCancel(fmt.Errorf("order %s does not exist", id))
	case errors.Is(err, store.ErrUnavailable):
		return river.JobSnooze(q.opts.backoff(1))
	case err != nil:
		return err
	}
	html, msg, err := makeReceipt(ctx, o, q.opts, start)
	if err != nil {
		if job.Attempt < job.MaxAttempts {
			return err
		}
		// The last attempt: say so on the order page, with the reason.
		_, serr := q.db.SaveReceipt(ctx, store.Receipt{OrderID: id, State: store.ReceiptFailed,
			Reason: fmt.Sprintf("%v (after %d attempts)", err, job.Attempt), MadeBy: q.opts.Replica, Attempts: job.Attempt}, nil)
		if serr != nil {
			return errors.Join(err, serr)
		}
		q.notify(o, Failed)
		return err
	}
	_, err = q.db.SaveReceipt(ctx, store.Receipt{OrderID: id, State: store.ReceiptReady, HTML: html,
		MadeBy: q.opts.Replica, Attempts: job.Attempt}, &msg)
	if errors.Is(err, store.ErrUnavailable) {
		return river.JobSnooze(q.opts.backoff(1))
	}
	if err != nil {
		return err
	}
	// Announced even when a receipt was already there (not saved by this
	// run): the run that saved it may have died before its announcement
	// (kill -9), and a second "receipt ready" only repeats the truth.
	q.notify(o, Ready)
	return nil
}

func (q *QueueJobs) notify(o store.Order, st string) {
	if q.opts.Notify != nil {
		q.opts.Notify(o, st)
	}
}
