package web_test

// Issue 22, item 8: a registration is one outcome. The account row and the
// session write succeed together or leave nothing: no 503 behind which the
// account exists (and the same form then says the email is taken).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
)

// TestRegisterSessionRefused: the session write after the account row is
// refused (WAIT, with no Redis replica): 503, no account, and the same form
// retried registers with the cart the browser had.
func TestRegisterSessionRefused(t *testing.T) {
	shop := newShop(t, session.Redis)
	durable := shop.durableReplica("", "", true, nil)
	c := shop.client()
	c.add(5, 2)
	form := url.Values{"email": {"once@example.com"}, "password": {"a long enough password"}}

	if r := c.at(durable.URL).post("/register", form); r.status != http.StatusServiceUnavailable {
		t.Fatalf("register whose session write WAIT refused: %d, want 503", r.status)
	}
	if _, err := shop.db.AccountByEmail(t.Context(), "once@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the 503 the account exists (%v); want no account", err)
	}
	r := c.post("/register", form)
	if r.status != http.StatusSeeOther {
		t.Fatalf("the retry: %d %s, want 303", r.status, r.testid("error-email"))
	}
	if got := c.session(); got.Cart.Count != 2 {
		t.Errorf("after registering the cart holds %d, want the 2 added before", got.Cart.Count)
	}
}

// TestRegisterFullDisk: a registration on a disk with less and less room
// left, page by page down to none: whatever each answers, its account row
// agrees with it (303 and the account with its cart, or 503 and no
// account), never a 500.
func TestRegisterFullDisk(t *testing.T) {
	disk := testenv.MountSmallDisk(t, 8<<20)
	shop := newShopAt(t, filepath.Join(disk.Dir(), "shop.db"))
	ctx := context.Background()
	outcomes := map[int]int{}
	for pages := 12; pages >= 0; pages-- {
		c := shop.client()
		c.add(1, 1)
		email := fmt.Sprintf("disk%d@example.com", pages)
		disk.LeaveFree(int64(pages) * 4096)
		r := c.post("/register", url.Values{"email": {email}, "password": {"a long enough password"}})
		disk.LeaveFree(1 << 20) // room for the checks
		outcomes[r.status]++
		acct, err := shop.db.AccountByEmail(ctx, email)
		switch r.status {
		case http.StatusSeeOther:
			if err != nil {
				t.Errorf("%d pages free: 303, but the account is not there: %v", pages, err)
				continue
			}
			if cart, err := shop.db.SavedCart(ctx, acct.ID); err != nil || len(cart) == 0 {
				t.Errorf("%d pages free: 303, but the account's cart is not saved (%v)", pages, err)
			}
		case http.StatusServiceUnavailable:
			if err == nil {
				t.Errorf("%d pages free: 503, but the account %s exists", pages, email)
			}
		default:
			t.Errorf("%d pages free: %d, want 303 or 503", pages, r.status)
		}
	}
	if outcomes[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no registration met the full disk: %v", outcomes)
	}
	t.Logf("outcomes by status: %v", outcomes)
}
