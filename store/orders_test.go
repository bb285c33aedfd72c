package store

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"testing"
)

func stock(t testing.TB, d *DB, id int64) int {
	t.Helper()
	p, err := d.Product(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p.Stock
}

func allStock(t testing.TB, d *DB) map[int64]int {
	t.Helper()
	ps, err := d.Products(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int64]int, len(ps))
	for _, p := range ps {
		m[p.ID] = p.Stock
	}
	return m
}

func createAccount(t testing.TB, d *DB, email string) Account {
	t.Helper()
	a, err := d.CreateAccount(t.Context(), email, []byte("hash of "+email))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// equalOrders compares orders field by field, times with Equal. StockLeft
// is what one PlaceOrder saw, not part of the stored order: not compared.
func equalOrders(a, b Order) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt = b.CreatedAt
	a.StockLeft, b.StockLeft = nil, nil
	return reflect.DeepEqual(a, b)
}

var orderIDPattern = regexp.MustCompile(`^[a-z2-7]{16}$`)

func TestPlaceOrderDecrementsStockAndSnapshotsPrices(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		p1, _ := d.Product(t.Context(), 1)
		p7, _ := d.Product(t.Context(), 7)
		before := allStock(t, d)

		o, created, err := d.PlaceOrder(t.Context(), NewOrder{
			IdempotencyKey: "k1", SessionID: "s1", Replica: "shop2",
			Name: "Ann", Email: "ann@example.com", Address: "1 Main St",
			Lines: []NewOrderLine{{ProductID: 1, Quantity: 2}, {ProductID: 7, Quantity: 1}, {ProductID: 1, Quantity: 3}},
		})
		if err != nil || !created {
			t.Fatalf("PlaceOrder = created %v, err %v; want true, nil", created, err)
		}
		if !orderIDPattern.MatchString(o.ID) {
			t.Errorf("order id %q, want 16 lowercase base32 characters", o.ID)
		}
		wantLines := []OrderLine{
			{ProductID: 1, Slug: p1.Slug, Name: p1.Name, Quantity: 2, PriceCents: p1.PriceCents},
			{ProductID: 7, Slug: p7.Slug, Name: p7.Name, Quantity: 1, PriceCents: p7.PriceCents},
			{ProductID: 1, Slug: p1.Slug, Name: p1.Name, Quantity: 3, PriceCents: p1.PriceCents},
		}
		if !reflect.DeepEqual(o.Lines, wantLines) {
			t.Errorf("lines = %+v, want %+v", o.Lines, wantLines)
		}
		if want := 5*p1.PriceCents + p7.PriceCents; o.TotalCents != want {
			t.Errorf("total = %d, want %d", o.TotalCents, want)
		}
		if o.CreatedAt.IsZero() || o.Replica != "shop2" || o.SessionID != "s1" || o.AccountID != 0 {
			t.Errorf("order header = %+v", o)
		}

		after := allStock(t, d)
		for id, n := range before {
			want := n
			switch id {
			case 1:
				want -= 5
			case 7:
				want--
			}
			if after[id] != want {
				t.Errorf("stock of product %d = %d, want %d", id, after[id], want)
			}
		}
		if want := map[int64]int{1: after[1], 7: after[7]}; !reflect.DeepEqual(o.StockLeft, want) {
			t.Errorf("StockLeft = %v, want %v (what the order left)", o.StockLeft, want)
		}

		// A price change later must not change what the customer paid.
		if _, err := d.write.ExecContext(t.Context(),
			"UPDATE products SET price_cents = price_cents * 2, name = 'Renamed' WHERE id IN (1, 7)"); err != nil {
			t.Fatal(err)
		}
		got, err := d.Order(t.Context(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !equalOrders(got, o) {
			t.Errorf("Order(%s) = %+v, want %+v", o.ID, got, o)
		}
	})
}

func TestPlaceOrderOutOfStockChangesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		tent, _ := d.ProductBySlug(t.Context(), "trail-tent")
		tests := []struct {
			name  string
			lines []NewOrderLine
			want  OutOfStockError
		}{
			{
				name:  "one line too many",
				lines: []NewOrderLine{{ProductID: 1, Quantity: 2}, {ProductID: tent.ID, Quantity: tent.Stock + 1}},
				want:  OutOfStockError{ProductID: tent.ID, Name: tent.Name, Available: tent.Stock, Requested: tent.Stock + 1},
			},
			{
				name:  "lines of one product add up to too many",
				lines: []NewOrderLine{{ProductID: tent.ID, Quantity: tent.Stock}, {ProductID: 2, Quantity: 1}, {ProductID: tent.ID, Quantity: 1}},
				want:  OutOfStockError{ProductID: tent.ID, Name: tent.Name, Available: tent.Stock, Requested: tent.Stock + 1},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := allStock(t, d)
				_, created, err := d.PlaceOrder(t.Context(), NewOrder{
					IdempotencyKey: "oos", SessionID: "s1", Lines: tt.lines,
				})
				if !errors.Is(err, ErrOutOfStock) || created {
					t.Fatalf("PlaceOrder = created %v, err %v; want ErrOutOfStock", created, err)
				}
				var oos *OutOfStockError
				if !errors.As(err, &oos) || *oos != tt.want {
					t.Errorf("error %v, want %+v", err, tt.want)
				}
				if after := allStock(t, d); !reflect.DeepEqual(after, before) {
					t.Errorf("stock changed by a refused order:\n%v\nwant\n%v", after, before)
				}
				if n := count(t, d, "SELECT count(*) FROM orders"); n != 0 {
					t.Errorf("%d orders after a refusal, want 0", n)
				}
				if n := count(t, d, "SELECT count(*) FROM order_lines"); n != 0 {
					t.Errorf("%d order lines after a refusal, want 0", n)
				}
			})
		}

		// A refusal does not use up the key: the customer fixes the cart and
		// submits the same form again.
		_, created, err := d.PlaceOrder(t.Context(), NewOrder{
			IdempotencyKey: "oos", SessionID: "s1",
			Lines: []NewOrderLine{{ProductID: tent.ID, Quantity: tent.Stock}},
		})
		if err != nil || !created {
			t.Fatalf("retry after refusal = created %v, err %v", created, err)
		}
		if n := stock(t, d, tent.ID); n != 0 {
			t.Errorf("stock after buying all = %d, want 0", n)
		}
	})
}

func TestPlaceOrderReplay(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ann := createAccount(t, d, "ann@example.com")
		bob := createAccount(t, d, "bob@example.com")
		anon := func(session string) NewOrder { return NewOrder{SessionID: session} }
		acct := func(id int64, session string) NewOrder { return NewOrder{SessionID: session, AccountID: id} }

		tests := []struct {
			name          string
			first, replay NewOrder
			conflict      bool
		}{
			{"same session", anon("s1"), anon("s1"), false},
			{"other session", anon("s1"), anon("s2"), true},
			{"same account, other session", acct(ann.ID, "s1"), acct(ann.ID, "s2"), false},
			{"other account", acct(ann.ID, "s1"), acct(bob.ID, "s1"), true},
			{"account, then anonymous with the same session", acct(ann.ID, "s1"), anon("s1"), true},
			{"anonymous, then an account with the same session", anon("s1"), acct(ann.ID, "s1"), true},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := fmt.Sprintf("key-%d", i)
				first, replay := tt.first, tt.replay
				first.IdempotencyKey, replay.IdempotencyKey = key, key
				first.Lines = []NewOrderLine{{ProductID: 4, Quantity: 2}}
				// The replay's body does not matter: the first order stands.
				replay.Lines = []NewOrderLine{{ProductID: 5, Quantity: 9}}

				placed, created, err := d.PlaceOrder(t.Context(), first)
				if err != nil || !created {
					t.Fatalf("first PlaceOrder = created %v, err %v", created, err)
				}
				before := allStock(t, d)
				orders := count(t, d, "SELECT count(*) FROM orders")

				got, created, err := d.PlaceOrder(t.Context(), replay)
				switch {
				case tt.conflict:
					if !errors.Is(err, ErrIdempotencyConflict) || created || got.ID != "" {
						t.Errorf("replay = %+v, created %v, err %v; want ErrIdempotencyConflict and no order", got, created, err)
					}
				default:
					if err != nil || created || !equalOrders(got, placed) {
						t.Errorf("replay = %+v, created %v, err %v; want %+v, false, nil", got, created, err, placed)
					}
				}
				if after := allStock(t, d); !reflect.DeepEqual(after, before) {
					t.Error("a replay changed stock")
				}
				if n := count(t, d, "SELECT count(*) FROM orders"); n != orders {
					t.Errorf("a replay changed the order count from %d to %d", orders, n)
				}
			})
		}
	})
}

