// Package uploads keeps the photos shoppers attach to reviews, in one of
// two places one flag apart: this replica's disk (Disk, the stateful way: a
// replaced replica has lost them) or an S3-compatible object store (S3,
// the stateless way: every replica serves every photo). Both judge nothing;
// the web layer decides what is a photo (Inspect) and which key it gets
// (NewKey), and hands each the bytes to keep.
package uploads

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Limits of a photo.
const (
	// MaxBytes is the largest photo kept: also S3's smallest multipart
	// part, so one part buffer holds any photo.
	MaxBytes = 5 << 20
	// MaxSide is the widest and tallest photo kept, in pixels.
	MaxSide = 4096
)

// The kinds of photo store, as -uploads chooses them.
const (
	KindDisk = "disk"
	KindS3   = "s3"
)

var (
	// ErrNotFound: no photo with that key here.
	ErrNotFound = errors.New("uploads: no such photo")
	// ErrTooBig: the photo has more than MaxBytes; nothing was kept.
	ErrTooBig = errors.New("uploads: photo larger than 5 MiB")
	// ErrUnavailable: the store cannot take or give photos now (the
	// object store is down, refusing or too slow; the disk failed). The
	// same request may succeed later.
	ErrUnavailable = errors.New("uploads: photo store unavailable")
	// ErrBusy: too many uploads are in flight on this replica; each holds
	// a part buffer, and their number is what bounds the memory.
	ErrBusy = errors.New("uploads: too many uploads at once")
)

// keyEncoding is lower-case base32 without padding: safe in a URL and a
// file name, and case-insensitive file systems cannot merge two keys.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// keyPattern is what NewKey makes: 128 random bits and the format's
// extension. Nothing else is ever looked up, so a key cannot climb out of
// a directory or name another object.
var keyPattern = regexp.MustCompile(`^[a-z2-7]{26}\.(jpg|png|webp)$`)

// NewKey returns a fresh key for a photo of format (see Inspect): 128 bits
// from crypto/rand, so no key can be guessed from another.
func NewKey(format Format) string {
	b := make([]byte, 16)
	rand.Read(b)
	return keyEncoding.EncodeToString(b) + "." + format.Ext
}

// ValidKey reports whether key is one NewKey could have made.
func ValidKey(key string) bool { return keyPattern.MatchString(key) }

// ContentType is the media type of a valid key's photo, from the format
// Inspect found when it was kept.
func ContentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".jpg"):
		return JPEG.ContentType
	case strings.HasSuffix(key, ".png"):
		return PNG.ContentType
	case strings.HasSuffix(key, ".webp"):
		return WebP.ContentType
	}
	return "application/octet-stream"
}

// Target is where -uploads puts photos: a directory, or a bucket.
type Target struct {
	// Dir is the directory of a disk store; "" for a bucket.
	Dir string
	// Bucket is the bucket of an object store; "" for a disk.
	Bucket string
}

// Kind is KindDisk or KindS3.
func (t Target) Kind() string {
	if t.Bucket != "" {
		return KindS3
	}
	return KindDisk
}

// bucketName is S3's rule for a bucket name, without the dotted forms
// (which break virtual-host addressing over TLS).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// ParseTarget reads -uploads: s3://BUCKET, or a directory path.
func ParseTarget(v string) (Target, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return Target{}, errors.New("empty")
	}
	if rest, ok := strings.CutPrefix(v, "s3://"); ok {
		rest = strings.TrimSuffix(rest, "/")
		if !bucketName.MatchString(rest) {
			return Target{}, fmt.Errorf("bucket %q: want 3 to 63 lower-case letters, digits or '-'", rest)
		}
		return Target{Bucket: rest}, nil
	}
	if strings.Contains(v, "://") {
		return Target{}, errors.New("the only URL form is s3://BUCKET")
	}
	return Target{Dir: v}, nil
}

// ParseEndpoint reads -s3-endpoint: an http:// or https:// URL of host and
// port, without a path.
func ParseEndpoint(v string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(strings.TrimSpace(v), "/"))
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want http:// or https://")
	case u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil:
		return nil, errors.New("want only a scheme, a host and a port")
	}
	return u, nil
}
