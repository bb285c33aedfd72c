package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Category groups products on the catalog page. Ids follow the seed order.
type Category struct {
	ID   int64
	Slug string
	Name string
}

// Product is one article with its current stock. The category's slug and name
// come along so that a page needs no second lookup.
type Product struct {
	ID           int64
	Slug         string // names the illustration static/img/products/{Slug}.svg
	Name         string
	Description  string
	PriceCents   int64
	Stock        int
	CategoryID   int64
	CategorySlug string
	CategoryName string
}

const productColumns = `p.id, p.slug, p.name, p.description, p.price_cents, p.stock,
	c.id, c.slug, c.name
	FROM products p JOIN categories c ON c.id = p.category_id`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanProduct(s scanner) (Product, error) {
	var p Product
	err := s.Scan(&p.ID, &p.Slug, &p.Name, &p.Description, &p.PriceCents, &p.Stock,
		&p.CategoryID, &p.CategorySlug, &p.CategoryName)
	return p, err
}

// Categories returns every category in id order.
func (d *DB) Categories(ctx context.Context) (_ []Category, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ []Category, err error) {
		rows, err := d.read.QueryContext(ctx, "SELECT id, slug, name FROM categories ORDER BY id")
		if err != nil {
			return nil, fmt.Errorf("store: categories: %w", err)
		}
		defer rows.Close()
		var cs []Category
		for rows.Next() {
			var c Category
			if err := rows.Scan(&c.ID, &c.Slug, &c.Name); err != nil {
				return nil, fmt.Errorf("store: categories: %w", err)
			}
			cs = append(cs, c)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: categories: %w", err)
		}
		return cs, nil
	})
}

// Products returns every product in id order.
func (d *DB) Products(ctx context.Context) (_ []Product, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ []Product, err error) {
		rows, err := d.read.QueryContext(ctx, "SELECT "+productColumns+" ORDER BY p.id")
		if err != nil {
			return nil, fmt.Errorf("store: products: %w", err)
		}
		defer rows.Close()
		var ps []Product
		for rows.Next() {
			p, err := scanProduct(rows)
			if err != nil {
				return nil, fmt.Errorf("store: products: %w", err)
			}
			ps = append(ps, p)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: products: %w", err)
		}
		return ps, nil
	})
}

// Product returns the product with id, or an error wrapping ErrNotFound.
func (d *DB) Product(ctx context.Context, id int64) (_ Product, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Product, err error) {
		p, err := scanProduct(d.read.QueryRowContext(ctx, d.q("SELECT "+productColumns+" WHERE p.id = ?"), id))
		if errors.Is(err, sql.ErrNoRows) {
			return Product{}, fmt.Errorf("store: product %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return Product{}, fmt.Errorf("store: product %d: %w", id, err)
		}
		return p, nil
	})
}

// ProductBySlug returns the product with slug, or an error wrapping
// ErrNotFound.
func (d *DB) ProductBySlug(ctx context.Context, slug string) (_ Product, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	return retried(ctx, d, func(ctx context.Context) (_ Product, err error) {
		p, err := scanProduct(d.read.QueryRowContext(ctx, d.q("SELECT "+productColumns+" WHERE p.slug = ?"), slug))
		if errors.Is(err, sql.ErrNoRows) {
			return Product{}, fmt.Errorf("store: product %q: %w", slug, ErrNotFound)
		}
		if err != nil {
			return Product{}, fmt.Errorf("store: product %q: %w", slug, err)
		}
		return p, nil
	})
}
