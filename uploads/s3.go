package uploads

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/statelab/shop/state"
)

// S3Config is how to reach the object store.
type S3Config struct {
	Endpoint  *url.URL // http(s)://host:port
	AccessKey string
	SecretKey string
	Region    string
	Bucket    string
	// Timeout bounds each exchange with the object store but a photo's
	// PUT; 0 means DefaultS3Timeout.
	Timeout time.Duration
	// PutTimeout bounds a photo's PUT once its bytes are in hand; 0 means
	// DefaultS3PutTimeout.
	PutTimeout time.Duration
	// MaxInFlight is how many uploads may hold a part buffer at once
	// (MaxBytes each); 0 means DefaultMaxInFlight.
	MaxInFlight int
}

// Defaults of S3Config.
const (
	DefaultS3Timeout    = 2 * time.Second
	DefaultS3PutTimeout = 5 * time.Second
	// DefaultMaxInFlight part buffers of 5 MiB: 40 MiB at most, which a
	// replica with a 128 MiB memory limit can hold; more uploads wait.
	DefaultMaxInFlight = 8
)

// S3 keeps photos in a bucket of an S3-compatible object store: the
// stateless way. Every replica reads the same bucket, and a replica's
// death or replacement loses no photo.
//
// An upload is held in one part buffer (MaxBytes, S3's smallest multipart
// part) taken from a bounded pool, never in a temporary file, and sent
// with its size known: one PUT. minio-go's own path for a stream of
// unknown size (PutObject with size -1) allocates a fresh part buffer per
// upload and costs three requests (create, part, complete); for photos
// that fit one part, the pool does what it does with neither cost.
type S3 struct {
	client *minio.Client
	cfg    S3Config
	parts  *partPool

	health  reachability
	orphans orphanKeys
}

// NewS3 connects to the object store; it sends nothing yet (EnsureBucket
// does).
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultS3Timeout
	}
	if cfg.PutTimeout <= 0 {
		cfg.PutTimeout = DefaultS3PutTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Endpoint == nil {
		return nil, errors.New("uploads: s3: no endpoint")
	}
	// Bounded dials and replies: a store that is down or stalled is an
	// error within the timeout, not a hung request.
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout / 2, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	client, err := minio.New(cfg.Endpoint.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Endpoint.Scheme == "https",
		Region:       cfg.Region,
		Transport:    tr,
		BucketLookup: minio.BucketLookupPath,
		// One try: a retry with backoff would outlast the timeout; the
		// shopper's own retry (after 503 and Retry-After) is the retry.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("uploads: s3: %w", err)
	}
	return &S3{client: client, cfg: cfg, parts: newPartPool(cfg.MaxInFlight)}, nil
}

// Kind is KindS3.
func (s *S3) Kind() string { return KindS3 }

// Where says where the photos are, for the inspector pages.
func (s *S3) Where() string {
	return fmt.Sprintf("bucket %s of the object store at %s", s.cfg.Bucket, s.cfg.Endpoint.Host)
}

