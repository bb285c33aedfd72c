package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The cart's limits. A cart lives in the session, so it must stay small: the
// session store pays for every byte on every request in redis mode.
const (
	// MaxLineQuantity is the most one cart line may hold (the contract's 99).
	MaxLineQuantity = 99
	// MaxCartLines bounds how many different products one cart may hold.
	MaxCartLines = 50
	// MaxAppliedKeys bounds how many idempotency keys a cart remembers:
	// enough for every retry a shopper makes, small enough for a cookie.
	MaxAppliedKeys = 32
	// cartVersion is the encoding version of Cart. A change of shape bumps it and
	// DecodeCart learns to read the old one, so no stored session breaks.
	cartVersion = 1
)

// CartItem is one line of a cart.
type CartItem struct {
	ProductID int64 `json:"product_id"`
	Quantity  int   `json:"quantity"`
}

// Cart is the shopping cart kept in the session. It is encoded as small,
// versioned JSON rather than gob, so a renamed Go type breaks no stored
// session and a student can read it straight out of Redis.
type Cart struct {
	// Rev counts the writes to this cart: the lesson pages show it, and a lost
	// update shows up as a revision that went back.
	Rev   int        `json:"rev"`
	Items []CartItem `json:"items"`
	// Applied are fingerprints of the idempotency keys of the last writes
	// this cart already holds (adds, and the checkout that emptied it),
	// oldest first, at most MaxAppliedKeys. They live in the cart, so they
	// travel with the session in every store and a retry meets the write it
	// repeats, whichever replica it reaches.
	Applied []string `json:"applied,omitempty"`
}

// Errors that cart operations return; the web layer turns them into 422 pages.
var (
	ErrLineLimit = fmt.Errorf("a cart line holds at most %d", MaxLineQuantity)
	ErrCartFull  = fmt.Errorf("a cart holds at most %d different products", MaxCartLines)
)

// Count is the sum of all quantities.
func (c *Cart) Count() int {
	n := 0
	for _, it := range c.Items {
		n += it.Quantity
	}
	return n
}

// Quantity is how many of a product the cart holds.
func (c *Cart) Quantity(productID int64) int {
	if i := c.index(productID); i >= 0 {
		return c.Items[i].Quantity
	}
	return 0
}

func (c *Cart) index(productID int64) int {
	return slices.IndexFunc(c.Items, func(it CartItem) bool { return it.ProductID == productID })
}

// Add adds quantity of a product. It refuses to take a line past
// MaxLineQuantity or the cart past MaxCartLines, leaving the cart unchanged.
func (c *Cart) Add(productID int64, quantity int) error {
	if quantity < 1 {
		return errors.New("quantity must be at least 1")
	}
	i := c.index(productID)
	if i < 0 {
		if len(c.Items) >= MaxCartLines {
			return ErrCartFull
		}
		if quantity > MaxLineQuantity {
			return ErrLineLimit
		}
		c.Items = append(c.Items, CartItem{ProductID: productID, Quantity: quantity})
		c.Rev++
		return nil
	}
	if c.Items[i].Quantity+quantity > MaxLineQuantity {
		return ErrLineLimit
	}
	c.Items[i].Quantity += quantity
	c.Rev++
	return nil
}

// Set sets a product's quantity; 0 removes the line.
func (c *Cart) Set(productID int64, quantity int) error {
	if quantity < 0 || quantity > MaxLineQuantity {
		return ErrLineLimit
	}
	i := c.index(productID)
	switch {
	case quantity == 0 && i < 0:
		return nil
	case quantity == 0:
		c.Items = slices.Delete(c.Items, i, i+1)
	case i < 0:
		if len(c.Items) >= MaxCartLines {
			return ErrCartFull
		}
		c.Items = append(c.Items, CartItem{ProductID: productID, Quantity: quantity})
	default:
		c.Items[i].Quantity = quantity
	}
	c.Rev++
	return nil
}

