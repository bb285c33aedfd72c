package lab

// Review photos: a shopper posts a review with a photo, and the judge asks
// every replica for it. Where the photo lives (uploads=disk: the disk of
// the replica that took it; uploads=s3: the object store) decides who can
// serve it, and whether a replaced replica has lost it.

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// testPhoto is the PNG every reviewing shopper attaches: small, and
// different per shopper so that one photo cannot pass for another.
func testPhoto(name string) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for i, c := range []byte(name) {
		img.Set(i%64, i/64, color.RGBA{c, 255 - c, 128, 255})
	}
	var b bytes.Buffer
	png.Encode(&b, img) // an in-memory image always encodes
	return b.Bytes()
}

// photoKeyAfter finds the key of the photo right after a review's body on
// a product page: the <img src> or the placeholder's data-src.
func photoKeyAfter(page, body string) string {
	i := strings.Index(page, ">"+html.EscapeString(body)+"<")
	if i < 0 {
		return ""
	}
	m := regexp.MustCompile(`/uploads/([a-z2-7]{26}\.(?:jpg|png|webp))`).FindStringSubmatch(page[i:])
	if m == nil {
		return ""
	}
	return m[1]
}

// review posts a review of product with a photo through the load balancer
// (one try: a 5xx is an answer the script judges, not a retry) and finds
// the photo's key on the product page.
func (s *shopper) review(ctx context.Context, product int) error {
	s.arrive(ctx)
	slug, err := s.productSlug(ctx, product)
	if err != nil {
		return err
	}
	photo := testPhoto(s.name)
	body := fmt.Sprintf("%s's photo of product %d", s.name, product)
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("rating", "5")
	w.WriteField("body", body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="photo"; filename="`+s.name+`.png"`)
	h.Set("Content-Type", "image/png")
	part, _ := w.CreatePart(h)
	part.Write(photo)
	w.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/products/"+slug+"/reviews", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, writer, err := s.do(req, fmt.Sprintf("reviews product %d with a photo", product), false)
	if err != nil {
		return fmt.Errorf("%s's review: %w", s.name, err)
	}
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("%s's review: %s, want 303", s.name, resp.Status)
	}
	page, err := s.getPage(ctx, "/products/"+slug)
	if err != nil {
		return err
	}
	key := photoKeyAfter(page, body)
	if key == "" {
		return fmt.Errorf("%s's review: no photo after it on /products/%s", s.name, slug)
	}
	s.mu.Lock()
	s.photo, s.photoKey, s.replica = photo, key, writer
	s.mu.Unlock()
	s.rec.event("%s's review with a photo taken by %s (/uploads/%s)", s.name, writer, key)
	return nil
}

// productSlug is product id's slug, from the JSON of the catalog's page.
func (s *shopper) productSlug(ctx context.Context, product int) (string, error) {
	page, err := s.getPage(ctx, "/")
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`data-product-id="` + strconv.Itoa(product) + `"[^>]*>\s*<a href="/products/([a-z0-9-]+)"`).FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("no product %d in the catalog", product)
	}
	return m[1], nil
}

// getPage GETs a page through the load balancer, recorded like any request.
func (s *shopper) getPage(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return "", err
	}
	start := time.Now()
	at := s.rec.since()
	resp, err := s.client.Do(req)
	q := Request{Shopper: s.name, Action: "opens " + path, At: at, Latency: time.Since(start)}
	if err != nil {
		s.rec.request(q)
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	q.Status, q.Replica = resp.StatusCode, resp.Header.Get("X-Served-By")
	s.rec.request(q)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s %v", path, resp.Status, err)
	}
	return string(b), nil
}

// PhotoLook is what every replica answered for one shopper's photo.
type PhotoLook struct {
	Shopper string
	Key     string
	Writer  string // the replica that took the photo
	// Answers are by replica: "200" with the photo's bytes, "404 names
	// shopN's disk", or another status.
	Answers map[string]string
}

// photoServed and photoMissing are the answers the expectations compare.
const photoServed = "200"

func photoMissing(writer string) string { return "404 names " + writer + "'s disk" }

// String is "shop1 200, shop2 404 names shop1's disk, shop3 404 names
// shop1's disk".
func (p PhotoLook) String() string {
	var names []string
	for name := range p.Answers {
		names = append(names, name)
	}
	slices.Sort(names)
	var parts []string
	for _, name := range names {
		parts = append(parts, name+" "+p.Answers[name])
	}
	return fmt.Sprintf("photo of %s (taken by %s): %s", p.Shopper, p.Writer, strings.Join(parts, ", "))
}

// lookAtPhoto asks the load balancer for the shopper's photo with a
// client of no cookies (round robin, even under sticky routing) until
// every live replica has answered once, or 4 rounds have passed.
func (r *runner) lookAtPhoto(ctx context.Context, s *shopper) PhotoLook {
	s.mu.Lock()
	look := PhotoLook{Shopper: s.name, Key: s.photoKey, Writer: s.replica, Answers: map[string]string{}}
	photo := s.photo
	s.mu.Unlock()
	live := max(r.d.LiveReplicas(), 1)
	client := &http.Client{Transport: r.tr, Timeout: requestTimeout}
	for range 4 * live {
		if len(look.Answers) >= live {
			break
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/uploads/"+look.Key, nil)
		if err != nil {
			break
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		by := resp.Header.Get("X-Served-By")
		switch {
		case by == "":
		case resp.StatusCode == http.StatusOK && bytes.Equal(b, photo):
			look.Answers[by] = photoServed
		case resp.StatusCode == http.StatusOK:
			look.Answers[by] = "200 with other bytes"
		case resp.StatusCode == http.StatusNotFound && bytes.Contains(b, []byte(look.Writer+"&#39;s disk")):
			look.Answers[by] = photoMissing(look.Writer)
		default:
			look.Answers[by] = strconv.Itoa(resp.StatusCode)
		}
	}
	return look
}
