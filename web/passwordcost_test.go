package web_test

import (
	"net/http"
	"testing"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
	"golang.org/x/crypto/bcrypt"
)

// TestPasswordCost: Config.PasswordCost is the cost of the hashes a replica
// stores (the tests lower it for speed, so it must be what they think), and
// logins, unknown emails included, work at it.
func TestPasswordCost(t *testing.T) {
	const cost = bcrypt.MinCost + 1 // not the tests' default
	shop := newShopConfig(t, session.Memory, web.Config{PasswordCost: cost})
	if r := shop.client().register("cost@example.com", "a long enough password"); r.status != http.StatusSeeOther {
		t.Fatalf("register: %d", r.status)
	}
	a, err := shop.db.AccountByEmail(t.Context(), "cost@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bcrypt.Cost(a.PasswordHash); err != nil || got != cost {
		t.Errorf("stored hash has cost %d (%v), want %d", got, err, cost)
	}
	if r := shop.client().login("cost@example.com", "a long enough password"); r.status != http.StatusSeeOther {
		t.Errorf("right password: %d, want 303", r.status)
	}
	if r := shop.client().login("nobody@example.com", "a long enough password"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("unknown email: %d, want 422", r.status)
	}
}
