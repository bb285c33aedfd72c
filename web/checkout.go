package web

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// Checkout field limits.
const (
	maxNameLen    = 100
	maxEmailLen   = 254
	maxAddressLen = 500
)

// handleCheckoutForm shows the checkout form with a fresh idempotency key.
func (s *Server) handleCheckoutForm(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	if info.Cart.Count() == 0 {
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
		return nil
	}
	return s.renderCheckout(w, r, http.StatusOK, info.Cart, templates.CheckoutForm{IdempotencyKey: randomToken(16)})
}

func (s *Server) renderCheckout(w http.ResponseWriter, r *http.Request, status int, cart Cart, form templates.CheckoutForm) error {
	cat, err := s.catalog.load(r.Context())
	if err != nil {
		return err
	}
	lines, count, total := cartLines(cat, cart)
	v := templates.CheckoutView{Lines: lines, Count: count, Total: formatPrice(total), Form: form}
	v.Page = s.page(r, "Checkout")
	s.render(w, r, status, templates.CheckoutPage(v))
	return nil
}

// checkoutForm is the checkout form as posted.
type checkoutForm struct {
	templates.CheckoutForm
}

func readCheckoutForm(r *http.Request) (checkoutForm, error) {
	values, err := parseForm(r)
	if err != nil {
		return checkoutForm{}, err
	}
	f := checkoutForm{templates.CheckoutForm{Errors: map[string]string{}}}
	field := func(name string, maxLen int) string {
		v, err := formValue(values, name, maxLen)
		if err != nil {
			var fe *Error
			errors.As(err, &fe)
			f.Errors[name] = fe.Message
			return truncate(values.Get(name), maxLen)
		}
		return v
	}
	f.Name = field("name", maxNameLen)
	f.Email = field("email", maxEmailLen)
	f.Address = field("address", maxAddressLen)
	f.IdempotencyKey = field("idempotency_key", 64)

	if _, bad := f.Errors["name"]; !bad && f.Name == "" {
		f.Errors["name"] = "is required"
	}
	if _, bad := f.Errors["email"]; !bad {
		if a, err := mail.ParseAddress(f.Email); err != nil || a.Address != f.Email || !strings.Contains(f.Email, ".") {
			f.Errors["email"] = "must be an address like ada@example.com"
		}
	}
	if _, bad := f.Errors["address"]; !bad && len(f.Address) < 5 {
		f.Errors["address"] = "is required (at least 5 characters)"
	}
	if _, bad := f.Errors["idempotency_key"]; !bad && !validKey(f.IdempotencyKey) {
		// A person never types this field: reload the form to get a fresh one.
		f.Errors["idempotency_key"] = "is missing or malformed; reload the checkout page"
	}
	return f, nil
}

