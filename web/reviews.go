package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/statelab/shop/state"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
	"github.com/statelab/shop/uploads"
)

// Photos is what the web layer needs of the review photo store: a
// directory of this replica's disk (uploads.Disk) or a bucket
// (uploads.S3).
type Photos interface {
	// Kind is uploads.KindDisk or uploads.KindS3.
	Kind() string
	// Where says where the photos are, in a phrase for pages.
	Where() string
	// Put keeps a photo under key, or leaves nothing under it:
	// uploads.ErrTooBig past uploads.MaxBytes, uploads.ErrUnavailable
	// when the store cannot take it, uploads.ErrBusy when too many
	// uploads are in flight.
	Put(ctx context.Context, key, contentType string, r io.Reader) error
	// Open returns the photo and its size, uploads.ErrNotFound when this
	// replica has no such photo.
	Open(ctx context.Context, key string) (io.ReadCloser, int64, error)
	// Status says whether this replica can serve key's photo now.
	Status(ctx context.Context, key string) error
	// Delete removes a photo that no review will name.
	Delete(ctx context.Context, key string) error
	// Describe is the photos' entry in the state audit.
	Describe(ctx context.Context) state.Description
}

// Review form limits.
const (
	maxReviewBody = 2000
	// ReviewsShown is how many of a product's newest reviews its page lists.
	ReviewsShown = 20
	// MaxReviewBytes caps a review's request: a photo, the two fields and
	// the multipart framing. More is a 413 before the photo is judged.
	MaxReviewBytes = uploads.MaxBytes + 64<<10
	// DefaultUploadTimeout is how long a review with a photo may take to
	// arrive and be kept; see Config.UploadTimeout.
	DefaultUploadTimeout = 20 * time.Second
)

// isReviewPost reports whether r posts a review, whose body may carry a
// photo: it gets MaxReviewBytes and the upload timeout instead of the
// limits of every other form. It runs before the mux has matched the
// route, hence the path test.
func isReviewPost(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	slug, ok := strings.CutPrefix(r.URL.Path, "/products/")
	if !ok {
		return false
	}
	slug, ok = strings.CutSuffix(slug, "/reviews")
	return ok && validSlug(slug)
}

// reviewForm is the review form as posted.
type reviewForm struct {
	rating, body string
	seen         map[string]bool
	errors       map[string]string
}

// handleReviewAdd posts a review, with a photo when one is attached, and
// answers 303 back to the product page. The photo is judged by its content
// (uploads.Inspect) as it streams in, kept under a fresh random key, and
// only then is the review's row written; any failure after the photo was
// kept removes it, so no row names a photo that is not there and no photo
// stays that no row names.
func (s *Server) handleReviewAdd(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	cat, err := s.catalog.load(ctx)
	if err != nil {
		return err
	}
	slug := r.PathValue("slug")
	cached, ok := cat.bySlug[slug]
	if !ok {
		return notFound("There is no product %q.", slug)
	}
	info, err := s.session(ctx)
	if err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		return &Error{Status: http.StatusUnsupportedMediaType, Message: "send the review as multipart/form-data"}
	}
	if r.ContentLength > MaxReviewBytes {
		// Refused before a byte of it is read; the connection closes.
		w.Header().Set("Connection", "close")
		return &http.MaxBytesError{Limit: MaxReviewBytes}
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Message: "the multipart form could not be read: " + err.Error()}
	}

	f := reviewForm{seen: map[string]bool{}, errors: map[string]string{}}
	var kept *keptPhoto
	defer func() {
		if kept != nil {
			// Not referenced by any row: remove it, whatever ended the
			// request (a deadline of its own bounds this).
			s.photos.Delete(context.WithoutCancel(ctx), kept.key)
		}
	}()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return bodyError(err)
		}
		name := part.FormName()
		if f.seen[name] {
			f.errors[name] = "is given more than once"
			continue
		}
		f.seen[name] = true
		switch name {
		case "rating":
			f.rating, err = readField(part, 20)
		case "body":
			f.body, err = readField(part, maxReviewBody*utf8.UTFMax)
		case "photo":
			kept, err = s.keepPhoto(ctx, part, &f)
		}
		part.Close()
		if err != nil {
			if errors.Is(err, uploads.ErrTooBig) || errors.As(err, new(*http.MaxBytesError)) {
				// Stop reading: the rest of the body is not wanted.
				w.Header().Set("Connection", "close")
			}
			return err
		}
	}
	rating := f.check()
	if len(f.errors) > 0 {
		return s.renderReviewErrors(w, r, cached.ID, f)
	}
	rev := store.Review{ProductID: cached.ID, AccountID: info.AccountID, Author: info.AccountEmail,
		Rating: rating, Body: f.body, Replica: s.cfg.Replica}
	if kept != nil {
		rev.PhotoKey, rev.PhotoWidth, rev.PhotoHeight = kept.key, kept.img.Width, kept.img.Height
		rev.PhotoStore = store.PhotoS3
		if s.photos.Kind() == uploads.KindDisk {
			rev.PhotoStore, rev.PhotoReplica = store.PhotoDisk, s.cfg.Replica
		}
	}
	if _, err := s.db.AddReview(ctx, rev); err != nil {
		return err
	}
	kept = nil // the row names it now
	s.setFlash(w, r, "reviewed")
	http.Redirect(w, r, "/products/"+slug+"#reviews", http.StatusSeeOther)
	return nil
}

