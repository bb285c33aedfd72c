package uploads_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/state"
	"github.com/statelab/shop/uploads"
)

// photoStore is what both implementations offer; web declares its own.
type photoStore interface {
	Kind() string
	Put(ctx context.Context, key, contentType string, r io.Reader) error
	Open(ctx context.Context, key string) (io.ReadCloser, int64, error)
	Status(ctx context.Context, key string) error
	Delete(ctx context.Context, key string) error
	Describe(ctx context.Context) state.Description
}

func newS3(t *testing.T, os *testenv.ObjectStore, bucket string, cfg uploads.S3Config) *uploads.S3 {
	t.Helper()
	u, err := url.Parse(os.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = u, testenv.ObjectStoreAccessKey, testenv.ObjectStoreSecretKey, bucket
	s, err := uploads.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStores(t *testing.T) {
	objects := testenv.StartObjectStore(t)
	disk, err := uploads.NewDisk(filepath.Join(t.TempDir(), "uploads"), "shop1")
	if err != nil {
		t.Fatal(err)
	}
	s3 := newS3(t, objects, "photos", uploads.S3Config{})
	if err := s3.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s3.EnsureBucket(t.Context()); err != nil {
		t.Errorf("EnsureBucket on an existing bucket: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(objects.Dir(), "photos")); err != nil || !fi.IsDir() {
		t.Fatalf("the bucket is not in the store's directory: %v", err)
	}

	for _, st := range []photoStore{disk, s3} {
		t.Run(st.Kind(), func(t *testing.T) {
			photo := testPNG(t, 300, 200)
			key := uploads.NewKey(uploads.PNG)
			if err := st.Status(t.Context(), key); st.Kind() == uploads.KindDisk && !errors.Is(err, uploads.ErrNotFound) {
				t.Errorf("Status before Put = %v, want ErrNotFound", err)
			}
			if _, _, err := st.Open(t.Context(), key); !errors.Is(err, uploads.ErrNotFound) {
				t.Errorf("Open before Put = %v, want ErrNotFound", err)
			}
			if err := st.Put(t.Context(), key, "image/png", bytes.NewReader(photo)); err != nil {
				t.Fatal(err)
			}
			if err := st.Status(t.Context(), key); err != nil {
				t.Errorf("Status after Put = %v", err)
			}
			body, size, err := st.Open(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(body)
			body.Close()
			if size != int64(len(photo)) || !bytes.Equal(got, photo) {
				t.Errorf("Open = %d bytes (size %d), want the %d put", len(got), size, len(photo))
			}
			d := st.Describe(t.Context())
			if d.Kind != "uploads" {
				t.Errorf("Describe = %+v", d)
			}
			switch st.Kind() {
			case uploads.KindDisk:
				if d.Lives != state.Replica || d.HeldHere != 1 || !d.LostIfKilled {
					t.Errorf("disk Describe = %+v, want 1 photo on the replica, lost if killed", d)
				}
			case uploads.KindS3:
				if d.Lives != state.ObjectStore || d.HeldHere != 0 || d.LostIfKilled {
					t.Errorf("s3 Describe = %+v, want none here, in the object store", d)
				}
			}

			// Exactly the limit is kept; one byte more is refused and
			// leaves nothing under its key.
			exact := append(testPNG(t, 10, 10), make([]byte, uploads.MaxBytes)...)[:uploads.MaxBytes]
			exactKey := uploads.NewKey(uploads.PNG)
			if err := st.Put(t.Context(), exactKey, "image/png", bytes.NewReader(exact)); err != nil {
				t.Errorf("Put of exactly MaxBytes: %v", err)
			}
			over := append(exact, 0)
			overKey := uploads.NewKey(uploads.PNG)
			if err := st.Put(t.Context(), overKey, "image/png", bytes.NewReader(over)); !errors.Is(err, uploads.ErrTooBig) {
				t.Errorf("Put of MaxBytes+1 = %v, want ErrTooBig", err)
			}
			if _, _, err := st.Open(t.Context(), overKey); !errors.Is(err, uploads.ErrNotFound) {
				t.Errorf("Open of a refused photo = %v, want ErrNotFound", err)
			}
			// A client whose body breaks off leaves nothing either.
			brokenKey := uploads.NewKey(uploads.PNG)
			broken := io.MultiReader(bytes.NewReader(photo[:100]), errReader{io.ErrUnexpectedEOF})
			if err := st.Put(t.Context(), brokenKey, "image/png", broken); err == nil {
				t.Error("Put of a broken body succeeded")
			}
			if _, _, err := st.Open(t.Context(), brokenKey); !errors.Is(err, uploads.ErrNotFound) {
				t.Errorf("Open of a broken upload = %v, want ErrNotFound", err)
			}

			for _, k := range []string{key, exactKey} {
				if err := st.Delete(t.Context(), k); err != nil {
					t.Errorf("Delete: %v", err)
				}
				if _, _, err := st.Open(t.Context(), k); !errors.Is(err, uploads.ErrNotFound) {
					t.Errorf("Open after Delete = %v, want ErrNotFound", err)
				}
			}
			if err := st.Delete(t.Context(), key); err != nil {
				t.Errorf("Delete of a missing photo: %v", err)
			}
			if _, _, err := st.Open(t.Context(), "../shop.db"); !errors.Is(err, uploads.ErrNotFound) {
				t.Errorf("Open(../shop.db) = %v, want ErrNotFound", err)
			}
		})
	}
	entries, _ := os.ReadDir(disk.Dir())
	for _, e := range entries {
		t.Errorf("left on disk: %s", e.Name())
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestS3Down: a store that is stopped or stalled is ErrUnavailable within
// the timeouts, never a hang; a missing bucket is made on the first Put.
func TestS3Down(t *testing.T) {
	objects := testenv.StartObjectStore(t)
	s3 := newS3(t, objects, "late-bucket", uploads.S3Config{Timeout: 500 * time.Millisecond, PutTimeout: time.Second})
	photo := testJPEG(t, 20, 20)

	// No EnsureBucket at start (the store was down then): Put makes it.
	key := uploads.NewKey(uploads.JPEG)
	if err := s3.Put(t.Context(), key, "image/jpeg", bytes.NewReader(photo)); err != nil {
		t.Fatalf("Put into a missing bucket: %v", err)
	}

	if err := objects.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := s3.Put(t.Context(), uploads.NewKey(uploads.JPEG), "image/jpeg", bytes.NewReader(photo))
	if !errors.Is(err, uploads.ErrUnavailable) {
		t.Errorf("Put to a stalled store = %v, want ErrUnavailable", err)
	}
	if _, _, err := s3.Open(t.Context(), key); !errors.Is(err, uploads.ErrUnavailable) {
		t.Errorf("Open from a stalled store = %v, want ErrUnavailable", err)
	}
	t.Logf("a stalled store answered within %s", time.Since(start))
	if err := objects.Resume(); err != nil {
		t.Fatal(err)
	}

	if err := objects.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // Status's cached answer expires
	if err := s3.Status(t.Context(), key); !errors.Is(err, uploads.ErrUnavailable) {
		t.Errorf("Status with the store down = %v, want ErrUnavailable", err)
	}
	if err := s3.Put(t.Context(), uploads.NewKey(uploads.JPEG), "image/jpeg", bytes.NewReader(photo)); !errors.Is(err, uploads.ErrUnavailable) {
		t.Errorf("Put with the store down = %v, want ErrUnavailable", err)
	}
	if err := s3.EnsureBucket(t.Context()); !errors.Is(err, uploads.ErrUnavailable) {
		t.Errorf("EnsureBucket with the store down = %v, want ErrUnavailable", err)
	}

	if err := objects.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := s3.Status(t.Context(), key); err != nil {
		t.Errorf("Status once the store is back = %v", err)
	}
	body, _, err := s3.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("the photo put before the outage: %v", err)
	}
	body.Close()
	// A stalled store may take a timed-out PUT after the DELETE sent
	// with its failure; the next PUT that succeeds deletes it again.
	last := uploads.NewKey(uploads.JPEG)
	if err := s3.Put(t.Context(), last, "image/jpeg", bytes.NewReader(photo)); err != nil {
		t.Fatal(err)
	}
	// Nothing but those two photos is in the bucket: the failed Puts left
	// no object behind.
	entries, _ := os.ReadDir(filepath.Join(objects.Dir(), "late-bucket"))
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	want := []string{key, last}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("the bucket holds %v, want only %v", names, want)
	}
}

// TestS3PartBuffers: uploads past MaxInFlight wait for a part buffer, and
// one that cannot get one in time is ErrBusy.
func TestS3PartBuffers(t *testing.T) {
	objects := testenv.StartObjectStore(t)
	s3 := newS3(t, objects, "busy", uploads.S3Config{MaxInFlight: 1})
	if err := s3.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The first upload holds the only buffer while its body trickles in.
	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() { first <- s3.Put(t.Context(), uploads.NewKey(uploads.PNG), "image/png", pr) }()
	pw.Write(testPNG(t, 5, 5)) // the first upload is reading: it has the buffer

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s3.Put(ctx, uploads.NewKey(uploads.PNG), "image/png", bytes.NewReader(testPNG(t, 5, 5))); !errors.Is(err, uploads.ErrBusy) {
		t.Errorf("a second upload with no buffer free = %v, want ErrBusy", err)
	}
	pw.Close()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := s3.Put(t.Context(), uploads.NewKey(uploads.PNG), "image/png", bytes.NewReader(testPNG(t, 5, 5))); err != nil {
		t.Errorf("an upload after the buffer came back: %v", err)
	}
}
