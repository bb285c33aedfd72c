//go:build ignore

// gen writes the committed configurations under deploy/nginx and
// deploy/sentinel from deploy.GeneratedFiles; `go generate ./deploy/` runs
// it from the deploy folder.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/statelab/shop/deploy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	files, err := deploy.GeneratedFiles()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.FromSlash(f.Path), f.Body, 0o644); err != nil {
			return err
		}
	}
	return nil
}
