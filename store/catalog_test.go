package store

import (
	"errors"
	"testing"
)

func TestProductLookups(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		all, err := d.Products(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range all {
			got, err := d.Product(t.Context(), want.ID)
			if err != nil || got != want {
				t.Errorf("Product(%d) = %+v, %v; want %+v", want.ID, got, err, want)
			}
			got, err = d.ProductBySlug(t.Context(), want.Slug)
			if err != nil || got != want {
				t.Errorf("ProductBySlug(%q) = %+v, %v; want %+v", want.Slug, got, err, want)
			}
		}

		tests := []struct {
			name string
			get  func() (Product, error)
		}{
			{"id 0", func() (Product, error) { return d.Product(t.Context(), 0) }},
			{"id past the end", func() (Product, error) { return d.Product(t.Context(), int64(len(all)+1)) }},
			{"unknown slug", func() (Product, error) { return d.ProductBySlug(t.Context(), "no-such-thing") }},
			{"empty slug", func() (Product, error) { return d.ProductBySlug(t.Context(), "") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if p, err := tt.get(); !errors.Is(err, ErrNotFound) {
					t.Errorf("got %+v, %v; want ErrNotFound", p, err)
				}
			})
		}
	})
}