// EnsureBucket creates the bucket if it is missing. main calls it at start;
// a store that does not answer then is not fatal (photo uploads answer 503
// until it does, and Put creates a bucket it finds missing).
func (s *S3) EnsureBucket(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	defer s.classify(ctx, &err)
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("uploads: bucket %s: %w", s.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
	if err != nil && errorCode(err) != minio.BucketAlreadyOwnedByYou {
		return fmt.Errorf("uploads: make bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// Put stores the photo under key. It reads the photo into a pooled part
// buffer (waiting for one while ctx allows: ErrBusy), refuses one over
// MaxBytes before anything is sent (ErrTooBig), then PUTs it with its size
// within PutTimeout. On any error no object is left under key.
func (s *S3) Put(ctx context.Context, key, contentType string, r io.Reader) (err error) {
	if !ValidKey(key) {
		return fmt.Errorf("uploads: put %q: not a key", key)
	}
	buf, err := s.parts.get(ctx)
	if err != nil {
		return fmt.Errorf("uploads: put %s: %w", key, err)
	}
	defer s.parts.put(buf)
	n, err := fill(r, buf)
	if err != nil {
		return fmt.Errorf("uploads: put %s: %w", key, err) // the client's body
	}
	putCtx, cancel := context.WithTimeout(ctx, s.cfg.PutTimeout)
	defer cancel()
	defer s.classify(putCtx, &err)
	_, err = s.client.PutObject(putCtx, s.cfg.Bucket, key, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    MaxBytes,
	})
	if err != nil && errorCode(err) == minio.NoSuchBucket {
		// Created at start unless the store was down then, or removed
		// since: make it and try once more.
		if err = s.EnsureBucket(ctx); err == nil {
			_, err = s.client.PutObject(putCtx, s.cfg.Bucket, key, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectOptions{
				ContentType: contentType,
				PartSize:    MaxBytes,
			})
		}
	}
	if err != nil {
		// A PUT that failed on our side (a timeout, a broken connection)
		// may still complete on the store's, even after a DELETE sent now
		// (a stalled store may process them in any order): delete now,
		// and again after the next PUT that succeeds, so that no object
		// stays that no review names.
		if derr := s.Delete(context.WithoutCancel(ctx), key); derr != nil || errors.Is(err, ErrUnavailable) {
			s.orphans.add(key)
		}
		return fmt.Errorf("uploads: put %s: %w", key, err)
	}
	s.removeOrphans(context.WithoutCancel(ctx))
	return nil
}

// removeOrphans deletes what failed PUTs may have left, now that the store
// answers.
func (s *S3) removeOrphans(ctx context.Context) {
	for _, key := range s.orphans.take() {
		if err := s.Delete(ctx, key); err != nil {
			s.orphans.add(key)
			return
		}
	}
}

// orphanKeys are the keys of failed PUTs that may have landed anyway.
type orphanKeys struct {
	mu   sync.Mutex
	keys map[string]bool
}

// maxOrphans bounds what an outage can make a replica remember.
const maxOrphans = 4096

func (o *orphanKeys) add(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys == nil {
		o.keys = make(map[string]bool)
	}
	if len(o.keys) < maxOrphans {
		o.keys[key] = true
	}
}

func (o *orphanKeys) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var keys []string
	for k := range o.keys {
		keys = append(keys, k)
	}
	o.keys = nil
	return keys
}

// Open returns the photo under key and its size: ErrNotFound when the
// bucket has no such object, ErrUnavailable when the store does not
// answer. The body streams from the store; the caller closes it.
func (s *S3) Open(ctx context.Context, key string) (_ io.ReadCloser, _ int64, err error) {
	if !ValidKey(key) {
		return nil, 0, ErrNotFound
	}
	// The timeout covers the request and its reply's headers; the body
	// streams under the caller's context (the server's write timeout).
	headCtx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(s.cfg.Timeout, cancel)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	defer s.classify(ctx, &err) // the caller's: the timer's cancel is a timeout
	obj, err := s.client.GetObject(headCtx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("uploads: open %s: %w", key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, fmt.Errorf("uploads: open %s: %w", key, err)
	}
	if !timer.Stop() {
		obj.Close()
		return nil, 0, fmt.Errorf("uploads: open %s: %w: %w", key, ErrUnavailable, context.DeadlineExceeded)
	}
	return objectBody{obj, cancel}, info.Size, nil
}

// fill reads r to its end into buf: ErrTooBig when r holds more than buf,
// and r's own error (not io.ReadFull's ambiguous ErrUnexpectedEOF) when it
// breaks off.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	var one [1]byte
	for {
		m, err := r.Read(one[:])
		if m > 0 {
			return n, ErrTooBig
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// objectBody releases the request's context with the body.
type objectBody struct {
	*minio.Object
	cancel context.CancelFunc
}

func (b objectBody) Close() error { err := b.Object.Close(); b.cancel(); return err }

// Delete removes key's object; a missing one is no error.
func (s *S3) Delete(ctx context.Context, key string) (err error) {
	if !ValidKey(key) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	defer s.classify(ctx, &err)
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("uploads: delete %s: %w", key, err)
	}
	return nil
}

// Status reports whether a page may show key's photo: nil while the
// object store answers, ErrUnavailable while it does not. It asks the
// store at most once a second (and for at most half a second), not once
// per photo: every replica has every photo, so only the store's health
// is in question.
func (s *S3) Status(ctx context.Context, key string) error {
	return s.health.check(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := s.client.BucketExists(ctx, s.cfg.Bucket)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	})
}

// Describe says where the photos live for the state audit: in the object
// store, none on this replica.
func (s *S3) Describe(ctx context.Context) state.Description {
	return state.Description{
		Kind:  "uploads",
		Lives: state.ObjectStore,
		Note: fmt.Sprintf("Review photos are objects in bucket %s at %s. Every replica serves every photo, and this replica's death or replacement loses none; uploads pass through one pooled 5 MiB buffer, never a temporary file.",
			s.cfg.Bucket, s.cfg.Endpoint.Host),
	}
}

// classify marks an object-store failure as ErrUnavailable, keeping
// NoSuchKey as ErrNotFound and a client that went away as
// context.Canceled.
func (s *S3) classify(ctx context.Context, err *error) {
	if *err == nil || errors.Is(*err, ErrUnavailable) || errors.Is(*err, ErrNotFound) || errors.Is(*err, ErrTooBig) {
		return
	}
	if code := errorCode(*err); code == minio.NoSuchKey {
		*err = fmt.Errorf("%w: %w", ErrNotFound, *err)
		return
	}
	if errors.Is(*err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled) {
		return // the caller gave up: not the store's fault
	}
	*err = fmt.Errorf("%w: %w", ErrUnavailable, *err)
}

// errorCode is the S3 error code inside err, "" if none.
func errorCode(err error) string {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code
	}
	return ""
}

// partPool hands out part buffers of MaxBytes, at most max at once: the
// bound on an upload's memory is the number in flight times MaxBytes. A
// buffer given back is reused, not collected and allocated again.
type partPool struct {
	slots chan struct{}
	free  chan []byte
}

func newPartPool(max int) *partPool {
	return &partPool{slots: make(chan struct{}, max), free: make(chan []byte, max)}
}

// get waits for a slot while ctx allows, then returns a free buffer or a
// new one.
func (p *partPool) get(ctx context.Context) ([]byte, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ErrBusy
	}
	select {
	case b := <-p.free:
		return b, nil
	default:
		return make([]byte, MaxBytes), nil
	}
}

func (p *partPool) put(b []byte) {
	p.free <- b // never blocks: there are no more buffers than slots
	<-p.slots
}

// reachability caches a health probe's answer for a second; one probe at
// a time, the others take the last answer.
type reachability struct {
	mu      sync.Mutex
	probing bool
	at      time.Time
	err     error
}

func (h *reachability) check(ctx context.Context, probe func(context.Context) error) error {
	h.mu.Lock()
	if h.probing || time.Since(h.at) < time.Second {
		err := h.err
		h.mu.Unlock()
		return err
	}
	h.probing = true
	h.mu.Unlock()
	err := probe(ctx)
	h.mu.Lock()
	h.probing, h.at, h.err = false, time.Now(), err
	h.mu.Unlock()
	return err
}
