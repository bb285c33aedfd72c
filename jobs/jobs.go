// Package jobs runs the work that outlives a request: each order's receipt,
// made by a background job, and the low-stock report sent on a schedule
// (issue 20). Each comes in the stateful form that teaches the lesson and
// the stateless form that fixes it, side by side behind the interface their
// consumer (web, main) declares:
//
//   - Memory runs a receipt job as a goroutine and keeps its result in this
//     replica's memory: another replica cannot see it, and a kill -9 loses
//     it for ever. Queue keeps jobs and results in the shop's database with
//     River (github.com/riverqueue/river): a job whose replica died mid-run
//     is rescued and finished by another, and a retry sends nothing twice.
//   - A local Schedule runs a timer in every replica, so N replicas send N
//     reports per period; a shared one sends exactly one per period, however
//     many replicas race for it, by a unique key per period in the outbox.
//
// Each describes itself for the state audit (/state).
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/statelab/shop/store"
)

// The -jobs kinds.
const (
	// Memory: jobs are goroutines, results sit in this replica's memory.
	Memory = "memory"
	// Queue: jobs and results are durable in the database (River).
	Queue = "queue"
)

// CheckKind reports whether kind is a -jobs value, naming the allowed ones.
func CheckKind(kind string) error {
	if kind != Memory && kind != Queue {
		return fmt.Errorf("allowed values are %s and %s", Memory, Queue)
	}
	return nil
}

// Receipt states as Status.State says them.
const (
	// Pending: the job is queued or running (or, seen from another replica
	// in memory mode, held where this replica cannot look).
	Pending = "pending"
	// Ready: the receipt was made.
	Ready = "ready"
	// Failed: the job's last attempt failed; Status.Reason says why.
	Failed = "failed"
	// Lost: the job lived in the memory of a process that is gone.
	Lost = "lost"
)

// Outbox message kinds.
const (
	// KindConfirmation is a customer's order confirmation: it is shown to
	// that customer only, on the order page, never in the outbox.
	KindConfirmation = "confirmation"
	// KindLowStock is the scheduled report to staff.
	KindLowStock = "low-stock"
)

// StaffKinds are the message kinds the outbox shows: staff messages only,
// never customer data.
var StaffKinds = []string{KindLowStock}

// IsStaffKind reports whether kind is one of StaffKinds.
func IsStaffKind(kind string) bool {
	for _, k := range StaffKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Status is where an order's receipt is, as one replica can tell.
type Status struct {
	State string // Pending, Ready, Failed or Lost
	// HeldBy names the replica whose memory holds the job or its result
	// (memory mode); "" when the database holds it.
	HeldBy string
	// Reason says why the receipt failed or was lost.
	Reason   string
	HTML     string // Ready: the receipt page
	MadeBy   string // Ready or Failed: the replica whose job decided it
	MadeAt   time.Time
	Attempts int
	// Confirmation is the customer's confirmation message, once sent.
	Confirmation *store.Message
}

// Render turns an order into its receipt page, made by the named replica.
// main hands over web's.
type Render func(o store.Order, madeBy string) (string, error)

// Options are what both kinds of receipt jobs need.
type Options struct {
	// Replica is this replica's name: it is recorded with what its jobs make.
	Replica string
	// Delay is -job-delay: every job takes at least this long, so that a
	// kill can land mid-job (teaching).
	Delay time.Duration
	// Render makes the receipt page.
	Render Render
	// Logger receives failures; nil discards.
	Logger *slog.Logger
	// MaxAttempts is how many times a failing receipt job runs before its
	// receipt is marked failed; 0 means 5.
	MaxAttempts int
	// RetryBase is the wait before the first retry, doubled for each later
	// one (at most a minute); 0 means 1 s.
	RetryBase time.Duration
	// RescueAfter (queue only) is how long a job may be running before it
	// is taken for dead and handed to another replica; 0 means Delay + 7 s.
	// The job's own timeout is 2 s less, so a live job is never rescued.
	RescueAfter time.Duration
	// Notify, when set, hears a receipt become Ready or Failed (main
	// publishes it as the order's live event to its owner). It must not
	// block for long.
	Notify func(o store.Order, state string)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = o.Delay + 7*time.Second
	}
	if o.Render == nil {
		o.Render = func(store.Order, string) (string, error) { return "", errors.New("no receipt renderer configured") }
	}
	return o
}

// jobTimeout is how long one attempt may run: a job that outlives it is
// cancelled, so that RescueAfter only ever finds dead jobs.
func (o Options) jobTimeout() time.Duration {
	return max(o.RescueAfter-2*time.Second, o.RescueAfter/2)
}

// backoff is the wait after a failed attempt (1-based).
func (o Options) backoff(attempt int) time.Duration {
	d := o.RetryBase
	for i := 1; i < attempt && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// makeReceipt does a receipt job's work for o: at least Delay from start,
// then the receipt page and the confirmation message.
func makeReceipt(ctx context.Context, o store.Order, opts Options, start time.Time) (string, store.Message, error) {
	if wait := opts.Delay - time.Since(start); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", store.Message{}, ctx.Err()
		case <-t.C:
		}
	}
	html, err := opts.Render(o, opts.Replica)
	if err != nil {
		return "", store.Message{}, fmt.Errorf("render the receipt: %w", err)
	}
	return html, confirmation(o, opts.Replica), nil
}

// confirmation is the customer's message for o: keyed by the order, so a
// job that runs twice sends it once.
func confirmation(o store.Order, replica string) store.Message {
	items := 0
	for _, l := range o.Lines {
		items += l.Quantity
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Thank you, %s. Your order %s of %d item(s), %s in all, is confirmed and will go to:\n%s\n",
		o.Name, o.ID, items, formatCents(o.TotalCents), o.Address)
	return store.Message{
		Key:       KindConfirmation + "/" + o.ID,
		Kind:      KindConfirmation,
		Recipient: o.Email,
		OrderID:   o.ID,
		Subject:   "Your Statelab order " + o.ID,
		Body:      b.String(),
		SentBy:    replica,
	}
}

func formatCents(c int64) string {
	return fmt.Sprintf("$%d.%02d", c/100, c%100)
}