// keptPhoto is a photo put under key while the form is still being read.
type keptPhoto struct {
	key string
	img uploads.Image
}

// keepPhoto judges the photo part and keeps it. An empty part (a form sent
// without a file) is no photo; what is not an image, or too many pixels,
// is a field error and keeps nothing; the store's failures are errors.
func (s *Server) keepPhoto(ctx context.Context, part io.Reader, f *reviewForm) (*keptPhoto, error) {
	counted := &countingReader{r: part}
	img, photo, err := uploads.Inspect(counted)
	switch {
	case err != nil && counted.n == 0 && counted.err == io.EOF:
		return nil, nil // no file chosen
	case errors.Is(err, uploads.ErrNotImage):
		if counted.err != nil && counted.err != io.EOF {
			return nil, bodyError(counted.err) // the body broke, not the image
		}
		f.errors["photo"] = "must be a JPEG, PNG or WebP image (judged by its content, not its name): " + strings.TrimPrefix(err.Error(), uploads.ErrNotImage.Error()+": ")
		return nil, nil
	case err != nil:
		return nil, bodyError(err)
	case img.Width > uploads.MaxSide || img.Height > uploads.MaxSide:
		f.errors["photo"] = fmt.Sprintf("is %d×%d pixels; at most %d×%d", img.Width, img.Height, uploads.MaxSide, uploads.MaxSide)
		return nil, nil
	}
	key := uploads.NewKey(img.Format)
	putCtx, cancel := context.WithTimeout(ctx, s.cfg.UploadTimeout)
	defer cancel()
	if err := s.photos.Put(putCtx, key, img.Format.ContentType, photo); err != nil {
		if errors.Is(err, uploads.ErrTooBig) || errors.Is(err, uploads.ErrUnavailable) || errors.Is(err, uploads.ErrBusy) {
			return nil, err
		}
		return nil, bodyError(err)
	}
	return &keptPhoto{key: key, img: img}, nil
}

// countingReader counts what was read and keeps the first error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// readField reads a text part of at most max bytes.
func readField(part io.Reader, max int) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, int64(max)+1))
	if err != nil {
		return "", bodyError(err)
	}
	if len(b) > max {
		return string(b[:max]), nil // check() counts and refuses it
	}
	return string(b), nil
}

// check validates the fields, filling errors, and returns the rating.
func (f *reviewForm) check() int {
	f.body = strings.TrimSpace(f.body)
	if _, bad := f.errors["rating"]; !bad {
		if strings.TrimSpace(f.rating) == "" {
			f.errors["rating"] = "is required: from 1 to 5 stars"
		} else if _, err := parseBounded("rating", strings.TrimSpace(f.rating), 1, 5); err != nil {
			f.errors["rating"] = err.(*Error).Message
		}
	}
	if _, bad := f.errors["body"]; !bad {
		switch {
		case !utf8.ValidString(f.body):
			f.errors["body"] = "is not valid UTF-8"
		case f.body == "":
			f.errors["body"] = "is required: say something about it"
		case utf8.RuneCountInString(f.body) > maxReviewBody:
			f.errors["body"] = fmt.Sprintf("must be at most %d characters, not %d", maxReviewBody, utf8.RuneCountInString(f.body))
		}
	}
	if len(f.errors) > 0 {
		return 0
	}
	n, _ := parseBounded("rating", strings.TrimSpace(f.rating), 1, 5)
	return int(n)
}

// renderReviewErrors re-renders the product page with the form's errors: 422.
func (s *Server) renderReviewErrors(w http.ResponseWriter, r *http.Request, id int64, f reviewForm) error {
	p, err := s.db.Product(r.Context(), id)
	if err != nil {
		return err
	}
	v, err := s.productPage(r, &p)
	if err != nil {
		return err
	}
	v.ReviewForm = templates.ReviewForm{Rating: truncate(strings.TrimSpace(f.rating), 20), Body: truncate(f.body, maxReviewBody*utf8.UTFMax), Errors: f.errors}
	s.render(w, r, http.StatusUnprocessableEntity, templates.ProductPage(v))
	return nil
}

// productPage is the product page's view: the product, its newest
// reviews, and where their photos live.
func (s *Server) productPage(r *http.Request, p *store.Product) (templates.ProductView, error) {
	v := templates.ProductView{Product: productView(p), Quantity: "1", AddKey: randomToken(16), PhotosWhere: s.photos.Where()}
	reviews, err := s.db.Reviews(r.Context(), p.ID, ReviewsShown)
	if err != nil {
		return v, err
	}
	for i := range reviews {
		v.Reviews = append(v.Reviews, s.reviewView(r.Context(), &reviews[i]))
	}
	v.Page = s.page(r, p.Name)
	return v, nil
}

