package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Where a review's photo was put (Review.PhotoStore).
const (
	// PhotoDisk: a file on the disk of the replica named in PhotoReplica.
	PhotoDisk = "disk"
	// PhotoS3: an object in the shop's bucket, reachable from every replica.
	PhotoS3 = "s3"
)

// Review is one shopper's review of a product, with an optional photo.
type Review struct {
	ID        int64
	ProductID int64
	AccountID int64  // 0: anonymous
	Author    string // the account's email, or "" for an anonymous shopper
	Rating    int
	Body      string
	// PhotoKey is the photo's key under /uploads/, "" without a photo.
	PhotoKey string
	// PhotoStore is PhotoDisk or PhotoS3.
	PhotoStore string
	// PhotoReplica is the replica whose disk holds a PhotoDisk photo.
	PhotoReplica string
	PhotoWidth   int
	PhotoHeight  int
	// Replica wrote the review.
	Replica   string
	CreatedAt time.Time
}

const reviewColumns = `id, product_id, COALESCE(account_id, 0), author, rating, body,
	COALESCE(photo_key, ''), COALESCE(photo_store, ''), photo_replica, photo_width, photo_height,
	replica, created_at FROM reviews`

func scanReview(row interface{ Scan(...any) error }) (Review, error) {
	var r Review
	var created string
	err := row.Scan(&r.ID, &r.ProductID, &r.AccountID, &r.Author, &r.Rating, &r.Body,
		&r.PhotoKey, &r.PhotoStore, &r.PhotoReplica, &r.PhotoWidth, &r.PhotoHeight,
		&r.Replica, &created)
	if err != nil {
		return r, err
	}
	r.CreatedAt, err = parseTime(created)
	return r, err
}

// AddReview stores a review and returns it with its id and time. The
// photo, if the review has one, must already be where PhotoStore says: a
// review row never points at a photo that was not put.
func (d *DB) AddReview(ctx context.Context, r Review) (_ Review, err error) {
	switch {
	case r.Rating < 1 || r.Rating > 5:
		return Review{}, fmt.Errorf("store: add review: rating %d out of 1..5", r.Rating)
	case r.PhotoKey != "" && r.PhotoStore != PhotoDisk && r.PhotoStore != PhotoS3:
		return Review{}, fmt.Errorf("store: add review: photo store %q", r.PhotoStore)
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	if err := d.checkWritable(); err != nil {
		return Review{}, fmt.Errorf("store: add review: %w", err)
	}
	var account, key, where any // NULL unless set
	if r.AccountID != 0 {
		account = r.AccountID
	}
	if r.PhotoKey != "" {
		key, where = r.PhotoKey, r.PhotoStore
	} else {
		r.PhotoStore, r.PhotoReplica, r.PhotoWidth, r.PhotoHeight = "", "", 0, 0
	}
	r.CreatedAt = now()
	err = d.write.QueryRowContext(ctx, d.q(`INSERT INTO reviews
		(product_id, account_id, author, rating, body, photo_key, photo_store, photo_replica, photo_width, photo_height, replica, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		r.ProductID, account, r.Author, r.Rating, r.Body, key, where, r.PhotoReplica, r.PhotoWidth, r.PhotoHeight,
		r.Replica, formatTime(r.CreatedAt)).Scan(&r.ID)
	if err != nil {
		return Review{}, fmt.Errorf("store: add review: %w", err)
	}
	return r, nil
}

// Reviews returns a product's newest reviews, newest first, at most limit.
func (d *DB) Reviews(ctx context.Context, productID int64, limit int) (_ []Review, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	rows, err := d.read.QueryContext(ctx, d.q("SELECT "+reviewColumns+" WHERE product_id = ? ORDER BY id DESC LIMIT ?"), productID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: reviews of %d: %w", productID, err)
	}
	defer rows.Close()
	var rs []Review
	for rows.Next() {
		r, err := scanReview(rows)
		if err != nil {
			return nil, fmt.Errorf("store: reviews of %d: %w", productID, err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: reviews of %d: %w", productID, err)
	}
	return rs, nil
}

// ReviewByPhoto returns the review whose photo has key, or an error
// wrapping ErrNotFound: a replica that lacks the file asks whose disk it
// is on.
func (d *DB) ReviewByPhoto(ctx context.Context, key string) (_ Review, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	r, err := scanReview(d.read.QueryRowContext(ctx, d.q("SELECT "+reviewColumns+" WHERE photo_key = ?"), key))
	if errors.Is(err, sql.ErrNoRows) {
		return Review{}, fmt.Errorf("store: review with photo %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Review{}, fmt.Errorf("store: review with photo %q: %w", key, err)
	}
	return r, nil
}

// PhotosOnDisk counts the photos the database says are on replica's disk:
// what a kill of that replica with its disk would lose.
func (d *DB) PhotosOnDisk(ctx context.Context, replica string) (_ int, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	defer classify(ctx, &err)
	var n int
	err = d.read.QueryRowContext(ctx, d.q("SELECT COUNT(*) FROM reviews WHERE photo_store = ? AND photo_replica = ?"), PhotoDisk, replica).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: photos on %s's disk: %w", replica, err)
	}
	return n, nil
}
