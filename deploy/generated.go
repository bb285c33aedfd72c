package deploy

//go:generate go run gen.go

import "fmt"

// GeneratedFile is a configuration committed under deploy/ that
// `go generate ./deploy/` writes from its Go description.
type GeneratedFile struct {
	Path string // slash-separated, relative to deploy/
	Body []byte
}

// GeneratedFiles renders every committed configuration: the nginx ones
// (Renderings) under nginx/ and the sentinel ones (SentinelRenderings)
// under sentinel/. gen.go writes them; a test keeps them fresh.
func GeneratedFiles() ([]GeneratedFile, error) {
	var fs []GeneratedFile
	for _, r := range Renderings() {
		conf, err := RenderNginx(r.Config)
		if err != nil {
			return nil, fmt.Errorf("nginx/%s: %w", r.File, err)
		}
		fs = append(fs, GeneratedFile{Path: "nginx/" + r.File, Body: conf})
	}
	for _, r := range SentinelRenderings() {
		conf, err := RenderSentinel(r.Config)
		if err != nil {
			return nil, fmt.Errorf("sentinel/%s: %w", r.File, err)
		}
		fs = append(fs, GeneratedFile{Path: "sentinel/" + r.File, Body: conf})
	}
	return fs, nil
}
