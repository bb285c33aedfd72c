package bench

// What the parts share to set themselves up: clusters started side by
// side under one name each and closed together, and the frame of an
// `-only` run (defaults, the machine line, the working directory and the
// binary, the table, the goal, the failed requests).

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/statelab/shop/scenarios/cluster"
)

// clusterSet is clusters measured against each other, by name.
type clusterSet map[string]*cluster.Cluster

// startClusters starts one cluster per name, in order, with the options
// opts gives it. On failure it closes those it started and names the one
// that failed ("the sqlite memory-jobs cluster").
func startClusters(ctx context.Context, names []string, opts func(name string) (cluster.Options, string)) (clusterSet, error) {
	set := clusterSet{}
	for _, name := range names {
		o, what := opts(name)
		c, err := cluster.Start(ctx, o)
		if err != nil {
			set.Close()
			return nil, fmt.Errorf("bench: start the %s cluster: %w", what, err)
		}
		set[name] = c
	}
	return set, nil
}

// Close closes every cluster of the set.
func (s clusterSet) Close() {
	for _, c := range s {
		c.Close()
	}
}

// runPart is the frame of an -only run: Options' defaults, the machine
// line, the working directory and the shop binary, then the part itself.
func runPart[T any](ctx context.Context, o Options, w io.Writer, part func(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) (T, error)) (T, error) {
	o = o.withDefaults()
	logf := startLog(w, describeMachine())
	dir, bin, cleanup, err := benchDirAndBinary(ctx, o)
	if err != nil {
		var zero T
		return zero, err
	}
	defer cleanup()
	return part(ctx, o, bin, dir, logf)
}

// finishPart prints an -only part's table and its goal (when it has
// one), and fails when the part did or when a request failed: failed
// names each measurement that had a failure.
func finishPart(w io.Writer, header []string, rows [][]string, g Goal, hasGoal bool, err error, failed []string) error {
	if len(rows) > 0 {
		printColumns(w, header, rows)
	}
	if hasGoal {
		mark := "met"
		if !g.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "%s %s: %s (goal %s) %s\n", mark, g.Name, g.Measured, g.Target, g.Why)
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: failed requests: %s", strings.Join(failed, "; "))
	}
	return nil
}
