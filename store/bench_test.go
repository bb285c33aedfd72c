package store

import (
	"strconv"
	"testing"
)

func BenchmarkProducts(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			d, _ := openTest(b, be)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Products(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlaceOrder(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchmarkPlaceOrder(b, be) })
	}
}

func benchmarkPlaceOrder(b *testing.B, be backend) {
	d, _ := openTest(b, be)
	// Enough stock for any b.N.
	if _, err := d.write.ExecContext(b.Context(), "UPDATE products SET stock = 1000000000"); err != nil {
		b.Fatal(err)
	}
	lines := []NewOrderLine{{ProductID: 1, Quantity: 1}, {ProductID: 8, Quantity: 2}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		_, created, err := d.PlaceOrder(b.Context(), NewOrder{
			IdempotencyKey: "bench-" + strconv.Itoa(i), SessionID: "s", Replica: "bench",
			Name: "Ann", Email: "ann@example.com", Address: "1 Main St", Lines: lines,
		})
		if err != nil || !created {
			b.Fatalf("PlaceOrder = %v, %v", created, err)
		}
	}
}
