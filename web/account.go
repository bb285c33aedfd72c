package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
	"golang.org/x/crypto/bcrypt"
)

// Account form limits. bcrypt reads at most 72 bytes of a password; a longer
// one is refused rather than silently cut.
const (
	minPasswordLen = 10
	maxPasswordLen = 72
)

// accountForm is the register and login form as posted.
type accountForm struct {
	Email, Password string
	Errors          map[string]string
}

func readAccountForm(r *http.Request, register bool) (accountForm, error) {
	values, err := parseForm(r)
	if err != nil {
		return accountForm{}, err
	}
	f := accountForm{Errors: map[string]string{}}
	email, err := formValue(values, "email", maxEmailLen)
	if err != nil {
		f.Errors["email"] = err.(*Error).Message
	}
	var problem string
	f.Email, problem = canonicalEmail(email)
	if _, bad := f.Errors["email"]; !bad && problem != "" {
		f.Errors["email"] = problem
	}
	if _, bad := f.Errors["email"]; !bad {
		if a, err := mail.ParseAddress(f.Email); err != nil || a.Address != f.Email || !strings.Contains(f.Email, ".") {
			f.Errors["email"] = "must be an address like ada@example.com"
		}
	}
	pw := values["password"]
	switch {
	case len(pw) > 1:
		f.Errors["password"] = "given more than once"
	case len(pw) == 0 || pw[0] == "":
		f.Errors["password"] = "is required"
	case register && strings.TrimSpace(pw[0]) == "":
		// Ten spaces pass a length rule and are a guess anyone tries first.
		f.Errors["password"] = "must not be only spaces"
	case len(pw[0]) > maxPasswordLen:
		f.Errors["password"] = fmt.Sprintf("must be at most %d bytes", maxPasswordLen)
	case register && len([]rune(pw[0])) < minPasswordLen:
		f.Errors["password"] = fmt.Sprintf("must be at least %d characters", minPasswordLen)
	default:
		f.Password = pw[0]
	}
	return f, nil
}

func (s *Server) renderAuth(w http.ResponseWriter, r *http.Request, status int, register bool, f accountForm) error {
	v := templates.AuthView{Register: register, Email: f.Email, Errors: f.Errors}
	title := "Log in"
	if register {
		title = "Create an account"
	}
	v.Page = s.page(r, title)
	s.clearFlash(w, r)
	s.render(w, r, status, templates.AuthPage(v))
	return nil
}

// renderTooMany re-renders the form with a 429 saying which limit refused
// the attempt and when to try again.
func (s *Server) renderTooMany(w http.ResponseWriter, r *http.Request, register bool, f accountForm, v redisclient.Verdict) error {
	wait := max(v.RetryAfter, time.Minute)
	minutes := int(wait.Round(time.Minute).Minutes())
	if v.ByClient {
		f.Errors["form"] = fmt.Sprintf("Too many failed attempts from your address, across accounts. Try again in %d minutes.", minutes)
	} else {
		f.Errors["form"] = fmt.Sprintf("Too many failed logins for this account from your address. Try again in %d minutes.", minutes)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
	return s.renderAuth(w, r, http.StatusTooManyRequests, register, f)
}

// release gives back an attempt that was never checked (no hasher was free,
// the database did not answer, the client left): it must not count against
// anyone. It outlives the request's context, which may be what ended.
func (s *Server) release(ctx context.Context, client, account string) {
	if err := s.limiter.Release(context.WithoutCancel(ctx), client, account); err != nil {
		s.log.WarnContext(ctx, "releasing an unchecked login attempt failed", "err", err)
	}
}

// handleRegisterForm and handleLoginForm show the empty forms.
func (s *Server) handleRegisterForm(w http.ResponseWriter, r *http.Request) error {
	return s.renderAuth(w, r, http.StatusOK, true, accountForm{})
}

func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) error {
	return s.renderAuth(w, r, http.StatusOK, false, accountForm{})
}

