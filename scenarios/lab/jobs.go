package lab

// Background work as the judge sees it: the receipts of the orders the
// shoppers placed (GET /orders/{id}/receipt, each through its owner's
// browser) and the low-stock reports in the outbox (GET /api/outbox).

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The lab's settings for background work in a cluster it starts.
const (
	// LabJobDelay is SHOP_JOB_DELAY: a receipt job takes this long, so a
	// kill right after a checkout lands mid-job.
	LabJobDelay = 2 * time.Second
	// LabReportEvery is SHOP_REPORT_EVERY: a run of a few seconds sees
	// several periods.
	LabReportEvery = 2 * time.Second
	// receiptWait bounds how long the judge waits for receipts: past the
	// 30 s in which a queued job whose replica died is finished elsewhere.
	receiptWait = 40 * time.Second
)

// receiptsLook is what the judge found of the shoppers' receipts.
type receiptsLook struct {
	orders int
	ready  int
	// never: answered 410 (failed, or lost with a replica's memory);
	// pending: still 202 (or unreadable) when the wait ended.
	never, pending []string
	waited         time.Duration
}

func (l receiptsLook) String() string {
	if l.orders == 0 {
		return "no order was placed"
	}
	s := fmt.Sprintf("%d of %d receipts ready", l.ready, l.orders)
	if len(l.never) > 0 {
		s += "; never coming: " + firstFew(l.never)
	}
	if len(l.pending) > 0 {
		s += "; still pending: " + firstFew(l.pending)
	}
	return s + fmt.Sprintf(" (judged over %.1f s)", l.waited.Seconds())
}

// lookReceipts reads every order's receipt through its owner's browser
// until each is ready (200) or will never come (410), or receiptWait
// passes. Under round robin successive reads meet different replicas: a
// receipt any replica shows is ready.
func (r *runner) lookReceipts(ctx context.Context) receiptsLook {
	type order struct {
		s     *shopper
		id    string
		state string // "", ready, or the 410's X-Receipt-State
		last  string // what the last read answered
	}
	var orders []*order
	for _, name := range r.order {
		s := r.shoppers[name]
		s.mu.Lock()
		for _, id := range s.orders {
			orders = append(orders, &order{s: s, id: id})
		}
		s.mu.Unlock()
	}
	start := time.Now()
	for {
		open := 0
		for _, o := range orders {
			if o.state != "" {
				continue
			}
			o.last = o.s.readReceipt(ctx, o.id)
			switch {
			case o.last == "200":
				o.state = "ready"
			case strings.HasPrefix(o.last, "410"):
				o.state = o.last
			case o.last == "404":
				// The shop shows an order to the session that placed it
				// (or its account): a 404 to its owner's browser means
				// that session is gone, and with it the way to the
				// receipt. Waiting cannot bring it back.
				o.state, o.last = "lost", "404: its session was lost"
			default:
				open++
			}
		}
		if open == 0 || time.Since(start) > receiptWait || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	l := receiptsLook{orders: len(orders), waited: time.Since(start)}
	for _, o := range orders {
		what := fmt.Sprintf("%s's order %s (%s)", o.s.name, o.id, o.last)
		switch {
		case o.state == "ready":
			l.ready++
		case o.state != "":
			l.never = append(l.never, what)
		default:
			l.pending = append(l.pending, what)
		}
	}
	if len(orders) > 0 {
		r.rec.say(r.rec.since(), "receipts: "+l.String())
	}
	return l
}

// readReceipt asks for one receipt, unrecorded (the judge's read, not the
// shopper's traffic): "200", "202 pending", "410 lost", or what failed.
func (s *shopper) readReceipt(ctx context.Context, id string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/orders/"+id+"/receipt", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "no answer"
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "200"
	}
	st := strings.TrimSpace(fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-Receipt-State")))
	if by := resp.Header.Get("X-Receipt-Held-By"); by != "" {
		st += " in " + by + "'s memory"
	}
	return st
}

// firstFew lists at most five items and counts the rest: a chaos run
// places hundreds of orders.
func firstFew(items []string) string {
	if len(items) <= 5 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:5], ", "), len(items)-5)
}

// reportsLook is the low-stock reports in the outbox, by period.
type reportsLook struct {
	periods map[string][]string // period → senders
	err     error
}

func (l reportsLook) String() string {
	if l.err != nil {
		return "outbox unreadable: " + l.err.Error()
	}
	if len(l.periods) == 0 {
		return "no low-stock report in the outbox"
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(l.periods)) {
		parts = append(parts, fmt.Sprintf("%s: %d (%s)", p, len(l.periods[p]), strings.Join(l.periods[p], ", ")))
	}
	if len(parts) > 5 {
		parts = append(parts[:5], fmt.Sprintf("and %d more periods", len(parts)-5))
	}
	return fmt.Sprintf("%d periods, %d with more than one report; reports per period %s", len(l.periods), l.duplicated(), strings.Join(parts, "; "))
}

// duplicated counts the periods with more than one report.
func (l reportsLook) duplicated() int {
	n := 0
	for _, senders := range l.periods {
		if len(senders) > 1 {
			n++
		}
	}
	return n
}

// lookReports reads GET /api/outbox?kind=low-stock once.
func (r *runner) lookReports(ctx context.Context) reportsLook {
	l := reportsLook{periods: map[string][]string{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/api/outbox?kind=low-stock", nil)
	if err != nil {
		return reportsLook{err: err}
	}
	resp, err := (&http.Client{Transport: r.tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return reportsLook{err: err}
	}
	defer resp.Body.Close()
	var out struct {
		Messages []struct {
			Period string `json:"period"`
			SentBy string `json:"sent_by"`
		} `json:"messages"`
	}
	if resp.StatusCode != http.StatusOK {
		return reportsLook{err: fmt.Errorf("GET /api/outbox: %s", resp.Status)}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return reportsLook{err: fmt.Errorf("GET /api/outbox: %w", err)}
	}
	for _, m := range out.Messages {
		l.periods[m.Period] = append(l.periods[m.Period], m.SentBy)
	}
	r.rec.say(r.rec.since(), "outbox: "+l.String())
	return l
}
