package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/statelab/shop/state"
	"github.com/statelab/shop/store"
)

// maxMemoryResults bounds the results a Memory keeps; past it the oldest
// are forgotten (and read as lost), as any replica's RAM would force.
const maxMemoryResults = 10000

// MemoryJobs makes receipts in goroutines and keeps them in this process:
// the violation. Another replica cannot see a result here, and a kill -9
// loses every queued and running job and every result.
type MemoryJobs struct {
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	receipts map[string]*Status // by order id
	order    []string           // insertion order, for the bound
	inFlight int                // queued or running
}

// NewMemory returns receipt jobs that live in this process.
func NewMemory(opts Options) *MemoryJobs {
	ctx, cancel := context.WithCancel(context.Background())
	return &MemoryJobs{opts: opts.withDefaults(), ctx: ctx, cancel: cancel, receipts: make(map[string]*Status)}
}

// Kind is Memory.
func (m *MemoryJobs) Kind() string { return Memory }

// EnqueueTx does nothing: memory jobs start once the order is committed.
func (m *MemoryJobs) EnqueueTx(context.Context, *sql.Tx, store.Order) error { return nil }

// Placed starts o's receipt job in a goroutine of this process.
func (m *MemoryJobs) Placed(o store.Order) {
	m.mu.Lock()
	if _, ok := m.receipts[o.ID]; ok {
		m.mu.Unlock()
		return
	}
	m.receipts[o.ID] = &Status{State: Pending, HeldBy: m.opts.Replica}
	m.order = append(m.order, o.ID)
	if len(m.order) > maxMemoryResults {
		delete(m.receipts, m.order[0])
		m.order = m.order[1:]
	}
	m.inFlight++
	m.mu.Unlock()
	m.wg.Add(1)
	go m.run(o)
}

func (m *MemoryJobs) run(o store.Order) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		m.inFlight--
		m.mu.Unlock()
	}()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(m.ctx, m.opts.jobTimeout())
		html, msg, err := makeReceipt(ctx, o, m.opts, time.Now())
		cancel()
		if m.ctx.Err() != nil {
			return // closing: the job dies with the process, as it would
		}
		if err == nil {
			msg.At = time.Now().UTC()
			m.set(o.ID, &Status{State: Ready, HeldBy: m.opts.Replica, HTML: html, MadeBy: m.opts.Replica,
				MadeAt: msg.At, Attempts: attempt, Confirmation: &msg})
			m.notify(o, Ready)
			return
		}
		m.opts.Logger.Warn("receipt job failed", "order", o.ID, "attempt", attempt, "err", err)
		if attempt >= m.opts.MaxAttempts {
			m.set(o.ID, &Status{State: Failed, HeldBy: m.opts.Replica, MadeBy: m.opts.Replica, MadeAt: time.Now().UTC(),
				Attempts: attempt, Reason: fmt.Sprintf("%v (after %d attempts)", err, attempt)})
			m.notify(o, Failed)
			return
		}
		t := time.NewTimer(m.opts.backoff(attempt))
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (m *MemoryJobs) set(id string, s *Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.receipts[id]; ok {
		m.receipts[id] = s
	}
}

func (m *MemoryJobs) notify(o store.Order, st string) {
	if m.opts.Notify != nil {
		m.opts.Notify(o, st)
	}
}

// Receipt says where o's receipt is. A replica that did not take the order
// cannot know: it answers pending and names the replica whose memory holds
// the job. The replica that took it and holds nothing was restarted since:
// the job died with the process.
func (m *MemoryJobs) Receipt(_ context.Context, o store.Order) (Status, error) {
	m.mu.Lock()
	s, ok := m.receipts[o.ID]
	m.mu.Unlock()
	switch {
	case ok:
		return *s, nil
	case o.Replica != m.opts.Replica:
		return Status{State: Pending, HeldBy: o.Replica}, nil
	}
	return Status{State: Lost, HeldBy: o.Replica, Reason: fmt.Sprintf(
		"the job ran in the memory of %s, which has restarted since the order was placed: the job and its result died with the old process",
		o.Replica)}, nil
}

// Describe counts this replica's receipts in memory for the state audit:
// jobs queued or running and the results of finished ones, all lost to a
// kill -9.
func (m *MemoryJobs) Describe(context.Context) state.Description {
	m.mu.Lock()
	inFlight, results := m.inFlight, len(m.receipts)-m.inFlight
	m.mu.Unlock()
	return state.Description{
		Kind:         "jobs",
		Lives:        state.Replica,
		HeldHere:     inFlight + results,
		LostIfKilled: inFlight+results > 0,
		Note: fmt.Sprintf("-jobs memory: receipt jobs are goroutines of this process (%d queued or running) and their results sit in its memory (%d); other replicas cannot see them, and a kill -9 loses them all.",
			inFlight, results),
	}
}

// Close stops the running jobs and waits for them: what they held is lost,
// as with any end of the process.
func (m *MemoryJobs) Close() error {
	m.cancel()
	m.wg.Wait()
	return nil
}
