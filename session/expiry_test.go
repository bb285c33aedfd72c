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
