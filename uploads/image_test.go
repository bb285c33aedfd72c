package uploads_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"testing"

	"github.com/statelab/shop/uploads"
)

// testPNG and testJPEG encode a w×h image with the standard library.
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.RGBA{200, 10, 10, 255})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// webp wraps a first chunk in the RIFF container.
func webp(chunk string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+len(data)))
	b.WriteString("WEBP")
	b.WriteString(chunk)
	binary.Write(&b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

// webpLossy is a key frame header of a lossy WebP of w×h.
func webpLossy(w, h int) []byte {
	d := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(d[6:], uint16(w))
	binary.LittleEndian.PutUint16(d[8:], uint16(h))
	return webp("VP8 ", d)
}

// webpLossless is the header of a lossless WebP of w×h.
func webpLossless(w, h int) []byte {
	d := []byte{0x2f, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(d[1:], uint32(w-1)|uint32(h-1)<<14)
	return webp("VP8L", d)
}

// webpExtended is the VP8X header of an extended WebP with a w×h canvas.
func webpExtended(w, h int) []byte {
	d := []byte{0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	w, h = w-1, h-1
	d[4], d[5], d[6] = byte(w), byte(w>>8), byte(w>>16)
	d[7], d[8], d[9] = byte(h), byte(h>>8), byte(h>>16)
	return webp("VP8X", d)
}

// A real 1×1 lossless WebP, as cwebp writes it.
var realWebP = []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")

func TestInspect(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		format uploads.Format
		w, h   int
	}{
		{"png", testPNG(t, 33, 17), uploads.PNG, 33, 17},
		{"jpeg", testJPEG(t, 64, 48), uploads.JPEG, 64, 48},
		{"webp lossy", webpLossy(640, 480), uploads.WebP, 640, 480},
		{"webp lossless", webpLossless(1000, 3), uploads.WebP, 1000, 3},
		{"webp extended", webpExtended(5000, 70000), uploads.WebP, 5000, 70000},
		{"webp real", realWebP, uploads.WebP, 1, 1},
		{"png too big to keep is still a png", testPNG(t, 4097, 1), uploads.PNG, 4097, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, r, err := uploads.Inspect(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if img.Format != tt.format || img.Width != tt.w || img.Height != tt.h {
				t.Errorf("Inspect = %+v, want %s %d×%d", img, tt.format.Name, tt.w, tt.h)
			}
			all, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(all, tt.data) {
				t.Errorf("the replayed photo is %d bytes (%v), want the %d given", len(all), err, len(tt.data))
			}
		})
	}
}

func TestInspectRefuses(t *testing.T) {
	png := testPNG(t, 10, 10)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", []byte("GIF8")},
		{"text named like a photo", []byte("this is not a picture, whatever its name says")},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")},
		{"png cut in its header", png[:20]},
		{"jpeg signature and nothing else", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0, 1}},
		{"webp with an unknown chunk", webp("ABCD", make([]byte, 10))},
		{"webp lossy without a key frame", webp("VP8 ", []byte{0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0})},
		{"webp lossless without its signature", webp("VP8L", make([]byte, 10))},
		{"webp lossy of no pixels", webpLossy(0, 10)},
		{"riff that is not webp", []byte("RIFF\x10\x00\x00\x00WAVEfmt ")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, _, err := uploads.Inspect(bytes.NewReader(tt.data))
			if !errors.Is(err, uploads.ErrNotImage) {
				t.Errorf("Inspect = %+v, %v; want ErrNotImage", img, err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		in          string
		dir, bucket string
		bad         bool
	}{
		{in: "uploads", dir: "uploads"},
		{in: "/var/lib/shop/photos", dir: "/var/lib/shop/photos"},
		{in: "s3://shop-photos", bucket: "shop-photos"},
		{in: "s3://shop-photos/", bucket: "shop-photos"},
		{in: "s3://Shop", bad: true},
		{in: "s3://a", bad: true},
		{in: "s3://", bad: true},
		{in: "gs://bucket", bad: true},
		{in: " ", bad: true},
	} {
		got, err := uploads.ParseTarget(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseTarget(%q) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.Dir != tt.dir || got.Bucket != tt.bucket {
			t.Errorf("ParseTarget(%q) = %+v, %v; want dir %q bucket %q", tt.in, got, err, tt.dir, tt.bucket)
		}
	}
	for _, bad := range []string{"localhost:7070", "ftp://host:1", "http://host:1/path", "http://"} {
		if _, err := uploads.ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) succeeded", bad)
		}
	}
	if u, err := uploads.ParseEndpoint("http://127.0.0.1:7070/"); err != nil || u.Host != "127.0.0.1:7070" {
		t.Errorf("ParseEndpoint = %v, %v", u, err)
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := uploads.NewKey(uploads.PNG)
		if !uploads.ValidKey(k) || seen[k] || uploads.ContentType(k) != "image/png" {
			t.Fatalf("NewKey = %q: valid %v, seen %v", k, uploads.ValidKey(k), seen[k])
		}
		seen[k] = true
	}
	for _, bad := range []string{"", "../shop.db", "aaaaaaaaaaaaaaaaaaaaaaaaaa.gif", "AAAAAAAAAAAAAAAAAAAAAAAAAA.jpg", "aaaaaaaaaaaaaaaaaaaaaaaaaa.jpg/x"} {
		if uploads.ValidKey(bad) {
			t.Errorf("ValidKey(%q) = true", bad)
		}
	}
}
