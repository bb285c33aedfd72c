package store

import (
	"bytes"
	"errors"
	"testing"
)

func TestAccounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		a, err := d.CreateAccount(t.Context(), "Ann@Example.com", []byte("hash-1"))
		if err != nil {
			t.Fatal(err)
		}
		if a.ID == 0 || a.CreatedAt.IsZero() {
			t.Errorf("CreateAccount = %+v, want an id and a time", a)
		}

		for _, email := range []string{"Ann@Example.com", "ann@example.com"} {
			got, err := d.AccountByEmail(t.Context(), email)
			if err != nil {
				t.Fatalf("AccountByEmail(%q): %v", email, err)
			}
			if got.ID != a.ID || got.Email != a.Email || !bytes.Equal(got.PasswordHash, a.PasswordHash) || !got.CreatedAt.Equal(a.CreatedAt) {
				t.Errorf("AccountByEmail(%q) = %+v, want %+v", email, got, a)
			}
		}
		got, err := d.Account(t.Context(), a.ID)
		if err != nil || got.Email != a.Email || !got.CreatedAt.Equal(a.CreatedAt) {
			t.Errorf("Account(%d) = %+v, %v; want %+v", a.ID, got, err, a)
		}

		if _, err := d.AccountByEmail(t.Context(), "nobody@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("AccountByEmail(unknown) err = %v, want ErrNotFound", err)
		}
		if _, err := d.Account(t.Context(), 9999); !errors.Is(err, ErrNotFound) {
			t.Errorf("Account(unknown) err = %v, want ErrNotFound", err)
		}
	})
}

func TestCreateAccountRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		createAccount(t, d, "ann@example.com")
		tests := []struct {
			name, email string
			hash        []byte
			taken       bool
		}{
			{"same email", "ann@example.com", []byte("h"), true},
			{"same email, other case", "ANN@example.COM", []byte("h"), true},
			{"empty email", "", []byte("h"), false},
			{"empty hash", "bob@example.com", nil, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := d.CreateAccount(t.Context(), tt.email, tt.hash)
				if err == nil {
					t.Fatal("CreateAccount succeeded")
				}
				if errors.Is(err, ErrEmailTaken) != tt.taken {
					t.Errorf("errors.Is(%v, ErrEmailTaken) = %v, want %v", err, !tt.taken, tt.taken)
				}
			})
		}
		if n := count(t, d, "SELECT count(*) FROM accounts"); n != 1 {
			t.Errorf("%d accounts, want 1", n)
		}
	})
}

func TestSavedCart(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ann := createAccount(t, d, "ann@example.com")
		bob := createAccount(t, d, "bob@example.com")

		if data, err := d.SavedCart(t.Context(), ann.ID); data != nil || err != nil {
			t.Errorf("SavedCart(none) = %q, %v; want nil, nil", data, err)
		}
		steps := []struct {
			save []byte
			want []byte
		}{
			{[]byte(`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":2}]}`), []byte(`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":2}]}`)},
			{[]byte(`{"v":1,"rev":2,"items":[]}`), []byte(`{"v":1,"rev":2,"items":[]}`)},
			{nil, nil}, // empty deletes
			{[]byte{0, 1, 2, 255}, []byte{0, 1, 2, 255}},
		}
		for i, s := range steps {
			if err := d.SaveCart(t.Context(), ann.ID, s.save); err != nil {
				t.Fatalf("step %d: SaveCart: %v", i, err)
			}
			got, err := d.SavedCart(t.Context(), ann.ID)
			if err != nil || !bytes.Equal(got, s.want) || (got == nil) != (s.want == nil) {
				t.Errorf("step %d: SavedCart = %q, %v; want %q", i, got, err, s.want)
			}
		}
		if data, err := d.SavedCart(t.Context(), bob.ID); data != nil || err != nil {
			t.Errorf("another account's cart = %q, %v; want nil, nil", data, err)
		}
		if err := d.SaveCart(t.Context(), 9999, []byte("x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("SaveCart(unknown account) err = %v, want ErrNotFound", err)
		}
	})
}

// TestSessionEpoch: an account's epoch starts at 0, each bump raises it by
// one for that account only, and an unknown account is ErrNotFound.
func TestSessionEpoch(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ann := createAccount(t, d, "ann@example.com")
		bob := createAccount(t, d, "bob@example.com")
		if e, err := d.SessionEpoch(t.Context(), ann.ID); err != nil || e != 0 {
			t.Fatalf("new account's epoch = %d, %v; want 0", e, err)
		}
		for want := int64(1); want <= 2; want++ {
			if e, err := d.BumpSessionEpoch(t.Context(), ann.ID); err != nil || e != want {
				t.Fatalf("bump = %d, %v; want %d", e, err, want)
			}
		}
		if e, _ := d.SessionEpoch(t.Context(), ann.ID); e != 2 {
			t.Errorf("epoch after two bumps = %d", e)
		}
		if a, _ := d.AccountByEmail(t.Context(), "ann@example.com"); a.SessionEpoch != 2 {
			t.Errorf("AccountByEmail's SessionEpoch = %d, want 2", a.SessionEpoch)
		}
		if e, _ := d.SessionEpoch(t.Context(), bob.ID); e != 0 {
			t.Errorf("another account's epoch moved to %d", e)
		}
		if _, err := d.SessionEpoch(t.Context(), 9999); !errors.Is(err, ErrNotFound) {
			t.Errorf("SessionEpoch(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := d.BumpSessionEpoch(t.Context(), 9999); !errors.Is(err, ErrNotFound) {
			t.Errorf("BumpSessionEpoch(unknown) = %v, want ErrNotFound", err)
		}
	})
}