// TestPlaceOrderUniqueKeyDecides skips the snapshot look-up that normally
// answers a replay, as happens when another process commits the key between
// that look-up and the write: the UNIQUE constraint must then decide.
func TestPlaceOrderUniqueKeyDecides(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		first := NewOrder{IdempotencyKey: "k", SessionID: "s1", Lines: []NewOrderLine{{ProductID: 1, Quantity: 1}}}
		placed, _, err := d.PlaceOrder(t.Context(), first)
		if err != nil {
			t.Fatal(err)
		}
		before := allStock(t, d)

		got, created, err := d.insertOrder(t.Context(), first)
		if err != nil || created || !equalOrders(got, placed) {
			t.Errorf("insertOrder(same owner) = %+v, %v, %v; want the first order, false, nil", got, created, err)
		}
		other := first
		other.SessionID = "s2"
		if _, _, err := d.insertOrder(t.Context(), other); !errors.Is(err, ErrIdempotencyConflict) {
			t.Errorf("insertOrder(other owner) err = %v, want ErrIdempotencyConflict", err)
		}
		if after := allStock(t, d); !reflect.DeepEqual(after, before) {
			t.Error("a losing insert changed stock")
		}
		if n := count(t, d, "SELECT count(*) FROM orders"); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
	})
}

// TestPlaceOrderSameKeyRace is the in-process cousin of
// TestConcurrentProcesses: replicas with their own handles submit one key at
// once.
func TestPlaceOrderSameKeyRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const replicas = 6
		path := b.newDSN(t)
		dbs := make([]*DB, replicas)
		for i := range dbs {
			dbs[i] = openPath(t, path)
		}
		before := stock(t, dbs[0], 2)
		for _, d := range dbs {
			// Warm each read pool, so that every replica reaches its look-up
			// of the key before the first one can commit it.
			if err := d.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
		}

		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			orders  = make([]Order, replicas)
			created = make([]bool, replicas)
			errs    = make([]error, replicas)
		)
		for i, d := range dbs {
			wg.Go(func() {
				<-start
				orders[i], created[i], errs[i] = d.PlaceOrder(t.Context(), NewOrder{
					IdempotencyKey: "same", SessionID: "s1", Replica: fmt.Sprint("shop", i),
					Lines: []NewOrderLine{{ProductID: 2, Quantity: 3}},
				})
			})
		}
		close(start)
		wg.Wait()

		n := 0
		for i := range dbs {
			if errs[i] != nil {
				t.Fatalf("replica %d: %v", i, errs[i])
			}
			if created[i] {
				n++
			}
			if orders[i].ID != orders[0].ID {
				t.Errorf("replica %d got order %s, replica 0 got %s", i, orders[i].ID, orders[0].ID)
			}
		}
		if n != 1 {
			t.Errorf("%d replicas created the order, want 1", n)
		}
		if got := stock(t, dbs[0], 2); got != before-3 {
			t.Errorf("stock = %d, want %d (decremented once)", got, before-3)
		}
	})
}

func TestPlaceOrderRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		lines := []NewOrderLine{{ProductID: 1, Quantity: 1}}
		tests := []struct {
			name     string
			order    NewOrder
			notFound bool // else a plain validation error
		}{
			{"unknown product", NewOrder{IdempotencyKey: "k", SessionID: "s", Lines: []NewOrderLine{{ProductID: 1, Quantity: 1}, {ProductID: 9999, Quantity: 1}}}, true},
			{"unknown account", NewOrder{IdempotencyKey: "k", SessionID: "s", AccountID: 4242, Lines: lines}, true},
			{"no lines", NewOrder{IdempotencyKey: "k", SessionID: "s"}, false},
			{"zero quantity", NewOrder{IdempotencyKey: "k", SessionID: "s", Lines: []NewOrderLine{{ProductID: 1, Quantity: 0}}}, false},
			{"negative quantity", NewOrder{IdempotencyKey: "k", SessionID: "s", Lines: []NewOrderLine{{ProductID: 1, Quantity: 2}, {ProductID: 2, Quantity: -1}}}, false},
			{"absurd quantity", NewOrder{IdempotencyKey: "k", SessionID: "s", Lines: []NewOrderLine{{ProductID: 1, Quantity: maxLineQuantity + 1}}}, false},
			{"no key", NewOrder{SessionID: "s", Lines: lines}, false},
			{"no owner", NewOrder{IdempotencyKey: "k", Lines: lines}, false},
		}
		before := allStock(t, d)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				o, created, err := d.PlaceOrder(t.Context(), tt.order)
				if err == nil || created || o.ID != "" {
					t.Fatalf("PlaceOrder = %+v, %v, %v; want an error", o, created, err)
				}
				if errors.Is(err, ErrNotFound) != tt.notFound {
					t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
				}
				if errors.Is(err, ErrOutOfStock) || errors.Is(err, ErrIdempotencyConflict) {
					t.Errorf("err %v matches the wrong sentinel", err)
				}
			})
		}
		if after := allStock(t, d); !reflect.DeepEqual(after, before) {
			t.Error("refused orders changed stock")
		}
		if n := count(t, d, "SELECT count(*) FROM orders"); n != 0 {
			t.Errorf("%d orders after refusals, want 0", n)
		}
	})
}

func TestOrderNotFound(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		if _, err := d.Order(t.Context(), "aaaaaaaaaaaaaaaa"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Order(unknown) err = %v, want ErrNotFound", err)
		}
	})
}

func TestOrdersByAccount(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ann := createAccount(t, d, "ann@example.com")
		bob := createAccount(t, d, "bob@example.com")
		place := func(key string, account int64, product int64) Order {
			t.Helper()
			o, _, err := d.PlaceOrder(t.Context(), NewOrder{
				IdempotencyKey: key, SessionID: "s-" + key, AccountID: account,
				Name: "N", Email: "e@example.com", Address: "A",
				Lines: []NewOrderLine{{ProductID: product, Quantity: 1}, {ProductID: 20, Quantity: 2}},
			})
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
		var want []Order
		for i := range 3 {
			want = append([]Order{place(fmt.Sprint("ann", i), ann.ID, int64(i+1))}, want...)
			place(fmt.Sprint("bob", i), bob.ID, 9)
			place(fmt.Sprint("anon", i), 0, 9)
		}

		got, err := d.OrdersByAccount(t.Context(), ann.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d orders, want %d", len(got), len(want))
		}
		for i := range want {
			if !equalOrders(got[i], want[i]) {
				t.Errorf("order %d = %+v, want %+v (newest first)", i, got[i], want[i])
			}
		}

		none := createAccount(t, d, "new@example.com")
		if got, err := d.OrdersByAccount(t.Context(), none.ID); err != nil || len(got) != 0 {
			t.Errorf("OrdersByAccount(no orders) = %v, %v; want none", got, err)
		}
	})
}

func TestOrderIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newOrderID()
		if !orderIDPattern.MatchString(id) {
			t.Fatalf("order id %q, want 16 lowercase base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("order id %q twice", id)
		}
		seen[id] = true
	}
}

func TestOrderByKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db, _ := openTest(t, b)
		o, created, err := db.PlaceOrder(ctx, NewOrder{
			IdempotencyKey: "key-by-key-0001", SessionID: "s1", Replica: "shop1",
			Name: "Ada", Email: "ada@example.com", Address: "1 Main Street",
			Lines: []NewOrderLine{{ProductID: 2, Quantity: 1}},
		})
		if err != nil || !created {
			t.Fatalf("PlaceOrder: %v created=%v", err, created)
		}
		got, err := db.OrderByKey(ctx, "key-by-key-0001")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != o.ID || len(got.Lines) != 1 || got.Lines[0].ProductID != 2 {
			t.Errorf("OrderByKey = %+v, want order %s", got, o.ID)
		}
		if _, err := db.OrderByKey(ctx, "no-such-key-000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown key: %v, want ErrNotFound", err)
		}
	})
}
