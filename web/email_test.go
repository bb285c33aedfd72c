package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/statelab/shop/session"
)

// TestLookAlikeEmails: addresses that look the same are one account
// (invisible characters, fullwidth letters, NFD against NFC, case), and
// addresses that only pass for another (letters of two scripts in one
// name, symbols) are refused with a 422 naming the email field. Issue 22,
// item 7.
func TestLookAlikeEmails(t *testing.T) {
	shop := newShop(t, session.Memory)
	const pw = "a long enough password"
	for _, email := range []string{"ada@example.com", "zoë@example.com"} {
		if r := shop.client().register(email, pw); r.status != http.StatusSeeOther {
			t.Fatalf("register %s: %d %s", email, r.status, r.testid("error-email"))
		}
	}

	same := map[string]string{
		"zero-width space":     "ada\u200b@example.com",
		"zero-width joiner":    "a\u200dda@example.com",
		"soft hyphen":          "ad\u00ada@example.com",
		"fullwidth letters":    "ａｄａ@ｅｘａｍｐｌｅ.ｃｏｍ",
		"upper case":           "ADA@Example.COM",
		"NFD for an NFC email": "zoe\u0308@example.com",
		"upper-case NFD":       "ZOE\u0308@EXAMPLE.COM",
	}
	for what, email := range same {
		if r := shop.client().register(email, pw); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.testid("error-email"), "cannot be registered") {
			t.Errorf("register %s (%q): %d %q; want 422, the address is taken", what, email, r.status, r.testid("error-email"))
		}
		if r := shop.client().login(email, pw); r.status != http.StatusSeeOther {
			t.Errorf("log in with %s (%q): %d %q; want 303 into the existing account", what, email, r.status, r.testid("error-form")+r.testid("error-email"))
		}
	}

	refused := map[string]string{
		"a Cyrillic а in a Latin name":      "\u0430da@example.com",
		"a Greek ο in the domain":           "ada@ex\u03bfample.com",
		"a symbol":                          "ada\u2603@example.com",
		"a Cyrillic е among fullwidth ones": "ａｄ\u0435@example.com",
	}
	for what, email := range refused {
		r := shop.client().register(email, pw)
		if r.status != http.StatusUnprocessableEntity || r.testid("error-email") == "" || strings.Contains(r.testid("error-email"), "cannot be registered") {
			t.Errorf("register with %s (%q): %d %q; want 422 naming email as ambiguous", what, email, r.status, r.testid("error-email"))
		}
	}

	// One script throughout is an address like any other.
	for _, email := range []string{"иван@example.com", "ada@пример.рф", "山田たろう@example.jp"} {
		if r := shop.client().register(email, pw); r.status != http.StatusSeeOther {
			t.Errorf("register %q: %d %q; want 303", email, r.status, r.testid("error-email"))
		}
	}
}
