package web

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// handleCart shows the cart.
func (s *Server) handleCart(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	return s.renderCart(w, r, http.StatusOK, info.Cart, "")
}

func (s *Server) renderCart(w http.ResponseWriter, r *http.Request, status int, cart Cart, errMsg string) error {
	cat, err := s.catalog.load(r.Context())
	if err != nil {
		return err
	}
	lines, count, total := cartLines(cat, cart)
	v := templates.CartView{Lines: lines, Count: count, Total: formatPrice(total), Error: errMsg}
	v.Page = s.page(r, "Your cart")
	s.clearFlash(w, r)
	s.render(w, r, status, templates.CartPage(v))
	return nil
}

// handleCartAdd adds product_id × quantity (1..99) to the cart. With an
// idempotency_key (the shop's forms carry one) the same form sent again, a
// retry after a 503 most of all, adds once: the cart remembers the keys of
// its last writes. A request without a key adds as it always did.
func (s *Server) handleCartAdd(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	form, err := parseForm(r)
	if err != nil {
		return err
	}
	key, err := optionalKey(form)
	if err != nil {
		return err
	}
	if info.Cart.HasApplied(key) {
		// This very add is in the cart already: answer as it was answered.
		s.setFlash(w, r, "added")
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
		return nil
	}
	id, err := formInt(form, "product_id", 1, math.MaxInt32)
	if err != nil {
		return err
	}
	p, err := s.product(r, id)
	if err != nil {
		return err
	}
	qty, err := formInt(form, "quantity", 1, MaxLineQuantity)
	if err == nil {
		err = s.checkStock(r, id, info.Cart.Quantity(id)+int(qty))
	}
	if err == nil {
		if addErr := info.Cart.Add(id, int(qty)); addErr != nil {
			err = fieldError("quantity", "%s; your cart already holds %d of %s", addErr.Error(), info.Cart.Quantity(id), p.Name)
		} else {
			info.Cart.MarkApplied(key)
		}
	}
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) && fe.Field == "quantity" {
			return s.renderProductError(w, r, id, form.Get("quantity"), fe)
		}
		return err
	}
	if err := s.saveCart(r.Context(), info.AccountID, info.Cart); err != nil {
		return err
	}
	s.setFlash(w, r, "added")
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
	return nil
}

// optionalKey reads the form's idempotency_key: "" without one, a 422
// naming the field when it is there but not a key.
func optionalKey(form url.Values) (string, error) {
	if _, ok := form["idempotency_key"]; !ok {
		return "", nil
	}
	key, err := formValue(form, "idempotency_key", 64)
	if err != nil || key == "" {
		return "", err
	}
	if !validKey(key) {
		return "", fieldError("idempotency_key", "must be 16 to 64 letters, digits, '-' or '_'; reload the page")
	}
	return key, nil
}

// handleCartSet sets a line's quantity (0..99); 0 removes it.
func (s *Server) handleCartSet(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("product_id"), 10, 64)
	if err != nil || id < 1 {
		return notFound("product_id: %q is not a product.", truncate(r.PathValue("product_id"), 20))
	}
	if _, err := s.product(r, id); err != nil {
		return err
	}
	form, err := parseForm(r)
	if err != nil {
		return err
	}
	qty, err := formInt(form, "quantity", 0, MaxLineQuantity)
	if err == nil && int(qty) == info.Cart.Quantity(id) {
		// Nothing changes (0 for a line the cart does not hold, or the
		// quantity it already has): no write, no session, no cookie.
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
		return nil
	}
	if err == nil && qty > 0 {
		err = s.checkStock(r, id, int(qty))
	}
	if err == nil {
		if setErr := info.Cart.Set(id, int(qty)); setErr != nil {
			err = fieldError("quantity", "%s", setErr.Error())
		}
	}
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			return s.renderCart(w, r, fe.Status, info.Cart, fe.Error())
		}
		return err
	}
	if err := s.saveCart(r.Context(), info.AccountID, info.Cart); err != nil {
		return err
	}
	if qty == 0 {
		s.setFlash(w, r, "removed")
	} else {
		s.setFlash(w, r, "updated")
	}
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
	return nil
}

// product finds a product in the cached catalog; unknown ids are a 404 that
// names the field.
func (s *Server) product(r *http.Request, id int64) (*store.Product, error) {
	cat, err := s.catalog.load(r.Context())
	if err != nil {
		return nil, err
	}
	p, ok := cat.byID[id]
	if !ok {
		return nil, notFound("product_id: there is no product %d.", id)
	}
	return p, nil
}

// checkStock refuses a cart line larger than the current stock.
func (s *Server) checkStock(r *http.Request, id int64, want int) error {
	p, err := s.db.Product(r.Context(), id)
	if err != nil {
		return err
	}
	if want > p.Stock {
		return fieldError("quantity", "only %d of %s in stock", p.Stock, p.Name)
	}
	return nil
}

func (s *Server) renderProductError(w http.ResponseWriter, r *http.Request, id int64, quantity string, fe *Error) error {
	p, err := s.db.Product(r.Context(), id)
	if err != nil {
		return err
	}
	v, err := s.productPage(r, &p)
	if err != nil {
		return err
	}
	v.Quantity, v.Error = truncate(quantity, 20), fe.Error()
	s.render(w, r, fe.Status, templates.ProductPage(v))
	return nil
}
