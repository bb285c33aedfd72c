package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/statelab/shop/scenarios/cluster"
)

// RunConcurrency runs only the scaling table's concurrency curve: the
// catalog at 10, 100 and 1000 concurrent shoppers on a three-replica redis
// cluster behind the project's nginx, exactly as Run measures it, without
// the minutes the rest of the bench takes (`bench -only concurrency`). It
// writes no report; it fails when any request failed.
func RunConcurrency(ctx context.Context, o Options, w io.Writer) ([]Measurement, error) {
	return runPart(ctx, o, w, concurrencyPart)
}

// concurrencyPart is RunConcurrency once the frame is set.
func concurrencyPart(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) ([]Measurement, error) {
	c, err := cluster.Start(ctx, cluster.Options{Replicas: 3, Store: "redis", LB: "sticky", Binary: bin, Dir: filepath.Join(dir, "redis"),
		Env: []string{"SHOP_LOG_LEVEL=warn"}})
	if err != nil {
		return nil, fmt.Errorf("bench: start redis cluster: %w", err)
	}
	defer c.Close()
	shoppers, err := warmShoppers(ctx, c.URL(), o.Shoppers)
	if err != nil {
		return nil, fmt.Errorf("bench: warm sessions: %w", err)
	}
	slug, err := productSlug(ctx, c.URL())
	if err != nil {
		return nil, err
	}
	ms := concurrencyCurve(ctx, c, o, targets(c.URL(), PageCatalog, shoppers, slug), logf)
	var failed []string
	for _, m := range ms {
		if m.Success < 1 {
			failed = append(failed, fmt.Sprintf("%d shoppers: %.3f%% succeeded: %s", m.Workers, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	if len(failed) > 0 {
		return ms, fmt.Errorf("bench: failed requests: %s", strings.Join(failed, "; "))
	}
	logf("bench: no failed request at any concurrency")
	return ms, nil
}
