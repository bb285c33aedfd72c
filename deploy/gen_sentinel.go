//go:build ignore

// gen_sentinel writes the committed sentinel configurations under
// deploy/sentinel from deploy.SentinelRenderings; `go generate ./deploy/`
// runs it from the deploy folder.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/statelab/shop/deploy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen_sentinel:", err)
		os.Exit(1)
	}
}

func run() error {
	for _, r := range deploy.SentinelRenderings() {
		conf, err := deploy.RenderSentinel(r.Config)
		if err != nil {
			return fmt.Errorf("%s: %w", r.File, err)
		}
		if err := os.WriteFile(filepath.Join("sentinel", r.File), conf, 0o644); err != nil {
			return err
		}
	}
	return nil
}
