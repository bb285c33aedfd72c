package web

// The outbox: a development mailbox of what the shop sent to staff (the
// scheduled low-stock report). Staff messages only: a customer's
// confirmation is shown to that customer alone, on the order page.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// outboxLimit is how many messages the outbox shows.
const outboxLimit = 200

// apiOutbox is /api/outbox's JSON.
type apiOutbox struct {
	Messages []apiMessage `json:"messages"`
}

type apiMessage struct {
	Kind    string `json:"kind"`
	Period  string `json:"period"`
	SentBy  string `json:"sent_by"`
	At      string `json:"at"`
	Subject string `json:"subject"`
}

// outboxKinds reads ?kind=: one staff kind, or every staff kind when absent.
func outboxKinds(r *http.Request) ([]string, error) {
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		return jobs.StaffKinds, nil
	}
	if !jobs.IsStaffKind(kind) {
		return nil, &Error{Status: http.StatusUnprocessableEntity, Field: "kind",
			Message: "want one of " + strings.Join(jobs.StaffKinds, ", ") + " (the outbox shows staff messages only)"}
	}
	return []string{kind}, nil
}

func (s *Server) outboxMessages(r *http.Request) ([]store.Message, error) {
	kinds, err := outboxKinds(r)
	if err != nil {
		return nil, err
	}
	ms, err := s.db.Messages(r.Context(), kinds, outboxLimit)
	if err != nil {
		return nil, err
	}
	// Belt and braces: whatever the query, never a customer's message.
	return slices.DeleteFunc(ms, func(m store.Message) bool { return !jobs.IsStaffKind(m.Kind) }), nil
}

// handleAPIOutbox answers the staff messages as JSON, newest first.
func (s *Server) handleAPIOutbox(w http.ResponseWriter, r *http.Request) error {
	ms, err := s.outboxMessages(r)
	if err != nil {
		return err
	}
	out := apiOutbox{Messages: []apiMessage{}}
	for _, m := range ms {
		out.Messages = append(out.Messages, apiMessage{Kind: m.Kind, Period: m.Period, SentBy: m.SentBy,
			At: m.At.UTC().Format(time.RFC3339Nano), Subject: m.Subject})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return nil
}

// handleOutbox shows the staff messages.
func (s *Server) handleOutbox(w http.ResponseWriter, r *http.Request) error {
	ms, err := s.outboxMessages(r)
	if err != nil {
		return err
	}
	v := templates.OutboxView{Schedule: s.cfg.Schedule, Every: s.cfg.ReportEvery.String()}
	if v.Schedule == jobs.Shared {
		v.ScheduleNote = "one report per period, whichever replica writes it first."
	} else {
		v.Schedule = jobs.Local
		v.ScheduleNote = "every replica sends its own, so N replicas send N per period."
	}
	for _, m := range ms {
		v.Messages = append(v.Messages, templates.OutboxMessage{Kind: m.Kind, Period: m.Period, SentBy: m.SentBy,
			At: m.At.UTC().Format(time.DateTime + " UTC"), Subject: m.Subject, Body: m.Body})
	}
	v.Page = s.page(r, "Outbox")
	s.render(w, r, http.StatusOK, templates.OutboxPage(v))
	return nil
}
