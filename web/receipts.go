package web

// Receipts: each order's receipt is made by a background job (package
// jobs); this file is what the order page and GET /orders/{id}/receipt show
// of it, and the receipt page the job renders.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// Receipts is what the web layer needs from the jobs that make each
// order's receipt: jobs.MemoryJobs or jobs.QueueJobs.
type Receipts interface {
	// EnqueueTx runs inside the order's transaction (store.NewOrder.Enqueue).
	EnqueueTx(ctx context.Context, tx *sql.Tx, o store.Order) error
	// Placed hears of an order once it is committed.
	Placed(o store.Order)
	// Receipt says where o's receipt is, as this replica can tell.
	Receipt(ctx context.Context, o store.Order) (jobs.Status, error)
}

// RenderReceipt renders o's receipt page, made by the replica madeBy, for
// the jobs that store it.
func RenderReceipt(o store.Order, madeBy string) (string, error) {
	v := templates.ReceiptDocView{
		ID: o.ID, MadeBy: madeBy, Name: o.Name, Address: o.Address, Total: formatPrice(o.TotalCents),
		Replica: o.Replica, PlacedAt: o.CreatedAt.UTC().Format(time.DateTime + " UTC"),
	}
	for _, l := range o.Lines {
		v.Lines = append(v.Lines, cartLine(l.ProductID, l.Slug, l.Name, l.Quantity, l.PriceCents))
	}
	var b bytes.Buffer
	if err := templates.ReceiptDocument(v).Render(context.Background(), &b); err != nil {
		return "", fmt.Errorf("web: render receipt %s: %w", o.ID, err)
	}
	return b.String(), nil
}

// DefaultReceiptPatience is Config.ReceiptPatience's default: well past
// the longest -job-delay (10 s) and a retry or two.
const DefaultReceiptPatience = 30 * time.Second

// receiptAnswer is an order's receipt as this replica can tell.
type receiptAnswer struct {
	jobs.Status
	// Reload says whether a page showing it should ask again by itself:
	// while it is pending, except once a receipt held in another
	// replica's memory has been pending past Config.ReceiptPatience.
	// Only that replica can tell when it is ready, and a browser kept on
	// this one (sticky routing, or that replica gone) would reload for
	// ever.
	Reload bool
	// Elsewhere is what this replica knows of the replica whose memory
	// holds a pending receipt, in a sentence, or "".
	Elsewhere string
}

// receipt asks the receipt jobs where o's receipt is. A receipt pending in
// another replica's memory is lost for certain once that replica has
// started again since the order was placed: the replicas' announcements
// (a shared presence) say when each started.
func (s *Server) receipt(ctx context.Context, o store.Order) (receiptAnswer, error) {
	st, err := s.receipts.Receipt(ctx, o)
	if err != nil {
		return receiptAnswer{}, err
	}
	a := receiptAnswer{Status: st, Reload: st.State == jobs.Pending}
	if st.State != jobs.Pending || st.HeldBy == "" || st.HeldBy == s.cfg.Replica {
		return a, nil
	}
	if m, ok := s.member(ctx, st.HeldBy); ok {
		switch {
		// StartedAt is truncated to the second, and taken before the
		// replica served anything: later than the order means a new
		// process, which never held this job.
		case !m.Gone && m.StartedAt.After(o.CreatedAt):
			return receiptAnswer{Status: jobs.Status{State: jobs.Lost, HeldBy: st.HeldBy, Reason: fmt.Sprintf(
				"the job ran in the memory of %s, which has started again since the order was placed (at %s): the job and its result died with the old process",
				st.HeldBy, m.StartedAt.UTC().Format(time.TimeOnly+" UTC"))}}, nil
		case m.Gone:
			a.Elsewhere = fmt.Sprintf("%s has not announced itself for %s: if it died, the receipt died with it.", st.HeldBy, m.GoneFor.Round(time.Second))
		}
	}
	if time.Since(o.CreatedAt) > s.cfg.ReceiptPatience {
		a.Reload = false
	}
	return a, nil
}

