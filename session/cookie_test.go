package session_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
)

// Keys for the tests: any secret of at least 32 characters.
const (
	key1 = "first-key-0123456789-0123456789-0123456789"
	key2 = "second-key-0123456789-0123456789-012345678"
)

// openDB is a real SQLite database: the cookie store reads account epochs
// from it.
func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newCookie(t *testing.T, db *store.DB, o session.Options, keys ...string) *session.CookieStore {
	t.Helper()
	c, err := session.NewCookie(session.CookieOptions{Keys: keys, Epochs: db}, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// opens loads cookie from st and reports whether it opened as the session
// that was saved, and why not.
func opens(t *testing.T, st session.Store, cookie string) (bool, string) {
	t.Helper()
	s, err := st.Load(t.Context(), cookie, false)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if s.Known() != (s.SID() != "") || s.Known() == (s.Dropped() != "") {
		t.Errorf("known %v, sid %q, dropped %q: inconsistent", s.Known(), s.SID(), s.Dropped())
	}
	return s.Known(), s.Dropped()
}

// TestCookieTamper: a cookie changed anywhere, cut short or made up opens
// as a fresh session that says why, never an error.
func TestCookieTamper(t *testing.T) {
	st := newCookie(t, openDB(t), session.Options{}, key1)
	cookie := save(t, st, "shop1")
	if ok, why := opens(t, st, cookie); !ok {
		t.Fatalf("the untouched cookie does not open: %s", why)
	}
	flip := func(i int) string {
		b := []byte(cookie)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for name, c := range map[string]string{
		"first byte":  flip(0),
		"middle byte": flip(len(cookie) / 2),
		"last byte":   flip(len(cookie) - 1),
		"cut short":   cookie[:len(cookie)-10],
		"made up":     strings.Repeat("A", 200),
		"not base64":  "<script>alert(1)</script>",
	} {
		if ok, why := opens(t, st, c); ok || !strings.Contains(why, "tampered") {
			t.Errorf("%s: opened %v, dropped %q", name, ok, why)
		}
	}
}

// TestCookieKeys: a replica with another key opens nothing; keys "new,old"
// open both generations and reseal with new; dropping old loses what it
// sealed.
func TestCookieKeys(t *testing.T) {
	db := openDB(t)
	old := newCookie(t, db, session.Options{}, key1)
	cookie := save(t, old, "shop1")

	wrong := newCookie(t, db, session.Options{}, key2)
	if ok, why := opens(t, wrong, cookie); ok || !strings.Contains(why, "a key this replica does not have") {
		t.Errorf("a replica with another key: opened %v, dropped %q", ok, why)
	}

	rolling := newCookie(t, db, session.Options{}, key2, key1)
	s, err := rolling.Load(t.Context(), cookie, true)
	if err != nil || !s.Known() {
		t.Fatalf("new,old does not open a cookie sealed with old: %v %q", err, s.Dropped())
	}
	if d := rolling.Describe(t.Context(), s, "shop2"); !strings.HasPrefix(d.Key, "key 2 of 2") {
		t.Errorf("sealed with %q, want key 2 of 2", d.Key)
	}
	s.Touch("shop2")
	resealed, _, err := rolling.Save(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if d := rolling.Describe(t.Context(), s, "shop2"); !strings.HasPrefix(d.Key, "key 1 of 2") {
		t.Errorf("after a write, sealed with %q, want key 1 of 2", d.Key)
	}

	newOnly := newCookie(t, db, session.Options{}, key2)
	if ok, why := opens(t, newOnly, resealed); !ok {
		t.Errorf("new alone does not open a cookie resealed with new: %s", why)
	}
	if ok, _ := opens(t, newOnly, cookie); ok {
		t.Error("new alone opens a cookie that only old sealed")
	}
}

// TestCookieTooLarge: a session whose sealed cookie would pass 4096 bytes is
// refused by Fits and by Save, naming the size and the limit.
func TestCookieTooLarge(t *testing.T) {
	st := newCookie(t, openDB(t), session.Options{}, key1)
	s, err := st.Load(t.Context(), "", true)
	if err != nil {
		t.Fatal(err)
	}
	s.Touch("shop1")
	s.SetCart([]byte(`{"v":1,"rev":1,"items":[]}`))
	if err := s.Fits(); err != nil {
		t.Fatalf("a small session does not fit: %v", err)
	}
	big := `{"v":1,"rev":1,"items":[` + strings.Repeat(`{"product_id":123456,"quantity":99},`, 80) + `{"product_id":1,"quantity":1}]}`
	s.SetCart([]byte(big))
	var tooLarge *session.TooLargeError
	if err := s.Fits(); !errors.As(err, &tooLarge) || tooLarge.Limit != session.CookieLimit || tooLarge.Size <= session.CookieLimit {
		t.Errorf("Fits with a %d-byte cart: %v", len(big), err)
	}
	if _, _, err := st.Save(t.Context(), s); !errors.As(err, &tooLarge) {
		t.Errorf("Save with a %d-byte cart: %v, want a *TooLargeError", len(big), err)
	} else if !strings.Contains(err.Error(), "4096") {
		t.Errorf("the refusal %q does not name the limit", err)
	}
}

// TestCookieRevocation: logout bumps the account's epoch in the database,
// and a copy of a logged-in cookie from before is anonymous after it, on
// every replica; a cookie sealed after the bump opens.
func TestCookieRevocation(t *testing.T) {
	db := openDB(t)
	st := newCookie(t, db, session.Options{}, key1)
	acct, err := db.CreateAccount(t.Context(), "ada@example.com", []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	login := func() string {
		a, err := db.AccountByEmail(t.Context(), acct.Email)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := st.Load(t.Context(), "", true)
		s.Touch("shop1")
		s.SetAccount(a.ID, a.Email, a.SessionEpoch)
		cookie, _, err := st.Save(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		return cookie
	}
	copied := login()
	s, _ := st.Load(t.Context(), copied, false)
	if id, _ := s.Account(); id != acct.ID {
		t.Fatalf("the logged-in cookie opens as account %d", id)
	}
	if _, err := db.BumpSessionEpoch(t.Context(), acct.ID); err != nil { // logout
		t.Fatal(err)
	}
	other := newCookie(t, db, session.Options{}, key1) // another replica
	for _, replica := range []session.Store{st, other} {
		s, err := replica.Load(t.Context(), copied, false)
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := s.Account(); id != 0 || s.Cart() != nil || !strings.Contains(s.Dropped(), "revoked") {
			t.Errorf("the copy after logout: account %d, cart %s, dropped %q", id, s.Cart(), s.Dropped())
		}
	}
	again := login()
	if s, _ := st.Load(t.Context(), again, false); !s.Known() {
		t.Errorf("a login after the logout does not open: %q", s.Dropped())
	}
}

// TestParseKeys: comma-separated, each at least 32 characters, the first
// first.
func TestParseKeys(t *testing.T) {
	keys, err := session.ParseKeys(key1 + ", " + key2)
	if err != nil || len(keys) != 2 || keys[0] != key1 || keys[1] != key2 {
		t.Errorf("ParseKeys = %q, %v", keys, err)
	}
	for _, bad := range []string{"", " ", "short", key1 + ",", key1 + ",tooshort"} {
		if _, err := session.ParseKeys(bad); err == nil || !strings.Contains(err.Error(), "32") {
			t.Errorf("ParseKeys(%q) = %v, want an error naming 32", bad, err)
		}
	}
}
