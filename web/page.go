package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/static"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
)

// replicaColorClass gives each replica name its stable colour class, from
// the palette the lab's reports share (static.ReplicaColor).
// It allocates nothing: pages name up to six replicas per request.
func replicaColorClass(name string) string {
	class, _ := static.ReplicaColor(name)
	return class
}

// lives is where this replica's sessions live, as their store declares it.
func (s *Server) lives() (templates.Lives, string) {
	t := session.TraitsOf(s.sessions)
	switch t.Place {
	case session.InReplica:
		return templates.LivesInReplica, t.Where
	case session.InBrowser:
		return templates.LivesInBrowser, t.Where
	}
	return templates.LivesShared, t.Where
}

// page builds what every page's layout shows: ribbon, flash and cart count.
func (s *Server) page(r *http.Request, title string) templates.Page {
	p := templates.Page{Title: title, Flash: takeFlash(r), Live: s.live.Kind()}
	rb := templates.Ribbon{
		Replica:    s.cfg.Replica,
		ColorClass: replicaColorClass(s.cfg.Replica),
		Store:      s.sessions.Kind(),
		Profile:    s.cfg.Profile,
	}
	rb.Lives, rb.Where = s.lives()
	if sess := sessionOf(r.Context()).sess; sess != nil {
		rb.CookieBytes, rb.Dropped = sess.Bytes(), sess.Dropped()
	}
	if s.cfg.Sentinel != nil && session.TraitsOf(s.sessions).NeedsRedis {
		rb.Sentinel, rb.RedisPrimary = true, s.cfg.Sentinel.Addr()
		if !s.trustedClient(r) {
			rb.RedisPrimary = addressHidden
		}
	}
	info, err := s.session(r.Context())
	switch {
	case errors.Is(err, session.ErrLockTimeout):
		rb.State = templates.SessionBusy
	case err != nil:
		rb.State = templates.SessionUnavailable
		rb.Trouble, p.StoreTrouble = storeTrouble(err)
		p.CartUnavailable = true
	case info.Known || info.SID != "":
		// SID without a token: this very request created the session.
		rb.State = templates.SessionKnown
		rb.BornOn, rb.BornClass = info.Born, replicaColorClass(info.Born)
		rb.LastWriter, rb.WriterClass = info.LastWriter, replicaColorClass(info.LastWriter)
		rb.CartRev = info.Cart.Rev
		p.CartCount = info.Cart.Count()
		if info.AccountID != 0 {
			p.Account = info.AccountEmail
		}
	case info.HadCookie:
		rb.State = templates.SessionUnknown
		// Where the cart is, as the browser remembers it (see trail.go): the
		// session itself is exactly what this replica does not have.
		if home := s.homeOf(r); home != "" {
			rb.Home, rb.HomeClass = home, replicaColorClass(home)
		}
	default:
		rb.State = templates.SessionNone
	}
	for _, name := range trailOf(r.Context()) {
		rb.Trail = append(rb.Trail, templates.TrailStop{Replica: name, ColorClass: replicaColorClass(name)})
	}
	p.Ribbon = rb
	return p
}

// flash messages travel in a short-lived cookie holding a code, not in the
// session: showing a flash then costs no session write on a GET (a GET that
// writes the session could overwrite a concurrent add from another tab), and
// a forged cookie can only pick one of these texts.
var flashes = map[string]string{
	"added":      "Added to your cart.",
	"updated":    "Cart updated.",
	"removed":    "Removed from your cart.",
	"ordered":    "Thank you! Your order is placed.",
	"registered": "Welcome! Your account is ready, and your session has a new token.",
	"logged-in":  "You are logged in. Your session has a new token, so a token planted before the login is worthless.",
	"logged-out": "You are logged out. Your session has a new token and no account.",
	"reviewed":   "Thank you for your review.",
}

// setFlash sets the flash cookie, Secure exactly when the session cookie is.
func (s *Server) setFlash(w http.ResponseWriter, r *http.Request, code string) {
	http.SetCookie(w, &http.Cookie{Name: "flash", Value: code, Path: "/", MaxAge: 60, HttpOnly: true, Secure: s.cameOverTLS(r), SameSite: http.SameSiteLaxMode})
}

func takeFlash(r *http.Request) string {
	c, err := r.Cookie("flash")
	if err != nil {
		return ""
	}
	return flashes[c.Value]
}

// clearFlash drops the flash cookie once a page showed it.
func (s *Server) clearFlash(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie("flash"); err == nil {
		http.SetCookie(w, &http.Cookie{Name: "flash", Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.cameOverTLS(r), SameSite: http.SameSiteLaxMode})
	}
}

// formatPrice renders cents as dollars.
func formatPrice(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}

func productView(p *store.Product) templates.Product {
	return templates.Product{
		ID:           p.ID,
		Slug:         p.Slug,
		Name:         p.Name,
		Description:  p.Description,
		Price:        formatPrice(p.PriceCents),
		Stock:        p.Stock,
		Category:     p.CategoryName,
		CategorySlug: p.CategorySlug,
		ImageURL:     "/static/img/products/" + p.Slug + ".svg",
		URL:          "/products/" + p.Slug,
	}
}

// cartLines joins a cart with the catalog; lines whose product vanished are
// left out.
func cartLines(cat *catalog, cart Cart) (lines []templates.CartLine, count int, total int64) {
	for _, it := range cart.Items {
		p, ok := cat.byID[it.ProductID]
		if !ok {
			continue
		}
		lines = append(lines, cartLine(p.ID, p.Slug, p.Name, it.Quantity, p.PriceCents))
		count += it.Quantity
		total += p.PriceCents * int64(it.Quantity)
	}
	return lines, count, total
}

// cartLine is one line as the cart, checkout and order pages show it.
func cartLine(id int64, slug, name string, quantity int, priceCents int64) templates.CartLine {
	return templates.CartLine{
		ProductID: id,
		Name:      name,
		URL:       "/products/" + slug,
		ImageURL:  "/static/img/products/" + slug + ".svg",
		Quantity:  quantity,
		Price:     formatPrice(priceCents),
		LineTotal: formatPrice(priceCents * int64(quantity)),
	}
}

// validSlug reports whether s could be a product or category slug.
func validSlug(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

func itoa(n int) string { return strconv.Itoa(n) }
