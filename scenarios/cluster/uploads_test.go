package cluster_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"testing"

	"github.com/statelab/shop/scenarios/cluster"
)

// photoSlug is the product the upload tests review.
const photoSlug = "statelab-mug"

var photoKeyRE = regexp.MustCompile(`/uploads/([a-z2-7]{26}\.(?:jpg|png|webp))`)

// pngOfSize is a valid PNG of w×h padded with trailing bytes to n bytes
// (decoders stop at IEND; the shop keeps the bytes as sent).
func pngOfSize(t *testing.T, w, h, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	if b.Len() < n {
		b.Write(make([]byte, n-b.Len()))
	}
	return b.Bytes()
}

// postReview posts a review (with photo when not nil) through base.
func (s *shopper) postReview(body string, photo []byte) reply {
	s.t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("rating", "5")
	w.WriteField("body", body)
	if photo != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="photo"; filename="p.png"`)
		h.Set("Content-Type", "image/png")
		part, _ := w.CreatePart(h)
		part.Write(photo)
	}
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/products/"+photoSlug+"/reviews", &buf)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("POST review: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, servedBy: resp.Header.Get("X-Served-By"), header: resp.Header, body: string(b)}
}

// newestPhoto is the key of the newest review photo on the product page.
func (s *shopper) newestPhoto() string {
	s.t.Helper()
	r := s.get("/products/" + photoSlug)
	m := photoKeyRE.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil {
		s.t.Fatalf("product page: %d, no photo on it", r.status)
	}
	return m[1]
}

// TestUploadsThroughNginx: a review with a photo posted through nginx, read
// back through every replica, and the writer replaced by kill -9 and an
// empty disk: on disk the photo was only ever on the writer and is then
// lost, with a 404 naming whose disk it was on; in the object store
// (versitygw) every replica serves it before and after. Photos near the
// 5 MiB limit pass nginx; past it is a 413.
func TestUploadsThroughNginx(t *testing.T) {
	for _, uploads := range []string{cluster.UploadsDisk, cluster.UploadsS3} {
		t.Run(uploads, func(t *testing.T) {
			t.Parallel()
			c := cluster.StartT(t, cluster.Options{Replicas: 2, Store: "memory", Uploads: uploads})
			s := newShopper(t, c.URL())
			photo := pngOfSize(t, 800, 600, 5<<20-4<<10) // just under 5 MiB with the form
			r := s.postReview("A big photo of a mug.", photo)
			if r.status != http.StatusSeeOther {
				t.Fatalf("POST review through nginx: %d\n%s", r.status, r.body)
			}
			writer := r.servedBy
			key := s.newestPhoto()

			serves := func(when string, want map[string]bool) {
				t.Helper()
				for _, rep := range c.Replicas() {
					direct := newShopper(t, rep.URL())
					got := direct.get("/uploads/" + key)
					switch {
					case want[rep.Name()] && (got.status != http.StatusOK || got.body != string(photo)):
						t.Errorf("%s: %s serves the photo with %d, %d bytes; want 200 and the %d posted", when, rep.Name(), got.status, len(got.body), len(photo))
					case !want[rep.Name()] && got.status != http.StatusNotFound:
						t.Errorf("%s: %s answers %d, want 404", when, rep.Name(), got.status)
					case !want[rep.Name()] && !strings.Contains(got.body, writer+"&#39;s disk"):
						t.Errorf("%s: %s's 404 does not say the photo is on %s's disk:\n%s", when, rep.Name(), writer, got.body)
					}
				}
			}
			all := map[string]bool{}
			for _, rep := range c.Replicas() {
				all[rep.Name()] = true
			}
			if uploads == cluster.UploadsDisk {
				serves("after the post", map[string]bool{writer: true})
			} else {
				serves("after the post", all)
			}

			if err := c.ReplaceReplica(t.Context(), writer); err != nil {
				t.Fatal(err)
			}
			if uploads == cluster.UploadsDisk {
				serves(fmt.Sprintf("after %s was replaced", writer), map[string]bool{})
			} else {
				serves(fmt.Sprintf("after %s was replaced", writer), all)
			}

			if r := s.postReview("Too big.", pngOfSize(t, 10, 10, 5<<20+1)); r.status != http.StatusRequestEntityTooLarge {
				t.Errorf("a photo over 5 MiB through nginx: %d, want 413", r.status)
			}
			if uploads != cluster.UploadsS3 {
				return
			}
			// The object store goes away: photos are refused, reviews
			// without one and pages are not.
			if err := c.ObjectStore().Stop(); err != nil {
				t.Fatal(err)
			}
			if r := s.postReview("Store down.", pngOfSize(t, 10, 10, 0)); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
				t.Errorf("a photo with the object store down: %d, Retry-After %q; want 503 with it", r.status, r.header.Get("Retry-After"))
			}
			if r := s.postReview("Words only.", nil); r.status != http.StatusSeeOther {
				t.Errorf("a review without a photo with the object store down: %d, want 303", r.status)
			}
			if r := s.get("/products/" + photoSlug); r.status != http.StatusOK || strings.Contains(r.body, "Store down.") {
				t.Errorf("product page with the object store down: %d (the refused review must not be on it)", r.status)
			}
		})
	}
}
