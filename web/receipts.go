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

// receiptInfo turns a job's status into what the order page says.
func receiptInfo(o store.Order, st jobs.Status) templates.ReceiptInfo {
	info := templates.ReceiptInfo{State: st.State, Reason: st.Reason, URL: "/orders/" + o.ID + "/receipt"}
	switch {
	case st.State == jobs.Ready:
		info.Note = "Made by " + st.MadeBy + " at " + st.MadeAt.UTC().Format(time.DateTime) + " UTC."
	case st.State == jobs.Failed:
		info.Note = "The last attempt ran on " + st.MadeBy + "."
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
	st, err := s.receipts.Receipt(r.Context(), o)
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
	v := templates.ReceiptStatusView{OrderID: o.ID, Receipt: receiptInfo(o, st)}
	v.Page = s.page(r, "Receipt "+o.ID)
	if st.State == jobs.Pending {
		status = http.StatusAccepted
		w.Header().Set("Retry-After", "1")
		v.Page.Refresh = "2"
	}
	s.render(w, r, status, templates.ReceiptStatusPage(v))
	return nil
}
