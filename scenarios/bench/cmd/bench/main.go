// Command bench runs the shop's benchmark (package scenarios/bench) and
// writes docs/benchmarks.md: `make bench`, or
//
//	go run ./scenarios/bench/cmd/bench [-short] [-scaling] [-doc docs/benchmarks.md]
//	go run ./scenarios/bench/cmd/bench -only concurrency|database|latency|wait|live|jobs|uploads|profiles
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/statelab/shop/scenarios/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o bench.Options
	fs.BoolVar(&o.Short, "short", false, "a few seconds: every step briefly, no curves (a smoke test)")
	fs.BoolVar(&o.Scaling, "scaling", true, "also run the curves: 1-4 replicas, 10-1000 shoppers, 10k-1M sessions")
	fs.StringVar(&o.Binary, "binary", "", "shop binary to run; empty builds ./cmd/shop")
	fs.StringVar(&o.Dir, "dir", "", "keep the clusters' logs here; empty is a temp dir")
	fs.DurationVar(&o.Duration, "duration", 0, "length of each measurement and model (default 10s, short 200ms)")
	fs.IntVar(&o.Rounds, "rounds", 0, "turns each measurement is taken in, alternating with what it is compared with (default 10)")
	fs.IntVar(&o.Rate, "rate", 0, "open-model request rate per second (default 200)")
	fs.IntVar(&o.Workers, "workers", 0, "closed-model concurrent clients (default 32)")
	fs.StringVar(&o.Doc, "doc", "", "write the Markdown report here, e.g. docs/benchmarks.md (with -only profiles: replace its price section)")
	fs.StringVar(&o.Price, "price", "", "write the price of statelessness (the profiles part) here for /state to embed, e.g. state/price/measured.json")
	only := fs.String("only", "", "run one part alone, print its table and write no report: concurrency (the scaling table's 10-1000 shoppers), database (catalog and checkout on SQLite and PostgreSQL), latency (memory and redis sessions with Redis 0, 1 and 5 ms away), wait (a session write acknowledged after WAIT 1, under Sentinel), live (5,000 event streams' memory, an event from one replica to another through Redis, the catalog with 1,000 streams open), jobs (checkout with -jobs memory and queue, and checkout → receipt ready, on SQLite and PostgreSQL), uploads (a 200 KB review photo's upload and serving on a replica's disk and in versitygw, and the replica's RSS while 20 photos of 5 MiB upload at once), profiles (the price of statelessness: a shopper's walk, catalog to checkout, with -profile stateful and stateless, and each cluster's RSS; with -doc and -price it writes its section and the figures /state embeds)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.Command = commandLine(args)
	switch *only {
	case "":
	case "concurrency":
		_, err := bench.RunConcurrency(ctx, o, stdout)
		return err
	case "database":
		_, err := bench.RunDatabase(ctx, o, stdout)
		return err
	case "latency":
		_, err := bench.RunLatency(ctx, o, stdout)
		return err
	case "wait":
		_, err := bench.RunWait(ctx, o, stdout)
		return err
	case "live":
		_, err := bench.RunLive(ctx, o, stdout)
		return err
	case "jobs":
		_, err := bench.RunJobs(ctx, o, stdout)
		return err
	case "uploads":
		_, err := bench.RunUploads(ctx, o, stdout)
		return err
	case "profiles":
		_, err := bench.RunProfiles(ctx, o, stdout)
		return err
	default:
		return fmt.Errorf("bench: -only %q: want concurrency, database, latency, wait, live, jobs, uploads or profiles", *only)
	}
	_, err := bench.Run(ctx, o, stdout)
	return err
}

// commandLine is how the report says it was made: `make bench` sets
// BENCH_COMMAND, since `go run` hides its own arguments.
func commandLine(args []string) string {
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		return c
	}
	return "go run ./scenarios/bench/cmd/bench " + strings.Join(args[1:], " ")
}