// Clear empties the cart (after checkout); the revision keeps counting.
func (c *Cart) Clear() {
	c.Items = nil
	c.Rev++
}

// keyPrint is what a cart keeps of an idempotency key: 72 bits of its
// SHA-256 in 12 characters, a third of the key, which matters in a 4 KB
// cookie; a collision among 32 keys of one cart is out of reach.
func keyPrint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

// HasApplied reports whether the write with this idempotency key is
// already in the cart.
func (c *Cart) HasApplied(key string) bool {
	return key != "" && slices.Contains(c.Applied, keyPrint(key))
}

// MarkApplied records that the write with this idempotency key is in the
// cart, forgetting the oldest key past MaxAppliedKeys. An empty key (a
// client that sends none) records nothing.
func (c *Cart) MarkApplied(key string) {
	if key == "" || c.HasApplied(key) {
		return
	}
	c.Applied = append(c.Applied, keyPrint(key))
	if n := len(c.Applied) - MaxAppliedKeys; n > 0 {
		c.Applied = slices.Delete(c.Applied, 0, n)
	}
}

// Subtract takes lines out of the cart, each line at most down to nothing:
// what a checkout that the cart does not know about yet already ordered.
// It reports whether anything changed.
func (c *Cart) Subtract(lines []CartItem) bool {
	changed := false
	for _, l := range lines {
		if have := c.Quantity(l.ProductID); have > 0 && l.Quantity > 0 {
			c.Set(l.ProductID, max(0, have-l.Quantity)) // in range: cannot fail
			changed = true
		}
	}
	return changed
}

// encodedCart is the stored form. V is the encoding version; Applied came
// later without a new version (an older replica ignores it).
type encodedCart struct {
	V       int        `json:"v"`
	Rev     int        `json:"rev"`
	Items   []CartItem `json:"items"`
	Applied []string   `json:"applied,omitempty"`
}

// EncodeCart returns the stored form of a cart.
func EncodeCart(c Cart) []byte {
	items := c.Items
	if items == nil {
		items = []CartItem{}
	}
	b, err := json.Marshal(encodedCart{V: cartVersion, Rev: c.Rev, Items: items, Applied: c.Applied})
	if err != nil {
		// Marshalling ints and a slice of them cannot fail.
		panic(err)
	}
	return b
}

// DecodeCart reads a stored cart. It refuses unknown versions and carts that
// break the limits, so nothing a store hands back can smuggle in a bad cart.
func DecodeCart(b []byte) (Cart, error) {
	if len(b) == 0 {
		return Cart{}, nil
	}
	var e encodedCart
	if err := json.Unmarshal(b, &e); err != nil {
		return Cart{}, fmt.Errorf("cart: %w", err)
	}
	if e.V != cartVersion {
		return Cart{}, fmt.Errorf("cart: unknown version %d", e.V)
	}
	if len(e.Items) > MaxCartLines {
		return Cart{}, ErrCartFull
	}
	seen := make(map[int64]bool, len(e.Items))
	for _, it := range e.Items {
		if it.ProductID < 1 || it.Quantity < 1 || it.Quantity > MaxLineQuantity || seen[it.ProductID] {
			return Cart{}, fmt.Errorf("cart: bad line %+v", it)
		}
		seen[it.ProductID] = true
	}
	if e.Rev < 0 {
		return Cart{}, fmt.Errorf("cart: bad revision %d", e.Rev)
	}
	if len(e.Applied) > MaxAppliedKeys {
		return Cart{}, fmt.Errorf("cart: %d applied keys, at most %d", len(e.Applied), MaxAppliedKeys)
	}
	for _, k := range e.Applied {
		if len(k) != 12 {
			return Cart{}, fmt.Errorf("cart: bad applied key %q", k)
		}
	}
	if len(e.Items) == 0 {
		e.Items = nil
	}
	if len(e.Applied) == 0 {
		e.Applied = nil
	}
	return Cart{Rev: e.Rev, Items: e.Items, Applied: e.Applied}, nil
}