// member is the named replica as the shared presence lists it; false
// without a shared presence, or when it does not answer: the
// announcements are a hint, and a receipt stays pending without them.
func (s *Server) member(ctx context.Context, name string) (redisclient.Member, bool) {
	if !s.presence.Shared() {
		return redisclient.Member{}, false
	}
	members, err := s.presence.Members(ctx)
	if err != nil {
		s.log.DebugContext(ctx, "presence: members", "err", err)
		return redisclient.Member{}, false
	}
	for _, m := range members {
		if m.Name == name {
			return m, true
		}
	}
	return redisclient.Member{}, false
}

// receiptInfo turns a receipt's answer into what the order page says.
func (s *Server) receiptInfo(o store.Order, st receiptAnswer) templates.ReceiptInfo {
	info := templates.ReceiptInfo{State: st.State, Reason: st.Reason, URL: "/orders/" + o.ID + "/receipt", Reloads: st.Reload}
	switch {
	case st.State == jobs.Ready:
		info.Note = "Made by " + st.MadeBy + " at " + st.MadeAt.UTC().Format(time.DateTime) + " UTC."
	case st.State == jobs.Failed:
		info.Note = "The last attempt ran on " + st.MadeBy + "."
	case st.State == jobs.Pending && st.HeldBy != "" && !st.Reload:
		info.Note = fmt.Sprintf("It is being made, or was made, in the memory of %[1]s (-jobs memory), where this replica, %[2]s, cannot look; "+
			"only %[1]s can show it, and it will be lost if %[1]s dies. %[3]s This page has stopped reloading: reload it to ask again.",
			st.HeldBy, s.cfg.Replica, st.Elsewhere)
	case st.State == jobs.Pending && st.HeldBy != "":
		info.Note = "The job and its result are held in the memory of " + st.HeldBy + " (-jobs memory): only that replica can say when it is ready."
	case st.State == jobs.Pending:
		info.Note = "The job is queued in the database: any replica may make it."
	}
	if c := st.Confirmation; c != nil {
		info.Confirmation = &templates.Confirmation{To: c.Recipient, Subject: c.Subject, Body: c.Body,
			SentBy: c.SentBy, At: c.At.UTC().Format(time.DateTime + " UTC")}
	}
	return info
}

// ownOrder returns the order at r's {id} if this session owns it; anyone
// else gets the 404 a missing order gets.
func (s *Server) ownOrder(r *http.Request) (store.Order, error) {
	info, err := s.session(r.Context())
	if err != nil {
		return store.Order{}, err
	}
	id := r.PathValue("id")
	if len(id) > 64 {
		return store.Order{}, notFound("There is no such order.")
	}
	o, err := s.db.Order(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !ownsOrder(info, o)) {
		return store.Order{}, notFound("There is no such order.")
	}
	return o, err
}

// handleOrderReceipt answers with the receipt once it is made (200), 202
// with Retry-After while it is pending, and 410 once it will never come
// (failed after its last attempt, or lost with a replica's memory).
// X-Receipt-State says which, for scripts.
func (s *Server) handleOrderReceipt(w http.ResponseWriter, r *http.Request) error {
	o, err := s.ownOrder(r)
	if err != nil {
		return err
	}
	st, err := s.receipt(r.Context(), o)
	if err != nil {
		return err
	}
	w.Header().Set("X-Receipt-State", st.State)
	if st.HeldBy != "" {
		w.Header().Set("X-Receipt-Held-By", st.HeldBy)
	}
	if st.State == jobs.Ready {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(st.HTML)))
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(st.HTML))
		return nil
	}
	status := http.StatusGone
	v := templates.ReceiptStatusView{OrderID: o.ID, Receipt: s.receiptInfo(o, st)}
	v.Page = s.page(r, "Receipt "+o.ID)
	if st.State == jobs.Pending {
		// Pending as far as this replica can tell; without Retry-After
		// once asking this replica again cannot tell more.
		status = http.StatusAccepted
		if st.Reload {
			w.Header().Set("Retry-After", "1")
			v.Page.Refresh = "2"
		}
	}
	s.render(w, r, status, templates.ReceiptStatusPage(v))
	return nil
}
