package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
	"github.com/statelab/shop/uploads"
)

// Error is an error with the status and message a person should see. Field,
// when set, names the form field at fault.
type Error struct {
	Status  int
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// fieldError is a 422 naming the field and why.
func fieldError(field, format string, args ...any) error {
	return &Error{Status: http.StatusUnprocessableEntity, Field: field, Message: fmt.Sprintf(format, args...)}
}

// notFound is a 404 with a message.
func notFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

// StatusClientClosedRequest is nginx's 499: the client closed the request
// before it was answered. It is counted and logged, never sent.
const StatusClientClosedRequest = 499

// errorStatus maps an error to what the person sees: the one table of
// error-to-status in the shop. Only 5xx are logged.
func errorStatus(err error) (status int, heading, message string) {
	var e *Error
	var maxBytes *http.MaxBytesError
	var tooLarge *session.TooLargeError
	var placed *orderPlacedError
	switch {
	case errors.As(err, &placed) && statusOf(placed.err) >= 500:
		// Not "nothing was changed": the order is in the database.
		return http.StatusServiceUnavailable, "Your order may already exist", "Your order may already have been placed: it was saved, " +
			"but the rest of this request failed (" + placed.cause() + "). Check your orders before ordering again; " +
			"submitting the same checkout form again will not order twice."
	case errors.Is(err, session.ErrMaybeApplied):
		return http.StatusServiceUnavailable, "Cart unavailable", "Your change may have been applied: the session store did not " +
			"confirm it and could not take it back. Look at your cart before trying again; sending the same form again will not apply it twice."
	case errors.As(err, &e):
		return e.Status, http.StatusText(e.Status), e.Error()
	case errors.As(err, &tooLarge):
		return http.StatusUnprocessableEntity, "Too big for a cookie", fmt.Sprintf(
			"This change would make your session %d bytes sealed in its cookie, over the limit of %d bytes a browser keeps for one cookie. Nothing was changed.",
			tooLarge.Size, tooLarge.Limit)
	case errors.As(err, &maxBytes):
		return http.StatusRequestEntityTooLarge, "Request too large", fmt.Sprintf("The request body is over the limit of %d bytes.", maxBytes.Limit)
	case errors.Is(err, uploads.ErrTooBig):
		return http.StatusRequestEntityTooLarge, "Photo too large", fmt.Sprintf("photo: is larger than %d bytes (5 MiB). Nothing was kept; the rest of the upload was not read.", uploads.MaxBytes)
	case errors.Is(err, uploads.ErrUnavailable):
		return http.StatusServiceUnavailable, "Photos unavailable", "The photo store is not answering, so a review with a photo cannot be posted right now. Nothing was saved. A review without a photo still works; try the photo again in a moment."
	case errors.Is(err, uploads.ErrBusy):
		return http.StatusServiceUnavailable, "Busy", "Too many photos are being uploaded to this replica right now. Nothing was saved; try again in a moment."
	case errors.Is(err, session.ErrLockTimeout):
		return http.StatusServiceUnavailable, "Session busy", lockBusyText
	case sessionTrouble(err) && (errors.Is(err, redisclient.ErrOutOfMemory) || errors.Is(err, redisclient.ErrAuth)):
		_, long := storeTrouble(err)
		return http.StatusServiceUnavailable, "Cart unavailable", long
	case errors.Is(err, live.ErrTooManyStreams):
		return http.StatusServiceUnavailable, "Too many live streams", "This replica holds as many live update streams as it may. Pages work without them; try again in a moment."
	case errors.Is(err, errHashersBusy):
		return http.StatusServiceUnavailable, "Busy", "Too many people are logging in right now. Try again in a moment; the catalog and your cart still work."
	case sessionTrouble(err):
		return http.StatusServiceUnavailable, "Cart unavailable", "The session store is not answering, so your cart cannot be read or changed right now. The catalog still works; try again in a moment."
	case errors.Is(err, redisclient.ErrUnavailable):
		// Redis as a shared service, not as the session store: whatever
		// call reached it, an outage is a 503 that names Redis, never a 500
		// and never the cart.
		return http.StatusServiceUnavailable, "Redis unavailable", redisTrouble(err)
	case errors.Is(err, store.ErrPasswordRefused), errors.Is(err, store.ErrLoginRefused):
		// A password rotation caught half-way: this replica still holds
		// the old password, and every new connection is refused until it
		// restarts with the new one.
		return http.StatusServiceUnavailable, "Database unavailable", "The shop's database refused this replica's " + loginWord(err) +
			" as it opened a new connection (a password being changed, most often), so this could not be done. Nothing was changed. Try again in a moment."
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "Database unavailable", "The shop's database is not answering right now, so this could not be done. Nothing was changed; browsing the catalog still works. Try again in a moment."
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "Not found", "There is nothing here."
	case errors.Is(err, store.ErrIdempotencyConflict):
		return http.StatusConflict, "Already used", "idempotency_key: this checkout form was already used by someone else. Reload the checkout page and try again."
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "Try again", "The shop took too long to answer. Try again in a moment."
	}
	return http.StatusInternalServerError, "Something went wrong", "The shop hit an unexpected error. It has been logged; try again."
}

// sessionTrouble reports whether err is the session store failing.
func sessionTrouble(err error) bool {
	return errors.Is(err, ErrSessionStore) || errors.Is(err, session.ErrUnavailable)
}

// redisTrouble says what a Redis failure outside the session store means
// for the person: the shared services, named, and what still works.
func redisTrouble(err error) string {
	why := "is not answering"
	switch {
	case errors.Is(err, redisclient.ErrOutOfMemory):
		why = "is out of memory and refuses writes"
	case errors.Is(err, redisclient.ErrAuth):
		why = "refused this replica's password"
	}
	return "Redis, which the replicas share for login limits, the cluster list and live metrics, " + why +
		", so this could not be done right now. The catalog still works; try again in a moment."
}

// loginWord names what the database refused: the password, or the login.
func loginWord(err error) string {
	if errors.Is(err, store.ErrPasswordRefused) {
		return "password"
	}
	return "login"
}

// statusOf is the status err alone would answer with.
func statusOf(err error) int {
	status, _, _ := errorStatus(err)
	return status
}

// cause says in a few words what failed after an order was placed.
func (e *orderPlacedError) cause() string {
	_, heading, _ := errorStatus(e.err)
	return strings.ToLower(heading)
}

// serveError answers with the status page for err: JSON under /api/, HTML
// elsewhere.
func (s *Server) serveError(w http.ResponseWriter, r *http.Request, err error) {
	status, heading, message := errorStatus(err)
	if status >= 500 && errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away (or its connection broke) while we worked:
		// net/http cancels the request's context then. Whatever failed after
		// that is the client's doing, not an outage; nginx's 499 says so in
		// the metrics and the log. (A deadline of our own is not this.)
		s.log.InfoContext(r.Context(), "client closed the request", "err", err)
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "status", status, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": message, "status": status})
		return
	}
	page := s.page(r, heading)
	if status == http.StatusServiceUnavailable && errors.Is(err, ErrSessionStore) {
		page.CartUnavailable = true
		_, page.StoreTrouble = storeTrouble(err)
	}
	v := templates.ErrorView{Page: page, Status: status, Heading: heading, Message: message}
	if placed := (*orderPlacedError)(nil); errors.As(err, &placed) && status == http.StatusServiceUnavailable {
		v.Links = placed.links()
	}
	s.render(w, r, status, templates.ErrorPage(v))
}

// handler is an http.Handler that returns its error for serveError to answer.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.serveError(w, r, err)
		}
	})
}

// logHandler adds the replica and the request id to every log line.
type logHandler struct{ slog.Handler }

// NewLogHandler wraps h so that every record carries the request id of the
// context it was logged with.
func NewLogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

func (h logHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := requestID(ctx); id != "" {
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
