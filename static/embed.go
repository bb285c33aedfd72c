// Package static holds the shop's stylesheet and illustrations, embedded in
// the binary so one file is the whole shop.
package static

import (
	"embed"
	iofs "io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed shop.css img live.js metrics-live.js
var files embed.FS

// FS is the embedded static files.
var FS = files

// Handler serves the static files. They change only with the binary, so
// browsers may cache them for an hour. Directories are not files: they are a
// 404, not a listing of what the binary holds.
func Handler() http.Handler {
	fs := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if fi, err := iofs.Stat(files, name); name == "" || (err == nil && fi.IsDir()) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fs.ServeHTTP(w, r)
	})
}
