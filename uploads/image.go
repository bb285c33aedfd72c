package uploads

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
)

// Format is an image format the shop keeps.
type Format struct {
	Name        string // "JPEG", "PNG", "WebP"
	ContentType string
	Ext         string // a key's extension
}

// The formats a photo may have.
var (
	JPEG = Format{"JPEG", "image/jpeg", "jpg"}
	PNG  = Format{"PNG", "image/png", "png"}
	WebP = Format{"WebP", "image/webp", "webp"}
)

// Image is what Inspect found at the start of a photo.
type Image struct {
	Format        Format
	Width, Height int
}

// ErrNotImage: the bytes are not a JPEG, PNG or WebP image whose size can
// be read. Its wrapping error says why, for the form.
var ErrNotImage = errors.New("not a JPEG, PNG or WebP image")

// headLimit bounds what Inspect reads to find the dimensions: a JPEG may
// put metadata (EXIF, ICC profiles) before its frame header, but not a
// megabyte of it.
const headLimit = 1 << 20

// Inspect judges a photo by its content, not its name or declared type: it
// reads the start of r, recognizes JPEG, PNG or WebP by their signatures
// and reads the dimensions from the header (image.DecodeConfig's decoders
// for JPEG and PNG; the RIFF/VP8 headers for WebP, which the standard
// library cannot read). It returns a reader that yields the whole photo
// again, from its first byte: what Inspect read is replayed before the
// rest of r.
func Inspect(r io.Reader) (Image, io.Reader, error) {
	var seen bytes.Buffer
	tee := io.TeeReader(io.LimitReader(r, headLimit), &seen)
	replay := func() io.Reader { return io.MultiReader(bytes.NewReader(seen.Bytes()), r) }

	magic := make([]byte, 12)
	if n, err := io.ReadFull(tee, magic); err != nil {
		if n == 0 {
			return Image{}, replay(), fmt.Errorf("%w: the file is empty", ErrNotImage)
		}
		return Image{}, replay(), fmt.Errorf("%w: the file is too short", ErrNotImage)
	}
	var img Image
	var cfg image.Config
	var err error
	rest := io.MultiReader(bytes.NewReader(magic), tee)
	switch {
	case bytes.HasPrefix(magic, []byte{0xff, 0xd8, 0xff}):
		img.Format = JPEG
		cfg, err = jpeg.DecodeConfig(rest)
	case bytes.HasPrefix(magic, []byte("\x89PNG\r\n\x1a\n")):
		img.Format = PNG
		cfg, err = png.DecodeConfig(rest)
	case bytes.Equal(magic[0:4], []byte("RIFF")) && bytes.Equal(magic[8:12], []byte("WEBP")):
		img.Format = WebP
		cfg, err = webpConfig(tee)
	default:
		return Image{}, replay(), ErrNotImage
	}
	if err != nil {
		return Image{}, replay(), fmt.Errorf("%w: a broken %s header (%v)", ErrNotImage, img.Format.Name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Image{}, replay(), fmt.Errorf("%w: %s of %d×%d pixels", ErrNotImage, img.Format.Name, cfg.Width, cfg.Height)
	}
	img.Width, img.Height = cfg.Width, cfg.Height
	return img, replay(), nil
}

// webpConfig reads a WebP's canvas size from the chunk after the 12 bytes
// of "RIFF", size and "WEBP" (RFC 9649): a lossy "VP8 " frame header, a
// lossless "VP8L" header, or the extended format's "VP8X" canvas.
func webpConfig(r io.Reader) (image.Config, error) {
	var h [18]byte // chunk name, chunk size, and the first 10 bytes of its data
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return image.Config{}, errors.New("the file ends inside its first chunk")
	}
	data := h[8:]
	switch string(h[0:4]) {
	case "VP8 ":
		// A 3-byte frame tag (bit 0 clear: a key frame), the start code
		// 9d 01 2a, then 14-bit width and height (2 bits of scaling above).
		if data[0]&1 != 0 || data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a {
			return image.Config{}, errors.New("VP8 chunk without a key frame")
		}
		w := int(binary.LittleEndian.Uint16(data[6:8]) & 0x3fff)
		ht := int(binary.LittleEndian.Uint16(data[8:10]) & 0x3fff)
		return image.Config{Width: w, Height: ht}, nil
	case "VP8L":
		// The signature 0x2f, then width-1 and height-1 in 14 bits each.
		if data[0] != 0x2f {
			return image.Config{}, errors.New("VP8L chunk without its signature")
		}
		bits := binary.LittleEndian.Uint32(data[1:5])
		return image.Config{Width: int(bits&0x3fff) + 1, Height: int(bits>>14&0x3fff) + 1}, nil
	case "VP8X":
		// Flags, 3 reserved bytes, then canvas width-1 and height-1 in 24
		// bits each.
		w := int(uint32(data[4]) | uint32(data[5])<<8 | uint32(data[6])<<16)
		ht := int(uint32(data[7]) | uint32(data[8])<<8 | uint32(data[9])<<16)
		return image.Config{Width: w + 1, Height: ht + 1}, nil
	}
	return image.Config{}, fmt.Errorf("first chunk %q is not VP8, VP8L or VP8X", h[0:4])
}
