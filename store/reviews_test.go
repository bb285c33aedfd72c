package store

import (
	"errors"
	"testing"
)

func TestReviews(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := openTest(t, b)
		ann := createAccount(t, d, "ann@example.com")
		plain, err := d.AddReview(t.Context(), Review{ProductID: 1, Rating: 4, Body: "good", Replica: "shop1"})
		if err != nil {
			t.Fatal(err)
		}
		photo, err := d.AddReview(t.Context(), Review{ProductID: 1, AccountID: ann.ID, Author: ann.Email, Rating: 5, Body: "with a photo",
			PhotoKey: "k1.jpg", PhotoStore: PhotoDisk, PhotoReplica: "shop2", PhotoWidth: 640, PhotoHeight: 480, Replica: "shop2"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.AddReview(t.Context(), Review{ProductID: 2, Rating: 3, Body: "elsewhere", PhotoKey: "k2.png", PhotoStore: PhotoS3, Replica: "shop1"}); err != nil {
			t.Fatal(err)
		}

		got, err := d.Reviews(t.Context(), 1, 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != photo.ID || got[1].ID != plain.ID {
			t.Fatalf("Reviews(1) = %+v, want the photo review, then the plain one", got)
		}
		g := got[0]
		if g.AccountID != ann.ID || g.Author != ann.Email || g.PhotoKey != "k1.jpg" || g.PhotoStore != PhotoDisk ||
			g.PhotoReplica != "shop2" || g.PhotoWidth != 640 || g.PhotoHeight != 480 || !g.CreatedAt.Equal(photo.CreatedAt) {
			t.Errorf("Reviews(1)[0] = %+v, want %+v", g, photo)
		}
		if got[1].PhotoKey != "" || got[1].AccountID != 0 {
			t.Errorf("Reviews(1)[1] = %+v, want no photo and no account", got[1])
		}
		if got, _ := d.Reviews(t.Context(), 1, 1); len(got) != 1 || got[0].ID != photo.ID {
			t.Errorf("Reviews(1, limit 1) = %+v, want the newest only", got)
		}

		r, err := d.ReviewByPhoto(t.Context(), "k1.jpg")
		if err != nil || r.ID != photo.ID {
			t.Errorf("ReviewByPhoto(k1.jpg) = %+v, %v; want review %d", r, err, photo.ID)
		}
		if _, err := d.ReviewByPhoto(t.Context(), "nope.jpg"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReviewByPhoto(unknown) err = %v, want ErrNotFound", err)
		}
		if n, err := d.PhotosOnDisk(t.Context(), "shop2"); n != 1 || err != nil {
			t.Errorf("PhotosOnDisk(shop2) = %d, %v; want 1", n, err)
		}

		// One object, one review: a key is never referenced twice.
		if _, err := d.AddReview(t.Context(), Review{ProductID: 3, Rating: 1, Body: "copy", PhotoKey: "k1.jpg", PhotoStore: PhotoDisk, Replica: "shop1"}); err == nil {
			t.Error("a second review with the same photo key was stored")
		}
		for _, bad := range []Review{
			{ProductID: 1, Rating: 0, Body: "x", Replica: "shop1"},
			{ProductID: 1, Rating: 6, Body: "x", Replica: "shop1"},
			{ProductID: 1, Rating: 3, Body: "x", PhotoKey: "k3.jpg", PhotoStore: "ftp", Replica: "shop1"},
			{ProductID: 9999, Rating: 3, Body: "no such product", Replica: "shop1"},
		} {
			if _, err := d.AddReview(t.Context(), bad); err == nil {
				t.Errorf("AddReview(%+v) succeeded", bad)
			}
		}
		if n := count(t, d, "SELECT count(*) FROM reviews"); n != 3 {
			t.Errorf("%d reviews, want 3", n)
		}
	})
}
