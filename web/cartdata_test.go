package web

import (
	"errors"
	"strings"
	"testing"
)

func TestCartArithmetic(t *testing.T) {
	var c Cart
	if err := c.Add(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(4, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(1, 3); err != nil {
		t.Fatal(err)
	}
	if got := c.Count(); got != 6 {
		t.Errorf("Count = %d, want 6", got)
	}
	if got := c.Quantity(1); got != 5 {
		t.Errorf("Quantity(1) = %d, want 5", got)
	}
	if err := c.Set(4, 0); err != nil {
		t.Fatal(err)
	}
	if got := len(c.Items); got != 1 {
		t.Errorf("lines after removing = %d, want 1", got)
	}
	if err := c.Set(9, 0); err != nil {
		t.Errorf("removing an absent line: %v", err)
	}
	if err := c.Set(7, 10); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Count(), 15; got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if c.Rev != 5 {
		t.Errorf("Rev = %d, want 5 (one per change)", c.Rev)
	}
	c.Clear()
	if c.Count() != 0 || c.Rev != 6 {
		t.Errorf("after Clear: count %d rev %d", c.Count(), c.Rev)
	}
}

func TestCartLimits(t *testing.T) {
	var c Cart
	if err := c.Add(1, 99); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(1, 1); !errors.Is(err, ErrLineLimit) {
		t.Errorf("adding past 99: %v, want ErrLineLimit", err)
	}
	if c.Quantity(1) != 99 || c.Rev != 1 {
		t.Errorf("a refused add changed the cart: qty %d rev %d", c.Quantity(1), c.Rev)
	}
	if err := c.Add(2, 100); !errors.Is(err, ErrLineLimit) {
		t.Errorf("a new line of 100: %v", err)
	}
	if err := c.Add(2, 0); err == nil {
		t.Error("adding 0 succeeded")
	}
	if err := c.Set(1, 100); !errors.Is(err, ErrLineLimit) {
		t.Errorf("set 100: %v", err)
	}
	if err := c.Set(1, -1); err == nil {
		t.Error("set -1 succeeded")
	}
	var full Cart
	for id := int64(1); id <= MaxCartLines; id++ {
		if err := full.Add(id, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := full.Add(MaxCartLines+1, 1); !errors.Is(err, ErrCartFull) {
		t.Errorf("line %d: %v, want ErrCartFull", MaxCartLines+1, err)
	}
	if err := full.Set(MaxCartLines+1, 1); !errors.Is(err, ErrCartFull) {
		t.Errorf("set line %d: %v, want ErrCartFull", MaxCartLines+1, err)
	}
}

func TestCartCodec(t *testing.T) {
	c := Cart{Rev: 3, Items: []CartItem{{ProductID: 1, Quantity: 2}, {ProductID: 4, Quantity: 1}}}
	b := EncodeCart(c)
	if want := `{"v":1,"rev":3,"items":[{"product_id":1,"quantity":2},{"product_id":4,"quantity":1}]}`; string(b) != want {
		t.Errorf("EncodeCart = %s, want %s", b, want)
	}
	got, err := DecodeCart(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rev != 3 || got.Count() != 3 || len(got.Items) != 2 {
		t.Errorf("round trip: %+v", got)
	}
	if empty := EncodeCart(Cart{}); !strings.Contains(string(empty), `"items":[]`) {
		t.Errorf("empty cart encodes as %s", empty)
	}

	for _, bad := range []string{
		`not json`,
		`{"v":2,"rev":1,"items":[]}`,
		`{"v":1,"rev":-1,"items":[]}`,
		`{"v":1,"rev":1,"items":[{"product_id":0,"quantity":1}]}`,
		`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":100}]}`,
		`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":0}]}`,
		`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":1},{"product_id":1,"quantity":1}]}`,
	} {
		if _, err := DecodeCart([]byte(bad)); err == nil {
			t.Errorf("DecodeCart(%s) accepted a bad cart", bad)
		}
	}
}

func TestReplicaColorClass(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"shop1", "shop2", "shop3", "shop4"} {
		c := replicaColorClass(name)
		if other, dup := seen[c]; dup {
			t.Errorf("%s and %s share colour %s", name, other, c)
		}
		seen[c] = name
		if replicaColorClass(name) != c {
			t.Errorf("%s: colour not stable", name)
		}
	}
	if c := replicaColorClass("web-a"); !strings.HasPrefix(c, "replica-c") {
		t.Errorf("hashed name got %q", c)
	}
}
