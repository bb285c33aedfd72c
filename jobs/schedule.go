package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/statelab/shop/state"
	"github.com/statelab/shop/store"
)

// The -schedule kinds.
const (
	// Local: every replica runs its own timer, so N replicas send N
	// reports per period (the violation).
	Local = "local"
	// Shared: one report per period across every replica.
	Shared = "shared"
)

// CheckSchedule reports whether kind is a -schedule value.
func CheckSchedule(kind string) error {
	if kind != Local && kind != Shared {
		return fmt.Errorf("allowed values are %s and %s", Local, Shared)
	}
	return nil
}

// LowStockBelow is the stock under which a product is in the report.
const LowStockBelow = 5

// StaffAddress is where staff messages go.
const StaffAddress = "staff@statelab.example"

// ScheduleStore is what the schedule needs from the database.
type ScheduleStore interface {
	LowStock(ctx context.Context, below int) ([]store.Product, error)
	SendMessage(ctx context.Context, m store.Message) (bool, error)
}

// Schedule sends the low-stock report to staff once per period.
//
// Every replica runs the same timer, aligned to the period's boundaries
// (UTC, counted from the zero time, so replicas agree on them). What
// differs is the report's key in the outbox: shared keys it by the period
// alone, so the first replica to write it wins and the others' inserts find
// it there (a UNIQUE key: exact, with no leader to elect, lose or wait
// for); local keys it by period and replica, so each replica sends its own.
// A replica that starts mid-period sends the current period's report at
// once: under shared that is a no-op when another already sent it.
type Schedule struct {
	kind    string
	every   time.Duration
	replica string
	db      ScheduleStore
	log     *slog.Logger

	mu       sync.Mutex
	sent     int    // reports this replica sent
	lastSent string // the last period it sent
	lastErr  error
}

// NewSchedule returns the low-stock schedule of kind Local or Shared.
func NewSchedule(kind string, every time.Duration, replica string, db ScheduleStore, log *slog.Logger) *Schedule {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Schedule{kind: kind, every: every, replica: replica, db: db, log: log}
}

// Period names the period t falls in: its start, in UTC.
func (s *Schedule) Period(t time.Time) string {
	return t.UTC().Truncate(s.every).Format(time.RFC3339Nano)
}

// Run sends the report for the current period, then at every boundary,
// until ctx ends. A database that does not answer is retried every second
// until the period is over.
func (s *Schedule) Run(ctx context.Context) {
	for {
		now := time.Now()
		period := s.Period(now)
		end := now.UTC().Truncate(s.every).Add(s.every)
		for {
			err := s.send(ctx, period)
			if err == nil || ctx.Err() != nil {
				break
			}
			s.log.Warn("schedule: low-stock report not sent; retrying", "period", period, "err", err)
			if time.Until(end) < time.Second || !sleep(ctx, time.Second) {
				break
			}
		}
		// A little past the boundary, so that the clock reads the new period.
		if !sleep(ctx, time.Until(end)+20*time.Millisecond) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// send writes the report of period, unless its key is in the outbox.
func (s *Schedule) send(ctx context.Context, period string) error {
	low, err := s.db.LowStock(ctx, LowStockBelow)
	if err != nil {
		s.setErr(err)
		return err
	}
	var b strings.Builder
	if len(low) == 0 {
		fmt.Fprintf(&b, "No product is under %d units.\n", LowStockBelow)
	}
	for _, p := range low {
		fmt.Fprintf(&b, "%s (%s): %d left\n", p.Name, p.Slug, p.Stock)
	}
	key := KindLowStock + "/" + period
	if s.kind == Local {
		key += "/" + s.replica
	}
	sent, err := s.db.SendMessage(ctx, store.Message{
		Key: key, Kind: KindLowStock, Recipient: StaffAddress, Period: period,
		Subject: fmt.Sprintf("Low stock: %d product(s) under %d units", len(low), LowStockBelow),
		Body:    b.String(), SentBy: s.replica,
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if sent {
		s.sent++
		s.lastSent = period
		s.log.Info("schedule: low-stock report sent", "period", period, "schedule", s.kind)
	}
	return err
}

func (s *Schedule) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// Describe says where the schedule lives for the state audit.
func (s *Schedule) Describe(context.Context) state.Description {
	s.mu.Lock()
	sent, last := s.sent, s.lastSent
	s.mu.Unlock()
	d := state.Description{Kind: "schedule", HeldHere: 0, LostIfKilled: false}
	if last == "" {
		last = "none yet"
	}
	if s.kind == Local {
		d.Lives = state.Replica
		d.Note = fmt.Sprintf("-schedule local: this replica runs its own low-stock timer every %s, as does every other: N replicas send N reports per period. This one sent %d (last period: %s).", s.every, sent, last)
	} else {
		d.Lives = state.Database
		d.Note = fmt.Sprintf("-schedule shared: one low-stock report every %s across all replicas, keyed by its period in the database's outbox; whichever replica writes it first sends it. This one sent %d (last period: %s).", s.every, sent, last)
	}
	return d
}
