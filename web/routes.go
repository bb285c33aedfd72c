package web

import (
	"net/http"

	"github.com/statelab/shop/static"
)

// addRoutes is the whole URL space of the shop in one place.
func (s *Server) addRoutes(mux *http.ServeMux) {
	// Every page carries the ribbon; withTrail (trail.go) keeps the browser's
	// own record of which replicas served it.
	// Every page shows the visitor's session, so none may be cached.
	page := func(h handler) http.Handler { return withNoStore(s.withTrail(s.withSession(s.handle(h)))) }

	mux.Handle("GET /{$}", page(s.handleCatalog))
	mux.Handle("GET /products/{slug}", page(s.handleProduct))
	// A review reads the session (who writes it) but never changes it: it
	// does not take the session's write lock, which an upload would hold
	// for as long as the photo takes to arrive.
	mux.Handle("POST /products/{slug}/reviews", withNoStore(s.withTrail(s.withSessionRead(s.handle(s.handleReviewAdd)))))
	// Photos need no session: only the page of a missing one loads it.
	mux.Handle("GET /uploads/{key}", s.handlePhoto(page(s.handlePhotoMissing)))
	mux.Handle("GET /cart", page(s.handleCart))
	mux.Handle("POST /cart/items", page(s.handleCartAdd))
	mux.Handle("POST /cart/items/{product_id}", page(s.handleCartSet))
	mux.Handle("GET /checkout", page(s.handleCheckoutForm))
	mux.Handle("POST /checkout", page(s.handleCheckout))
	mux.Handle("GET /orders/{id}", page(s.handleOrder))
	mux.Handle("GET /orders/{id}/receipt", page(s.handleOrderReceipt))
	mux.Handle("GET /api/session", page(s.handleAPISession))
	mux.Handle("GET /outbox", page(s.handleOutbox))
	mux.Handle("GET /api/outbox", page(s.handleAPIOutbox))
	mux.Handle("GET /session", page(s.handleSessionInspector))
	mux.Handle("GET /cluster", page(s.handleClusterView))
	mux.Handle("GET /register", page(s.handleRegisterForm))
	mux.Handle("POST /register", page(s.handleRegister))
	mux.Handle("GET /login", page(s.handleLoginForm))
	mux.Handle("POST /login", page(s.handleLogin))
	mux.Handle("POST /logout", page(s.handleLogout))
	mux.Handle("GET /account", page(s.handleAccount))
	mux.Handle("GET /state", page(s.handleState))
	mux.Handle("GET /api/state", page(s.handleAPIState))

	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())
	mux.Handle("GET /metrics", s.onlyTrusted(s.handleMetrics()))
	mux.Handle("GET /metrics/live", s.handleLive())
	mux.Handle("GET /metrics/live/stream", s.handleLiveStream())
	mux.Handle("GET /events", s.handleEvents())
	mux.Handle("GET /api/stock", s.handle(s.handleAPIStock))
	mux.Handle("GET /static/", http.StripPrefix("/static/", static.Handler()))

	// Every other GET is a 404 page that still shows the ribbon. It is GET
	// only so that a wrong method on a known path stays a 405.
	mux.Handle("GET /", page(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("There is no page at %s.", r.URL.Path)
	}))
}
