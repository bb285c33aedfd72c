// Package static holds the shop's stylesheet and illustrations, embedded in
// the binary so one file is the whole shop.
package static

import (
	"embed"
	"net/http"
)

//go:embed shop.css img
var files embed.FS

// FS is the embedded static files.
var FS = files

// Handler serves the static files. They change only with the binary, so
// browsers may cache them for an hour.
func Handler() http.Handler {
	fs := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fs.ServeHTTP(w, r)
	})
}
