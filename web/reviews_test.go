package web_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/state"
	"github.com/statelab/shop/uploads"
	"github.com/statelab/shop/web"
)

// reviewPost is a review form as a browser sends it: multipart, the photo
// last.
type reviewPost struct {
	rating, body string
	photo        []byte // nil: no file chosen (an empty file part, as browsers send)
	filename     string
	contentType  string // the photo part's declared type
}

func (p reviewPost) encode(t *testing.T) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.WriteField("rating", p.rating)
	w.WriteField("body", p.body)
	name, ct := p.filename, p.contentType
	if p.photo != nil && name == "" {
		name = "photo.png"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="photo"; filename=%q`, name))
	h.Set("Content-Type", ct)
	part, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	part.Write(p.photo)
	w.Close()
	return &b, w.FormDataContentType()
}

func (c *client) review(slug string, p reviewPost) *response {
	c.t.Helper()
	body, ct := p.encode(c.t)
	req, _ := http.NewRequest(http.MethodPost, c.base+"/products/"+slug+"/reviews", body)
	req.Header.Set("Content-Type", ct)
	return c.do(req)
}

func pngPhoto(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// photoKey is the key of the first review photo on a product page, from
// its image or its placeholder.
func photoKey(t *testing.T, r *response) string {
	t.Helper()
	src, ok := r.doc.Find(`[data-testid="review-photo"]`).First().Attr("src")
	if !ok {
		src, ok = r.doc.Find(`[data-testid="photo-missing"]`).First().Attr("data-src")
	}
	if !ok {
		t.Fatalf("no review photo on the page:\n%s", r.body)
	}
	return strings.TrimPrefix(src, "/uploads/")
}

// replicaWith starts another replica of ts named name over ts's database
// and memory sessions, keeping photos in photos.
func (ts *testShop) replicaWith(name string, photos web.Photos) *client {
	ts.t.Helper()
	p := ts.parts(session.Memory, name, true)
	p.photos = photos
	hs := httptest.NewServer(ts.newServer(p, ts.db, web.Config{Replica: name}))
	ts.t.Cleanup(hs.Close)
	c := ts.client()
	c.base = hs.URL
	return c
}

func (ts *testShop) reviewCount() int {
	ts.t.Helper()
	var n int
	ps, err := ts.db.Products(ts.t.Context())
	if err != nil {
		ts.t.Fatal(err)
	}
	for _, p := range ps {
		rs, err := ts.db.Reviews(ts.t.Context(), p.ID, 1000)
		if err != nil {
			ts.t.Fatal(err)
		}
		n += len(rs)
	}
	return n
}

// TestReviewPhotoOnDisk: with -uploads DIR a photo is on the disk of the
// replica that took it; that replica serves it (type, ETag, a year of
// caching, 304), another replica's page shows a placeholder and its
// /uploads/ a 404 page naming whose disk the photo is on, and a
// replacement with an empty disk has lost it and says so.
func TestReviewPhotoOnDisk(t *testing.T) {
	shop := newShop(t, session.Memory)
	slug := firstSlug(t, shop)
	dir1 := filepath.Join(t.TempDir(), "shop1-disk")
	disk1, err := uploads.NewDisk(dir1, "shop1")
	if err != nil {
		t.Fatal(err)
	}
	one := shop.replicaWith("shop1", disk1)
	two := shop.replicaWith("shop2", diskPhotos(t, "shop2"))

	photo := pngPhoto(t, 320, 240)
	r := one.review(slug, reviewPost{rating: "4", body: "Sturdy, and the photo shows it.", photo: photo, filename: "mug.png", contentType: "image/png"})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/products/"+slug+"#reviews" {
		t.Fatalf("POST review: %d, Location %q; want 303 to the product page\n%s", r.status, r.header.Get("Location"), r.body)
	}
	page := one.get("/products/" + slug)
	if page.status != http.StatusOK || page.count("review") != 1 {
		t.Fatalf("product page on shop1: %d with %d reviews", page.status, page.count("review"))
	}
	if page.testid("review-author") != "a shopper" || page.testid("review-body") != "Sturdy, and the photo shows it." || page.testid("flash") == "" {
		t.Errorf("review as shown: author %q, body %q, flash %q", page.testid("review-author"), page.testid("review-body"), page.testid("flash"))
	}
	if w, _ := page.doc.Find(`[data-testid="review-photo"]`).Attr("width"); w != "320" {
		t.Errorf("the photo's width attribute is %q, want 320", w)
	}
	key := photoKey(t, page)
	if !uploads.ValidKey(key) || !strings.HasSuffix(key, ".png") {
		t.Fatalf("photo key %q", key)
	}
	if !strings.Contains(page.testid("photos-where"), "shop1's disk") {
		t.Errorf("the form says photos are kept on %q", page.testid("photos-where"))
	}

	got := one.get("/uploads/" + key)
	if got.status != http.StatusOK || got.body != string(photo) {
		t.Fatalf("GET /uploads/%s on shop1: %d, %d bytes; want 200 and the %d put", key, got.status, len(got.body), len(photo))
	}
	etag := got.header.Get("ETag")
	if got.header.Get("Content-Type") != "image/png" || etag == "" || !strings.Contains(got.header.Get("Cache-Control"), "max-age=31536000") {
		t.Errorf("photo headers: %v", got.header)
	}
	req, _ := http.NewRequest(http.MethodGet, one.base+"/uploads/"+key, nil)
	req.Header.Set("If-None-Match", etag)
	if r := one.do(req); r.status != http.StatusNotModified {
		t.Errorf("GET with If-None-Match: %d, want 304", r.status)
	}

	// The inspector pages say where photos live, and what this replica holds.
	if p := one.get("/session").testid("inspector-photos"); !strings.HasPrefix(p, "1 on this replica's disk") {
		t.Errorf("/session on shop1 says of photos %q", p)
	}
	if p := two.get("/cluster").testid("cluster-photos"); !strings.Contains(p, "0 on this replica's disk") {
		t.Errorf("/cluster on shop2 says of photos %q", p)
	}
	var audit struct {
		Loses string
		Kinds []state.Description
	}
	if r := one.get("/api/state"); json.Unmarshal([]byte(r.body), &audit) != nil || !strings.Contains(audit.Loses, "1 photo") ||
		!slices.ContainsFunc(audit.Kinds, func(d state.Description) bool {
			return d.Kind == "uploads" && d.Lives == state.Replica && d.HeldHere == 1 && d.LostIfKilled
		}) {
		t.Errorf("/api/state on shop1: %+v; want 1 photo on this replica, lost if killed", audit)
	}

	// shop2 shares the database but not the disk.
	page2 := two.get("/products/" + slug)
	if page2.status != http.StatusOK || page2.count("review-photo") != 0 || !strings.Contains(page2.testid("photo-missing"), "shop1's disk") {
		t.Errorf("product page on shop2: %d, %d images, placeholder %q; want a placeholder naming shop1's disk", page2.status, page2.count("review-photo"), page2.testid("photo-missing"))
	}
	miss := two.get("/uploads/" + key)
	if miss.status != http.StatusNotFound || !strings.Contains(miss.body, "on shop1&#39;s disk") || !strings.Contains(miss.body, "this is shop2") {
		t.Errorf("GET /uploads/%s on shop2: %d, want a 404 page saying it is on shop1's disk\n%s", key, miss.status, miss.body)
	}
	if cc := miss.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the 404 page's Cache-Control is %q, want no-store", cc)
	}

	// shop1 replaced: same name, an empty disk.
	if err := os.RemoveAll(dir1); err != nil {
		t.Fatal(err)
	}
	fresh := shop.replicaWith("shop1", diskPhotos(t, "shop1"))
	lost := fresh.get("/uploads/" + key)
	if lost.status != http.StatusNotFound || !strings.Contains(lost.body, "replaced with an empty disk") {
		t.Errorf("GET /uploads/%s on the replaced shop1: %d, want a 404 saying the disk was replaced\n%s", key, lost.status, lost.body)
	}
	if p := fresh.get("/products/" + slug); !strings.Contains(p.testid("photo-missing"), "is gone") {
		t.Errorf("the replaced shop1's placeholder says %q", p.testid("photo-missing"))
	}
	for _, path := range []string{"/uploads/" + uploads.NewKey(uploads.JPEG), "/uploads/..%2fshop.db", "/uploads/nothing"} {
		if r := one.get(path); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, r.status)
		}
	}
}

func firstSlug(t *testing.T, ts *testShop) string {
	t.Helper()
	ps, err := ts.db.Products(t.Context())
	if err != nil || len(ps) == 0 {
		t.Fatal(err)
	}
	return ps[0].Slug
}

// webpHeader is the start of a lossless WebP of w×h: all Inspect reads.
func webpHeader(w, h int) []byte {
	d := []byte{0x2f, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(d[1:], uint32(w-1)|uint32(h-1)<<14)
	b := []byte("RIFF\x00\x00\x00\x00WEBPVP8L")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(d)))
	return append(b, d...)
}

// TestReviewBadInput: every refusal names its field, keeps no row and
// leaves no photo on the disk.
func TestReviewBadInput(t *testing.T) {
	shop := newShop(t, session.Memory)
	slug := firstSlug(t, shop)
	dir := filepath.Join(t.TempDir(), "photos")
	disk, err := uploads.NewDisk(dir, "shop1")
	if err != nil {
		t.Fatal(err)
	}
	c := shop.replicaWith("shop1", disk)
	good := pngPhoto(t, 10, 10)
	tests := []struct {
		name   string
		post   reviewPost
		status int
		field  string
	}{
		{"text named like a photo", reviewPost{rating: "5", body: "ok", photo: []byte("not a picture at all, whatever the name"), filename: "cat.jpg", contentType: "image/jpeg"}, 422, "photo"},
		{"gif", reviewPost{rating: "5", body: "ok", photo: []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), filename: "a.gif"}, 422, "photo"},
		{"too many pixels", reviewPost{rating: "5", body: "ok", photo: pngPhoto(t, 4097, 1)}, 422, "photo"},
		{"too many pixels in a webp", reviewPost{rating: "5", body: "ok", photo: webpHeader(4096, 4097), filename: "a.webp"}, 422, "photo"},
		{"no rating", reviewPost{body: "ok", photo: good}, 422, "rating"},
		{"rating 0", reviewPost{rating: "0", body: "ok", photo: good}, 422, "rating"},
		{"rating 6", reviewPost{rating: "6", body: "ok"}, 422, "rating"},
		{"rating x", reviewPost{rating: "x", body: "ok"}, 422, "rating"},
		{"empty body", reviewPost{rating: "3", body: "  ", photo: good}, 422, "body"},
		{"body too long", reviewPost{rating: "3", body: strings.Repeat("é", 2001), photo: good}, 422, "body"},
		{"too big", reviewPost{rating: "3", body: "ok", photo: append(pngPhoto(t, 10, 10), make([]byte, uploads.MaxBytes)...)}, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.review(slug, tt.post)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.status, r.body)
			}
			if tt.field != "" {
				if e := r.testid("error-" + tt.field); !strings.HasPrefix(e, tt.field+" ") {
					t.Errorf("the %s error says %q", tt.field, e)
				}
				if r.count("product") != 1 || r.doc.Find(`textarea[name="body"]`).Text() != strings.TrimSpace(tt.post.body) {
					t.Errorf("422 is not the product page with the form as posted")
				}
			}
		})
	}
	// A valid WebP header is judged by its content: a WebP photo.
	if r := c.review(slug, reviewPost{rating: "5", body: "webp", photo: webpHeader(800, 600), filename: "x.bin"}); r.status != http.StatusSeeOther {
		t.Errorf("a WebP photo: %d, want 303\n%s", r.status, r.body)
	}
	// Not multipart, cross-origin, a field twice.
	if r := c.post("/products/"+slug+"/reviews", url.Values{"rating": {"5"}, "body": {"ok"}}); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("urlencoded review: %d, want 415", r.status)
	}
	body, ct := reviewPost{rating: "5", body: "from elsewhere"}.encode(t)
	req, _ := http.NewRequest(http.MethodPost, c.base+"/products/"+slug+"/reviews", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := c.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site review: %d, want 403", r.status)
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("rating", "5")
	mw.WriteField("rating", "1")
	mw.WriteField("body", "twice")
	mw.Close()
	req, _ = http.NewRequest(http.MethodPost, c.base+"/products/"+slug+"/reviews", &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if r := c.do(req); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.testid("error-rating"), "more than once") {
		t.Errorf("rating twice: %d %q", r.status, r.testid("error-rating"))
	}
	if r := c.review("no-such-product", reviewPost{rating: "5", body: "ok"}); r.status != http.StatusNotFound {
		t.Errorf("review of an unknown product: %d, want 404", r.status)
	}

	if n := shop.reviewCount(); n != 1 {
		t.Errorf("%d reviews stored, want only the WebP one", n)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the disk holds %v, want only the WebP photo", names)
	}
}

// TestReviewTooBigStopsReading: a review announced over the limit is a
// 413 before its body is sent, and the connection closes: the replica
// does not read 6 MiB it will throw away.
func TestReviewTooBigStopsReading(t *testing.T) {
	shop := newShop(t, session.Memory)
	slug := firstSlug(t, shop)
	conn, err := net.Dial("tcp", strings.TrimPrefix(shop.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /products/%s/reviews HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n", slug, 6<<20)
	conn.Write([]byte("--b\r\n")) // and nothing more
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("status %d, close %v; want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
}

// TestReviewAccount: a logged-in review names its account.
func TestReviewAccount(t *testing.T) {
	shop := newShop(t, session.Memory)
	slug := firstSlug(t, shop)
	c := shop.client()
	if r := c.register("rae@example.com", "correct horse battery"); r.status != http.StatusSeeOther {
		t.Fatalf("register: %d", r.status)
	}
	if r := c.review(slug, reviewPost{rating: "2", body: "Too small for me."}); r.status != http.StatusSeeOther {
		t.Fatalf("review: %d\n%s", r.status, r.body)
	}
	page := c.get("/products/" + slug)
	if page.testid("review-author") != "rae@example.com" || page.testid("review-rating") != "★★☆☆☆" || page.count("review-photo")+page.count("photo-missing") != 0 {
		t.Errorf("review shows author %q, rating %q", page.testid("review-author"), page.testid("review-rating"))
	}
}

// TestReviewPhotoInObjectStore: with s3://BUCKET every replica serves every
// photo; a missing object is a 404; with the store down a review with a
// photo is a 503 with Retry-After and keeps nothing, a review without one
// still posts, the product page stays 200 with a placeholder, and all is
// well again once the store is back.
func TestReviewPhotoInObjectStore(t *testing.T) {
	objects := testenv.StartObjectStore(t)
	shop := newShop(t, session.Memory)
	slug := firstSlug(t, shop)
	newS3 := func() *uploads.S3 {
		u, _ := url.Parse(objects.Endpoint())
		s, err := uploads.NewS3(uploads.S3Config{Endpoint: u, AccessKey: testenv.ObjectStoreAccessKey, SecretKey: testenv.ObjectStoreSecretKey, Bucket: "photos"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureBucket(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	one := shop.replicaWith("shop1", newS3())
	two := shop.replicaWith("shop2", newS3())

	photo := pngPhoto(t, 64, 64)
	if r := one.review(slug, reviewPost{rating: "5", body: "Seen from anywhere.", photo: photo}); r.status != http.StatusSeeOther {
		t.Fatalf("POST review: %d\n%s", r.status, r.body)
	}
	key := photoKey(t, two.get("/products/"+slug))
	for _, c := range []*client{one, two} {
		got := c.get("/uploads/" + key)
		if got.status != http.StatusOK || got.body != string(photo) || got.header.Get("Content-Type") != "image/png" || got.header.Get("ETag") == "" {
			t.Errorf("GET /uploads/%s on %s: %d, %d bytes, %v", key, c.base, got.status, len(got.body), got.header)
		}
	}
	if p := two.get("/products/" + slug); p.count("review-photo") != 1 || !strings.Contains(p.testid("photos-where"), "bucket photos") {
		t.Errorf("shop2's page: %d images, photos kept on %q", p.count("review-photo"), p.testid("photos-where"))
	}
	if p := two.get("/session").testid("inspector-photos"); !strings.Contains(p, "bucket photos") {
		t.Errorf("/session says of photos %q", p)
	}
	var audit struct{ Kinds []state.Description }
	if r := one.get("/api/state"); json.Unmarshal([]byte(r.body), &audit) != nil ||
		!slices.ContainsFunc(audit.Kinds, func(d state.Description) bool {
			return d.Kind == "uploads" && d.Lives == state.ObjectStore && d.HeldHere == 0 && !d.LostIfKilled
		}) {
		t.Errorf("/api/state: %+v; want uploads in the object store, none held here", audit)
	}
	if r := two.get("/uploads/" + uploads.NewKey(uploads.PNG)); r.status != http.StatusNotFound {
		t.Errorf("a missing object: %d, want 404", r.status)
	}

	if err := objects.Stop(); err != nil {
		t.Fatal(err)
	}
	before := shop.reviewCount()
	start := time.Now()
	r := one.review(slug, reviewPost{rating: "3", body: "The store is down.", photo: photo})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("review with a photo, store down: %d, Retry-After %q; want 503 with Retry-After\n%s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the 503 took %s", took)
	}
	if n := shop.reviewCount(); n != before {
		t.Errorf("%d reviews after the refused one, want %d", n, before)
	}
	if r := one.review(slug, reviewPost{rating: "4", body: "No photo, no problem."}); r.status != http.StatusSeeOther {
		t.Errorf("review without a photo, store down: %d, want 303", r.status)
	}
	time.Sleep(1100 * time.Millisecond) // the store's health is asked at most once a second
	page := two.get("/products/" + slug)
	if page.status != http.StatusOK || page.count("review") != 2 || !strings.Contains(page.testid("photo-missing"), "not answering") {
		t.Errorf("product page, store down: %d, %d reviews, placeholder %q", page.status, page.count("review"), page.testid("photo-missing"))
	}
	if r := two.get("/uploads/" + key); r.status != http.StatusServiceUnavailable {
		t.Errorf("GET a photo, store down: %d, want 503", r.status)
	}

	if err := objects.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if p := two.get("/products/" + slug); p.count("review-photo") != 1 {
		t.Errorf("the photo is not back on the page once the store is: %q", p.testid("photo-missing"))
	}
	if r := one.review(slug, reviewPost{rating: "3", body: "Back again.", photo: photo}); r.status != http.StatusSeeOther {
		t.Errorf("review with a photo once the store is back: %d", r.status)
	}
	// The bucket holds exactly the photos the rows name.
	entries, _ := os.ReadDir(filepath.Join(objects.Dir(), "photos"))
	var objectsKept []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			objectsKept = append(objectsKept, e.Name())
		}
	}
	if len(objectsKept) != 2 {
		t.Errorf("the bucket holds %v, want the two photos reviews name", objectsKept)
	}
}
