//go:build ignore

// gen_nginx writes the committed renderings under deploy/nginx from
// deploy.Renderings; `go generate ./deploy/` runs it from the deploy folder.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/statelab/shop/deploy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen_nginx:", err)
		os.Exit(1)
	}
}

func run() error {
	for _, r := range deploy.Renderings() {
		conf, err := deploy.RenderNginx(r.Config)
		if err != nil {
			return fmt.Errorf("%s: %w", r.File, err)
		}
		if err := os.WriteFile(filepath.Join("nginx", r.File), conf, 0o644); err != nil {
			return err
		}
	}
	return nil
}
