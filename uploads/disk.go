package uploads

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/statelab/shop/state"
)

// Disk keeps photos as files in a directory of this replica's disk: the
// stateful way. Another replica has a directory of its own and does not
// have them; a replica replaced with an empty disk has lost them.
type Disk struct {
	dir     string
	replica string
}

// NewDisk keeps photos in dir (created if missing), on the disk of the
// replica named replica.
func NewDisk(dir, replica string) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("uploads: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("uploads: %w", err)
	}
	return &Disk{dir: abs, replica: replica}, nil
}

// Kind is KindDisk.
func (d *Disk) Kind() string { return KindDisk }

// Dir is the directory the photos are in.
func (d *Disk) Dir() string { return d.dir }

// Where says where the photos are, for the inspector pages.
func (d *Disk) Where() string { return fmt.Sprintf("%s's disk, in %s", d.replica, d.dir) }

// copyBuffers keep a disk upload at 32 KiB of memory whatever the photo's
// size.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Put writes the photo under key, atomically: it goes to a temporary file
// in the same directory, is synced, and is renamed into place, so a crash or
// a photo over MaxBytes leaves no partial file under the key.
func (d *Disk) Put(ctx context.Context, key, contentType string, r io.Reader) (err error) {
	if !ValidKey(key) {
		return fmt.Errorf("uploads: put %q: not a key", key)
	}
	f, err := os.CreateTemp(d.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("uploads: put %s: %w: %w", key, ErrUnavailable, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(f, io.LimitReader(ctxReader{ctx, r}, MaxBytes+1), *buf)
	switch {
	case err != nil && isWriteError(err):
		return fmt.Errorf("uploads: put %s: %w: %w", key, ErrUnavailable, err)
	case err != nil:
		return fmt.Errorf("uploads: put %s: %w", key, err) // the reader's: the client's body
	case n > MaxBytes:
		return fmt.Errorf("uploads: put %s: %w", key, ErrTooBig)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("uploads: put %s: %w: %w", key, ErrUnavailable, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("uploads: put %s: %w: %w", key, ErrUnavailable, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(d.dir, key)); err != nil {
		return fmt.Errorf("uploads: put %s: %w: %w", key, ErrUnavailable, err)
	}
	return nil
}

// isWriteError tells a failed write to the file (the disk's fault) from a
// failed read of the photo (the client's).
func isWriteError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}

// ctxReader stops reading once ctx ends: an upload is bounded in time.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Open returns the photo under key and its size, or ErrNotFound.
func (d *Disk) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	if !ValidKey(key) {
		return nil, 0, ErrNotFound
	}
	f, err := os.Open(filepath.Join(d.dir, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("uploads: open %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("uploads: open %s: %w: %w", key, ErrUnavailable, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("uploads: open %s: %w: %w", key, ErrUnavailable, err)
	}
	return f, fi.Size(), nil
}

// Status reports whether key's photo is on this disk: nil, or ErrNotFound.
func (d *Disk) Status(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return ErrNotFound
	}
	if _, err := os.Stat(filepath.Join(d.dir, key)); err != nil {
		return fmt.Errorf("uploads: %s: %w", key, ErrNotFound)
	}
	return nil
}

// Delete removes key's photo; a photo that is not there is no error.
func (d *Disk) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return nil
	}
	if err := os.Remove(filepath.Join(d.dir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uploads: delete %s: %w", key, err)
	}
	return nil
}

// Count is the number of photos on this disk.
func (d *Disk) Count() int {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && ValidKey(e.Name()) {
			n++
		}
	}
	return n
}

// Describe says where the photos live for the state audit: on this
// replica's disk, lost with it.
func (d *Disk) Describe(ctx context.Context) state.Description {
	n := d.Count()
	return state.Description{
		Kind:         "uploads",
		Lives:        state.Replica,
		HeldHere:     n,
		LostIfKilled: n > 0,
		Note: fmt.Sprintf("Review photos are files on %s's disk (%s). The other replicas do not have them, and a replacement with an empty disk has lost them; -uploads s3://BUCKET keeps them in an object store every replica reads.",
			d.replica, d.dir),
	}
}