// validKey accepts 16..64 characters of [A-Za-z0-9_-].
func validKey(k string) bool {
	if len(k) < 16 || len(k) > 64 {
		return false
	}
	return strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// handleCheckout places the order. The idempotency key makes a second submit
// of the same form (double click, browser retry, a retry after failover)
// return the first order: the database's UNIQUE key decides, across replicas.
func (s *Server) handleCheckout(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	f, err := readCheckoutForm(r)
	if err != nil {
		return err
	}
	if len(f.Errors) > 0 {
		if _, ok := f.Errors["idempotency_key"]; ok {
			f.IdempotencyKey = randomToken(16)
		}
		return s.renderCheckout(w, r, http.StatusUnprocessableEntity, info.Cart, f.CheckoutForm)
	}

	order := store.NewOrder{
		IdempotencyKey: f.IdempotencyKey,
		AccountID:      info.AccountID,
		Replica:        s.cfg.Replica,
		Name:           f.Name,
		Email:          f.Email,
		Address:        f.Address,
	}
	for _, it := range info.Cart.Items {
		order.Lines = append(order.Lines, store.NewOrderLine{ProductID: it.ProductID, Quantity: it.Quantity})
	}
	if len(order.Lines) == 0 {
		// An empty cart may be the second submit of a form that already
		// placed its order: find that order before calling it an error.
		if o, err := s.db.OrderByKey(r.Context(), f.IdempotencyKey); err == nil && ownsOrder(info, o) {
			http.Redirect(w, r, "/orders/"+o.ID, http.StatusSeeOther)
			return nil
		} else if err == nil {
			return store.ErrIdempotencyConflict
		}
		f.Errors["form"] = "Your cart is empty."
		return s.renderCheckout(w, r, http.StatusUnprocessableEntity, info.Cart, f.CheckoutForm)
	}

	// Only an order to place writes the session (its identity owns an
	// anonymous order): an empty cart's checkout creates nothing.
	order.SessionID = s.touchSession(r.Context())
	// The receipt job is queued in the order's own transaction (with
	// -jobs queue), so no order is left without one.
	order.Enqueue = s.receipts.EnqueueTx
	placed, created, err := s.db.PlaceOrder(r.Context(), order)
	var oos *store.OutOfStockError
	switch {
	case errors.As(err, &oos):
		f.Errors["form"] = "Sorry: only " + itoa(oos.Available) + " of " + oos.Name + " left in stock. Change the quantity in your cart."
		return s.renderCheckout(w, r, http.StatusUnprocessableEntity, info.Cart, f.CheckoutForm)
	case err != nil:
		return err
	}
	// The order exists from here on, whatever becomes of this request: a
	// failure to save the emptied cart must not hide it.
	placedErr := func(_ context.Context, err error) error {
		return &orderPlacedError{orderID: placed.ID, account: info.AccountID != 0, err: err}
	}
	onFailedSave(r.Context(), placedErr)
	// A replay (created false) by the owner finds the order's lines still in
	// the cart when this cart never saw the order: the save after it failed
	// (a 503 the shopper retries), the browser resent an older cookie, or a
	// parallel submit without the session lock. They come out now, or the
	// next checkout orders them again. A cart that already holds this
	// checkout's key was emptied by it and is left alone.
	if created || !info.Cart.HasApplied(f.IdempotencyKey) {
		if created {
			s.receipts.Placed(placed)
			s.publishOrderPlaced(r.Context(), order.SessionID, order.AccountID, placed.ID, placed.StockLeft)
			info.Cart.Clear()
		} else {
			s.republishStock(r.Context(), placed)
			info.Cart.Subtract(orderItems(placed))
		}
		info.Cart.MarkApplied(f.IdempotencyKey)
		if err := s.saveCart(r.Context(), info.AccountID, info.Cart); err != nil {
			return placedErr(r.Context(), err)
		}
		s.setFlash(w, r, "ordered")
	}
	http.Redirect(w, r, "/orders/"+placed.ID, http.StatusSeeOther)
	return nil
}

// orderItems are an order's lines as cart lines.
func orderItems(o store.Order) []CartItem {
	items := make([]CartItem, 0, len(o.Lines))
	for _, l := range o.Lines {
		items = append(items, CartItem{ProductID: l.ProductID, Quantity: l.Quantity})
	}
	return items
}

// orderPlacedError is a failure after an order was committed: the request
// answers 503, and the page says the order may exist and where to see it,
// so the shopper checks before ordering again.
type orderPlacedError struct {
	orderID string
	account bool // the order belongs to an account: /account lists it
	err     error
}

func (e *orderPlacedError) Error() string {
	return "order " + e.orderID + " was placed, then: " + e.err.Error()
}

func (e *orderPlacedError) Unwrap() error { return e.err }

// links are where the shopper sees the order.
func (e *orderPlacedError) links() []templates.ErrorLink {
	links := []templates.ErrorLink{{Text: "See order " + e.orderID, URL: "/orders/" + e.orderID}}
	if e.account {
		links = append(links, templates.ErrorLink{Text: "Your orders", URL: "/account"})
	}
	return links
}

// ownsOrder reports whether this session may see the order: the account that
// placed it, or the anonymous session that placed it (by its stable id, which
// survives token renewal).
func ownsOrder(info sessionInfo, o store.Order) bool {
	if o.AccountID != 0 {
		return info.AccountID == o.AccountID
	}
	return info.SID != "" && o.SessionID == info.SID
}

// handleOrder shows an order to its owner; to anyone else it does not exist.
// It shows the receipt's state too, and reloads while the receipt is pending.
func (s *Server) handleOrder(w http.ResponseWriter, r *http.Request) error {
	o, err := s.ownOrder(r)
	if err != nil {
		return err
	}
	st, err := s.receipt(r.Context(), o)
	if err != nil {
		return err
	}
	v := templates.OrderView{
		ID:       o.ID,
		Name:     o.Name,
		Email:    o.Email,
		Address:  o.Address,
		Total:    formatPrice(o.TotalCents),
		Replica:  o.Replica,
		PlacedAt: o.CreatedAt.UTC().Format(time.DateTime + " UTC"),
		Receipt:  s.receiptInfo(o, st),
	}
	for _, l := range o.Lines {
		v.Lines = append(v.Lines, cartLine(l.ProductID, l.Slug, l.Name, l.Quantity, l.PriceCents))
	}
	v.Page = s.page(r, "Order "+o.ID)
	if st.Reload {
		v.Page.Refresh = "2"
	}
	s.clearFlash(w, r)
	s.render(w, r, http.StatusOK, templates.OrderPage(v))
	return nil
}