// handleRegister creates an account and logs the session in.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	f, err := readAccountForm(r, true)
	if err != nil {
		return err
	}
	if len(f.Errors) > 0 {
		return s.renderAuth(w, r, http.StatusUnprocessableEntity, true, f)
	}
	if info.AccountID != 0 && info.AccountEmail == f.Email {
		// The same form again (a double click, the back button): this
		// session already holds the account it made. Nothing changes.
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return nil
	}
	// Registering a taken address says that it is taken: a failed attempt
	// like a wrong password, counted against the client's allowance across
	// accounts. A client past it is refused whatever it registers, or a new
	// address's success would answer what a taken one's refusal hides.
	client := s.clientIP(r)
	if v, err := s.limiter.Check(r.Context(), client); err != nil {
		return err
	} else if !v.Allowed {
		return s.renderTooMany(w, r, true, f, v)
	}
	var hash []byte
	var hashErr error
	if err := s.hashers.do(r.Context(), client, func() { hash, hashErr = bcrypt.GenerateFromPassword([]byte(f.Password), s.cfg.PasswordCost) }); err != nil {
		return err
	}
	if hashErr != nil {
		return hashErr
	}
	sess := sessionOf(r.Context()).sess
	if sess == nil {
		return ErrSessionStore
	}
	// The new account starts with this browser's cart (none when another
	// account was logged in: its cart stays with it), saved in the same
	// transaction as the account row.
	cart := info.Cart
	if info.AccountID != 0 {
		cart = Cart{}
	}
	acct, err := s.db.CreateAccountWithCart(r.Context(), f.Email, hash, EncodeCart(cart))
	if errors.Is(err, store.ErrEmailTaken) {
		// Counted as it is answered, atomically: parallel attempts get
		// distinct counts, and no more than the allowance learn the answer.
		v, err := s.limiter.Reserve(r.Context(), client, "")
		if err != nil {
			return err
		}
		if !v.Allowed {
			return s.renderTooMany(w, r, true, f, v)
		}
		// Say no more than needed: not whether the account exists, only what to do.
		f.Errors["email"] = "cannot be registered. If you already have an account, log in instead."
		return s.renderAuth(w, r, http.StatusUnprocessableEntity, true, f)
	}
	if err != nil {
		return err
	}
	// From here the registration is the account row and the session
	// together: if the session cannot be saved, the row goes too, so a 503
	// leaves nothing behind and the same form succeeds when retried.
	takeBack := func(ctx context.Context, err error) error { return s.takeBackAccount(ctx, acct, err) }
	onFailedSave(r.Context(), takeBack)
	if info.AccountID != 0 {
		sess.Clear() // the other account is logged out first
	}
	startSession(sess, acct, "register")
	if err := s.setSessionCart(r.Context(), cart); err != nil {
		return takeBack(r.Context(), err)
	}
	s.setFlash(w, r, "registered")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
	return nil
}

// handleLogin checks the password, with failed attempts limited per account
// and client address, and per client address across accounts. The attempt
// is counted before the password is checked, so a burst of parallel guesses
// checks no more passwords than the limit; one that is never checked (no
// hasher free) is given back, and a success forgets the account's count.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	f, err := readAccountForm(r, false)
	if err != nil {
		return err
	}
	if len(f.Errors) > 0 {
		return s.renderAuth(w, r, http.StatusUnprocessableEntity, false, f)
	}
	client := s.clientIP(r)
	v, err := s.limiter.Reserve(r.Context(), client, f.Email)
	if err != nil {
		return err
	}
	if !v.Allowed {
		return s.renderTooMany(w, r, false, f, v)
	}

	acct, err := s.db.AccountByEmail(r.Context(), f.Email)
	hash := s.dummyHash()
	if err == nil {
		hash = acct.PasswordHash
	} else if !errors.Is(err, store.ErrNotFound) {
		s.release(r.Context(), client, f.Email)
		return err
	}
	var wrong error
	if err := s.hashers.do(r.Context(), client, func() { wrong = bcrypt.CompareHashAndPassword(hash, []byte(f.Password)) }); err != nil {
		s.release(r.Context(), client, f.Email)
		return err
	}
	if wrong != nil || err != nil {
		f.Errors["form"] = "The email or the password is wrong."
		return s.renderAuth(w, r, http.StatusUnprocessableEntity, false, f)
	}
	if err := s.limiter.Succeeded(r.Context(), client, f.Email); err != nil {
		return err
	}
	if err := s.logIn(r.Context(), info, acct, "login"); err != nil {
		return err
	}
	s.setFlash(w, r, "logged-in")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
	return nil
}