func (s *Server) reviewView(ctx context.Context, rev *store.Review) templates.Review {
	v := templates.Review{
		Author: rev.Author,
		Rating: rev.Rating,
		Stars:  strings.Repeat("★", rev.Rating) + strings.Repeat("☆", 5-rev.Rating),
		Body:   rev.Body,
		When:   rev.CreatedAt.Format("2 Jan 2006 15:04 UTC"),
	}
	if v.Author == "" {
		v.Author = "a shopper"
	}
	if rev.PhotoKey != "" {
		v.Photo = &templates.ReviewPhoto{URL: "/uploads/" + rev.PhotoKey, Width: rev.PhotoWidth, Height: rev.PhotoHeight,
			Missing: s.photoMissing(ctx, rev)}
	}
	return v
}

// photoMissing says why this replica cannot serve a review's photo, or ""
// when it can: the page shows a placeholder saying so instead of an image
// that would not load.
func (s *Server) photoMissing(ctx context.Context, rev *store.Review) string {
	mine := s.photos.Kind() == uploads.KindDisk
	switch {
	case rev.PhotoStore == store.PhotoDisk && (!mine || rev.PhotoReplica != s.cfg.Replica):
		return fmt.Sprintf("on %s's disk; %s does not have it.", rev.PhotoReplica, s.cfg.Replica)
	case rev.PhotoStore == store.PhotoS3 && mine:
		return fmt.Sprintf("in an object store, which %s does not use.", s.cfg.Replica)
	}
	err := s.photos.Status(ctx, rev.PhotoKey)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, uploads.ErrNotFound) && mine:
		return fmt.Sprintf("was on %s's disk and is gone: this replica was replaced with an empty disk.", rev.PhotoReplica)
	case errors.Is(err, uploads.ErrNotFound):
		return "the object store has no such photo."
	}
	return "the object store is not answering; the photo is safe there and shows again when it answers."
}

// photoCopyBuffers serve photos with 32 KiB of memory each.
var photoCopyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// handlePhoto serves GET /uploads/{key} from this replica's photo store,
// with its type, an ETag and a year of caching: a key names one photo
// forever, so its bytes never change. A photo this replica does not have
// is missing's page (a 404 saying where it is).
func (s *Server) handlePhoto(missing http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		if !uploads.ValidKey(key) {
			missing.ServeHTTP(w, r)
			return
		}
		etag := `"` + key + `"`
		h := w.Header()
		if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag || inm == "*" || strings.Contains(inm, etag)) {
			h.Set("ETag", etag)
			h.Set("Cache-Control", photoCacheControl)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body, size, err := s.photos.Open(r.Context(), key)
		if errors.Is(err, uploads.ErrNotFound) {
			missing.ServeHTTP(w, r)
			return
		}
		if err != nil {
			withNoStore(s.withSession(s.handle(func(http.ResponseWriter, *http.Request) error { return err }))).ServeHTTP(w, r)
			return
		}
		defer body.Close()
		h.Set("Content-Type", uploads.ContentType(key))
		h.Set("Content-Length", fmt.Sprint(size))
		h.Set("ETag", etag)
		h.Set("Cache-Control", photoCacheControl)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		buf := photoCopyBuffers.Get().(*[]byte)
		defer photoCopyBuffers.Put(buf)
		io.CopyBuffer(w, body, *buf)
	})
}

// photoCacheControl: a photo's bytes never change under its key.
const photoCacheControl = "public, max-age=31536000, immutable"

// handlePhotoMissing is the 404 page of a photo this replica cannot serve:
// with -uploads DIR it says whose disk the photo is on, as the review's row
// remembers.
func (s *Server) handlePhotoMissing(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if !uploads.ValidKey(key) {
		return notFound("There is no photo %q.", truncate(key, 64))
	}
	rev, err := s.db.ReviewByPhoto(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("There is no photo %s.", key)
	}
	if err != nil {
		return err
	}
	mine := s.photos.Kind() == uploads.KindDisk
	switch {
	case rev.PhotoStore == store.PhotoDisk && rev.PhotoReplica == s.cfg.Replica && mine:
		return notFound("This photo was kept on %s's disk, which is this replica's, and the disk no longer has it: %s was replaced with an empty disk, and what was on the old one is lost.", rev.PhotoReplica, s.cfg.Replica)
	case rev.PhotoStore == store.PhotoDisk:
		return notFound("This photo is on %s's disk, and this is %s. With -uploads DIR a photo lives only on the disk of the replica that took it: only %s can serve it, and replacing %s with an empty disk loses it.", rev.PhotoReplica, s.cfg.Replica, rev.PhotoReplica, rev.PhotoReplica)
	case mine:
		return notFound("This photo is in an object store, and %s keeps photos on its own disk.", s.cfg.Replica)
	}
	return notFound("The object store has no photo %s.", key)
}

// photosText is where review photos live, for the inspector pages: the
// uploads state's own description, with what this replica holds.
func (s *Server) photosText(ctx context.Context) string {
	d := s.photos.Describe(ctx)
	if d.Lives == state.Replica {
		return fmt.Sprintf("%d on this replica's disk. %s", d.HeldHere, d.Note)
	}
	return d.Note
}
