package session

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/store"
)

// TestCookieExpiryInside: the expiry travels sealed inside the value, so a
// copied cookie dies on time whatever Max-Age the browser was told; and the
// expiry cannot be moved without the key.
func TestCookieExpiryInside(t *testing.T) {
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := NewCookie(CookieOptions{Keys: []string{strings.Repeat("k", 32)}, Epochs: db}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.Load(t.Context(), "", true)
	s.Touch("shop1")
	s.deadline = time.Now().Add(-time.Second) // born a day and a second ago
	cookie, _, err := st.Save(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(t.Context(), cookie, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Known() || got.SID() != "" || !strings.Contains(got.Dropped(), "expired") {
		t.Errorf("an expired cookie: known %v, sid %q, dropped %q", got.Known(), got.SID(), got.Dropped())
	}
}

// TestCookieSealsOnce: a write that Fits measured is not encrypted a second
// time by Save, and a change after Fits is sealed afresh.
func TestCookieSealsOnce(t *testing.T) {
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := NewCookie(CookieOptions{Keys: []string{strings.Repeat("k", 32)}, Epochs: db}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.Load(t.Context(), "", true)
	s.Touch("shop1")
	s.SetCart([]byte(`{"v":1,"rev":1,"items":[]}`))
	if err := s.Fits(); err != nil {
		t.Fatal(err)
	}
	measured := s.state.(*cookieState).sealedAs
	saved, _, err := st.Save(t.Context(), s)
	if err != nil || saved != measured {
		t.Errorf("Save after Fits sealed again: %v, same value %v", err, saved == measured)
	}
	s.SetCart([]byte(`{"v":1,"rev":2,"items":[]}`))
	again, _, err := st.Save(t.Context(), s)
	if err != nil || again == saved {
		t.Errorf("a changed session was not sealed afresh: %v", err)
	}
	if got, _ := st.Load(t.Context(), again, false); string(got.Cart()) != `{"v":1,"rev":2,"items":[]}` {
		t.Errorf("the resealed cookie opens to cart %s", got.Cart())
	}
}