// logIn makes the session the account's. The merge rule (docs/CONTRACT.md,
// "Accounts"):
//
//   - already logged in as this account (a resubmitted form, the back
//     button): nothing changes;
//   - logged in as another account: that account is logged out first (its
//     cart is saved with it already and stays there), then this one logs in
//     with its own saved cart;
//   - anonymous: the anonymous cart is merged into the account's saved cart.
//
// The token is renewed (a token planted before login is worth nothing after
// it) and the session gets a new identity, so orders placed anonymously in
// this browser stay with the anonymous session and never become visible to
// the account, or to any later one.
func (s *Server) logIn(ctx context.Context, info sessionInfo, acct store.Account, why string) error {
	if info.AccountID == acct.ID {
		return nil
	}
	sess := sessionOf(ctx).sess
	if sess == nil {
		return ErrSessionStore
	}
	cart := info.Cart
	if info.AccountID != 0 {
		sess.Clear()
		cart = Cart{}
	}
	saved, err := s.db.SavedCart(ctx, acct.ID)
	if err != nil {
		return err
	}
	if len(saved) > 0 {
		if old, err := DecodeCart(saved); err == nil {
			cart = mergeCarts(cart, old)
		}
	}
	startSession(sess, acct, why)
	return s.saveCart(ctx, acct.ID, cart)
}

// startSession makes sess the account's: a new token (a token planted
// before is worth nothing after), a new identity, the account.
func startSession(sess *session.Session, acct store.Account, why string) {
	sess.Renew(why)
	sess.NewIdentity()
	sess.SetAccount(acct.ID, acct.Email, acct.SessionEpoch)
}

// takeBackAccount deletes an account whose registration failed after its
// row was written, and returns err, the failure, to answer with. A session
// write that may have been applied keeps the account: the session may be
// logged in to it.
func (s *Server) takeBackAccount(ctx context.Context, acct store.Account, err error) error {
	if errors.Is(err, session.ErrMaybeApplied) {
		return err
	}
	if delErr := s.db.DeleteNewAccount(context.WithoutCancel(ctx), acct.ID); delErr != nil {
		s.log.ErrorContext(ctx, "registration failed after the account was created, and the account could not be taken back",
			"account_id", acct.ID, "err", err, "delete_err", delErr)
		return errors.Join(err, delErr)
	}
	return err
}

// mergeCarts adds b's lines to a's, each line capped at the limits: what a
// person put in either cart stays, as far as the rules allow.
func mergeCarts(a, b Cart) Cart {
	out := Cart{Rev: max(a.Rev, b.Rev), Items: append([]CartItem(nil), a.Items...), Applied: a.Applied}
	for _, it := range b.Items {
		q := min(out.Quantity(it.ProductID)+it.Quantity, MaxLineQuantity)
		out.Set(it.ProductID, q) // only ErrCartFull can fail: that line is dropped
	}
	return out
}

// handleLogout forgets the account and renews the token. It also bumps the
// account's session epoch, which revokes every copy of a logged-in session
// that no server can delete (a sealed cookie).
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	if info.AccountID != 0 {
		if _, err := s.db.BumpSessionEpoch(r.Context(), info.AccountID); err != nil {
			return err
		}
	}
	sess := sessionOf(r.Context()).sess
	if !sess.Known() && sess.SID() == "" {
		// No session here (no cookie, or one the store does not know):
		// nothing to log out of, so nothing is created and no cookie set.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	// Everything goes: the cart belongs to the account (it is saved with it),
	// and the next person at this browser must not see it.
	sess.Clear()
	sess.Renew("logout")
	s.touchSession(r.Context())
	s.setFlash(w, r, "logged-out")
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// handleAccount shows the account and its orders; anonymous visitors are
// sent to log in.
func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) error {
	info, err := s.session(r.Context())
	if err != nil {
		return err
	}
	if info.AccountID == 0 {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil
	}
	orders, err := s.db.OrdersByAccount(r.Context(), info.AccountID)
	if err != nil {
		return err
	}
	v := templates.AccountView{Email: info.AccountEmail}
	for _, o := range orders {
		n := 0
		for _, l := range o.Lines {
			n += l.Quantity
		}
		v.Orders = append(v.Orders, templates.OrderSummary{
			ID: o.ID, URL: "/orders/" + o.ID, Items: n, Total: formatPrice(o.TotalCents),
			PlacedAt: o.CreatedAt.UTC().Format(time.DateTime + " UTC"), Replica: o.Replica,
		})
	}
	v.Page = s.page(r, "Your account")
	s.clearFlash(w, r)
	s.render(w, r, http.StatusOK, templates.AccountPage(v))
	return nil
}
