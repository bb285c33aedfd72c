package web

import (
	"net/http"

	"github.com/statelab/shop/templates"
)

// handleCatalog lists every product, or one category's with ?category=slug.
// It needs no session: with the store away it still answers 200, with a
// notice in place of the cart.
func (s *Server) handleCatalog(w http.ResponseWriter, r *http.Request) error {
	cat, err := s.catalog.load(r.Context())
	if err != nil {
		return err
	}
	q := r.URL.Query()
	slug := q.Get("category")
	if len(q["category"]) > 1 {
		return &Error{Status: http.StatusBadRequest, Field: "category", Message: "given more than once"}
	}
	if _, ok := cat.bodies[catalogKey{category: slug, withCart: true}]; !ok {
		return notFound("category: there is no category %q.", slug)
	}
	var v templates.CatalogView
	v.Page = s.page(r, "")
	body := cat.bodies[catalogKey{category: slug, withCart: !v.CartUnavailable}]
	v.Title, v.Body = body.heading, body.withKey(randomToken(16))
	s.clearFlash(w, r)
	s.render(w, r, http.StatusOK, templates.CatalogPage(v))
	return nil
}

// handleProduct shows one product with its current stock.
func (s *Server) handleProduct(w http.ResponseWriter, r *http.Request) error {
	slug := r.PathValue("slug")
	cat, err := s.catalog.load(r.Context())
	if err != nil {
		return err
	}
	cached, ok := cat.bySlug[slug]
	if !validSlug(slug) || !ok {
		return notFound("There is no product %q.", slug)
	}
	p, err := s.db.Product(r.Context(), cached.ID) // fresh stock
	if err != nil {
		return err
	}
	v, err := s.productPage(r, &p)
	if err != nil {
		return err
	}
	s.clearFlash(w, r)
	s.render(w, r, http.StatusOK, templates.ProductPage(v))
	return nil
}
