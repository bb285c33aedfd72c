package jobs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/store"
)

// TestScheduleOncePerPeriod runs three replicas' schedules on one database
// for a few one-second periods: shared sends exactly one report per period,
// local one per replica per period (the violation), each naming its period
// and sender.
func TestScheduleOncePerPeriod(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		for _, kind := range []string{jobs.Shared, jobs.Local} {
			t.Run(b.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				db := openDB(t, b.newDSN(t))
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				var scheds []*jobs.Schedule
				for _, name := range []string{"shop1", "shop2", "shop3"} {
					s := jobs.NewSchedule(kind, time.Second, name, db, nil)
					scheds = append(scheds, s)
					wg.Add(1)
					go func() { defer wg.Done(); s.Run(ctx) }()
				}
				time.Sleep(2500 * time.Millisecond)
				cancel()
				wg.Wait()

				ms, err := db.Messages(context.Background(), []string{jobs.KindLowStock}, 1000)
				if err != nil {
					t.Fatal(err)
				}
				perPeriod := map[string]map[string]int{} // period → sender → count
				for _, m := range ms {
					if m.Period == "" || m.SentBy == "" || m.Recipient != jobs.StaffAddress {
						t.Errorf("report %+v lacks its period, sender or staff address", m)
					}
					if perPeriod[m.Period] == nil {
						perPeriod[m.Period] = map[string]int{}
					}
					perPeriod[m.Period][m.SentBy]++
				}
				if len(perPeriod) < 2 {
					t.Fatalf("%d periods seen in 2.5 s of one-second periods, want at least 2: %v", len(perPeriod), perPeriod)
				}
				// The last period may have been cut short by cancel: judge
				// the ones every replica lived through.
				first := scheds[0].Period(time.Now().Add(-2500 * time.Millisecond))
				for period, senders := range perPeriod {
					total := 0
					for _, n := range senders {
						total += n
					}
					switch {
					case kind == jobs.Shared && total != 1:
						t.Errorf("shared: period %s has %d reports (%v), want exactly 1", period, total, senders)
					case kind == jobs.Local && period > first && period < scheds[0].Period(time.Now()) && (len(senders) != 3 || total != 3):
						t.Errorf("local: period %s has reports %v, want one from each of 3 replicas", period, senders)
					}
				}
				d := scheds[0].Describe(context.Background())
				if d.Kind != "schedule" || (kind == jobs.Local) != (d.Lives == "replica") {
					t.Errorf("describe = %+v", d)
				}
			})
		}
	}
}

// TestScheduleReportsLowStock: the report names the products under 5 units.
func TestScheduleReportsLowStock(t *testing.T) {
	t.Parallel()
	db := openDB(t, backends[0].newDSN(t))
	// Sell product 2 down to 3 units.
	p, err := db.Product(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PlaceOrder(context.Background(), store.NewOrder{IdempotencyKey: "sell-down-key-000", SessionID: "s", Replica: "shop1",
		Name: "A", Email: "a@example.com", Address: "1 Road", Lines: []store.NewOrderLine{{ProductID: 2, Quantity: p.Stock - 3}}}); err != nil {
		t.Fatal(err)
	}
	s := jobs.NewSchedule(jobs.Shared, time.Hour, "shop1", db, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	var ms []store.Message
	for len(ms) == 0 && time.Now().Before(deadline) {
		ms, _ = db.Messages(context.Background(), jobs.StaffKinds, 10)
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if len(ms) != 1 || !strings.Contains(ms[0].Body, p.Name+" ("+p.Slug+"): 3 left") || !strings.Contains(ms[0].Subject, "1 product") {
		t.Fatalf("report = %+v; want product %s with 3 left", ms, p.Slug)
	}
}
