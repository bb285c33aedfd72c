// Command scenarios is the lab: each lesson of stateless design as a
// readable script that starts its own cluster, shops, injects a fault and
// judges what happened to every cart.
//
//	go run ./scenarios list
//	go run ./scenarios show NAME|PATH.txt
//	go run ./scenarios run NAME|PATH.txt [-profile stateful|stateless] [-store memory|redis|cookie] [-lb roundrobin|sticky|noretry] [-lock on|off] [-cache off|on|uninvalidated] [-live local|redis] [-db sqlite|postgres] [-report FILE.html] [-target URL [-driver goreman|compose]]
//	go run ./scenarios run load [-short] [-scaling]
//	go run ./scenarios matrix [-only NAME] [-db sqlite|postgres]
//
// The engine lives in scenarios/lab; this file is the command line only.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/statelab/shop/scenarios/bench"
	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/scenarios/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes: 0 the outcome was the expected one, 1 it was not, 2 the lab
// could not run (usage, a cluster that did not start).
const (
	exitOK       = 0
	exitMismatch = 1
	exitError    = 2
)

const usage = `usage:
  scenarios list                 one line per scenario: name — lesson (a broken one says why)
  scenarios show NAME|PATH.txt   print a scenario's script
  scenarios run NAME|PATH.txt [flags]
                                 run one scenario, built in or from any file, and judge it
  scenarios run load [-short] [-scaling] [-duration D] [-doc FILE]
                                 the load benchmark (package scenarios/bench); measured, not judged
  scenarios matrix [-only NAME] [-db sqlite|postgres]
                                 run every scenario under every configuration it applies to
                                 (-only: one scenario's configurations); a Markdown table on stdout

run flags (the first "run with" line of the script that agrees with them is run):
  -profile stateful|stateless   the replicas' -profile: every kind of state in each replica (behind sticky
                                routing) or outside it; the other flags win over it
  -store memory|redis|cookie    where sessions live: each replica, Redis, or sealed in the browser's cookie
  -lb roundrobin|sticky|noretry nginx's policy (noretry: no retry on another replica, like an L4 balancer)
  -lock on|off                  the session write lock
  -cache off|on|uninvalidated   the near-cache of redis sessions (uninvalidated: on, without invalidation)
  -live local|redis             live events (GET /events): the shop's default, this replica's only, or every replica's through Redis
  -db sqlite|postgres   the replicas' database: one SQLite file (default), or a PostgreSQL the run starts
  -report FILE.html     write a self-contained report with a timeline
  -target URL           shop against a running cluster instead of starting one
  -driver none|goreman|compose
                        with -target: how faults are injected (goreman: the cluster of make cluster;
                        compose: docker compose kill|stop|start|pause|unpause)
  -compose-file FILE    with -driver compose: the compose file
  -v                    copy the cluster's process output to stderr

A local run builds cmd/shop once per invocation into %s
(reused by the next run; go's build cache makes that quick) and removes its cluster's files at exit,
Ctrl-C included.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, buildDir())
		return exitError
	}
	var err error
	code := exitOK
	switch args[0] {
	case "list":
		err = list(stdout)
	case "show":
		if len(args) != 2 {
			err = errors.New("usage: scenarios show NAME")
			break
		}
		err = show(stdout, args[1])
	case "run":
		if len(args) > 1 && args[1] == "load" {
			code, err = runLoad(ctx, args[2:], stdout, stderr)
			break
		}
		code, err = runOne(ctx, args[1:], stdout, stderr)
	case "matrix":
		code, err = matrix(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, usage, buildDir())
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "scenarios: %v\n", err)
		if code == exitOK {
			code = exitError
		}
	}
	return code
}

// list prints every built-in scenario; a broken one is marked with its
// first error and the others list as usual.
func list(w io.Writer) error {
	writeList(w, lab.Builtins())
	return nil
}

func writeList(w io.Writer, builtins []lab.Builtin) {
	for _, b := range builtins {
		if b.Err != nil {
			fmt.Fprintf(w, "%s — BROKEN: %v\n", b.Name, b.Err)
			continue
		}
		fmt.Fprintf(w, "%s — %s\n", b.Name, b.Script.Lesson)
	}
	fmt.Fprintf(w, "\n(not a scenario: %s)\n", loadLesson)
}

// show prints a script as written: a built-in one (even broken) or a file.
func show(w io.Writer, arg string) error {
	if arg == "load" {
		return errors.New(`load is the load benchmark, not a scenario script: it has nothing to show; run it with "scenarios run load" (see scenarios help)`)
	}
	if lab.IsPath(arg) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	src, err := lab.Source(arg)
	if err != nil {
		_, err = lab.Lookup(arg) // the error that lists the names
		return err
	}
	_, err = io.WriteString(w, src)
	return err
}

// loadLesson is the load benchmark's line in the list: it measures, it
// does not judge carts.
const loadLesson = "scenarios run load is the load benchmark (scenarios/bench): what Redis sessions cost per request against memory ones, measured, not judged"

// runLoad runs the load benchmark of package bench.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("run load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.BoolVar(&o.Short, "short", false, "every step briefly, no curves: a smoke test")
	fs.BoolVar(&o.Scaling, "scaling", false, "also run the curves (1-4 replicas, 10-1000 shoppers, 10k-1M sessions); minutes")
	fs.DurationVar(&o.Duration, "duration", 0, "length of each measurement (bench default)")
	fs.StringVar(&o.Doc, "doc", "", "write the Markdown report here, e.g. docs/benchmarks.md")
	fs.StringVar(&o.Dir, "dir", "", "keep the clusters' logs here; empty is a temp dir")
	if err := fs.Parse(args); err != nil {
		return exitError, err
	}
	if fs.NArg() > 0 {
		return exitError, fmt.Errorf("run load: unexpected arguments %q", fs.Args())
	}
	o.Command = "go run ./scenarios run load " + strings.Join(args, " ")
	if _, err := bench.Run(ctx, o, stdout); err != nil {
		return exitError, err
	}
	return exitOK, nil
}

// runFlags are run's flags.
type runFlags struct {
	profile         string
	store, lb, lock string
	cache           string
	uploads         string
	live            string
	report          string
	target          string
	driver          string
	composeFile     string
	db              string
	verbose         bool
	set             map[string]bool // flags given on the command line
}

func parseRunFlags(args []string, stderr io.Writer) (name string, f runFlags, err error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.profile, "profile", "", "the replicas' -profile: stateful or stateless")
	fs.StringVar(&f.store, "store", "", "session store: memory or redis")
	fs.StringVar(&f.lb, "lb", "", "nginx policy: roundrobin, sticky or noretry")
	fs.StringVar(&f.lock, "lock", "", "session lock: on or off")
	fs.StringVar(&f.cache, "cache", "", "near-cache of redis sessions: off, on or uninvalidated (on without invalidation, to teach)")
	fs.StringVar(&f.uploads, "uploads", "", "review photos: disk (each replica's own) or s3 (an object store)")
	fs.StringVar(&f.live, "live", "", "live events: local or redis (unset: the shop's default)")
	fs.StringVar(&f.report, "report", "", "write an HTML report to this file")
	fs.StringVar(&f.target, "target", "", "run against this running cluster's URL")
	fs.StringVar(&f.driver, "driver", "none", "with -target, fault driver: none, goreman (make cluster) or compose")
	fs.StringVar(&f.composeFile, "compose-file", "", "with -driver compose, the compose file")
	fs.StringVar(&f.db, "db", "sqlite", "the replicas' database: sqlite (one shared file) or postgres (a PostgreSQL server the run starts)")
	fs.BoolVar(&f.verbose, "v", false, "copy the cluster's process output to stderr")
	// The name may come before or after the flags.
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", f, err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if name == "" {
		return "", f, errors.New("run: which scenario? (scenarios list)")
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	pairs := f.pairs()
	for _, key := range slices.Sorted(maps.Keys(pairs)) {
		if err := lab.CheckConfigValue(key, pairs[key]); err != nil {
			return "", f, fmt.Errorf("-%v", err)
		}
	}
	if f.db != cluster.DatabaseSQLite && f.db != cluster.DatabasePostgres {
		return "", f, fmt.Errorf("-db %q: want %s or %s", f.db, cluster.DatabaseSQLite, cluster.DatabasePostgres)
	}
	if f.target != "" && f.set["db"] {
		return "", f, errors.New("-db starts a database for a local cluster; with -target the cluster is already running")
	}
	if f.driver != "none" && f.driver != "goreman" && f.driver != "compose" {
		return "", f, fmt.Errorf("-driver=%s: want none, goreman or compose", f.driver)
	}
	if f.target == "" && (f.set["driver"] || f.set["compose-file"]) {
		return "", f, errors.New("-driver and -compose-file need -target")
	}
	return name, f, nil
}

// pickConfig chooses the configuration for a run: the first one the script
// declares that agrees with every flag given, else the configuration the
// flags describe (a profile's presets, the defaults, the flags winning; a
// configuration the script may have no expectation for, which the judge
// then says).
func pickConfig(s *lab.Script, f runFlags) lab.Config {
	pairs := f.pairs()
	for _, c := range s.Configs {
		if pairs.Holds(c) {
			return c
		}
	}
	return lab.ConfigOf(pairs)
}

// pairs are the configuration flags given on the command line, as the keys
// of a "run with" line.
func (f runFlags) pairs() lab.Condition {
	pairs := lab.Condition{}
	for key, val := range map[string]string{"profile": f.profile, "store": f.store, "lb": f.lb, "lock": f.lock, "cache": f.cache, "uploads": f.uploads, "live": f.live} {
		if f.set[key] {
			pairs[key] = val
		}
	}
	return pairs
}

func runOne(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	name, f, err := parseRunFlags(args, stderr)
	if err != nil {
		return exitError, err
	}
	s, err := lab.Find(name)
	if err != nil {
		return exitError, err
	}
	// A report that cannot be written must not cost a whole run.
	if f.report != "" {
		if err := checkWritable(f.report); err != nil {
			return exitError, fmt.Errorf("-report: %w", err)
		}
	}
	o := lab.Options{Config: pickConfig(s, f), Out: stdout}
	switch {
	case f.target != "" && f.driver == "goreman":
		o.Driver = &lab.GoremanDriver{URL: f.target}
		o.Detect = true
	case f.target != "" && f.driver == "compose":
		o.Driver = &lab.ComposeDriver{URL: f.target, File: f.composeFile}
		o.Detect = true
	case f.target != "":
		o.Driver = lab.NoFaults{URL: f.target}
		o.Detect = true
	default:
		bin, err := buildShop(ctx)
		if err != nil {
			return exitError, err
		}
		d := &lab.LocalDriver{Binary: bin, Database: f.db}
		if f.verbose {
			d.Stdout = stderr
		}
		o.Driver = d
	}
	res, err := lab.Run(ctx, s, o)
	if err != nil {
		return exitError, err
	}
	lab.WriteTable(stdout, res)
	if f.report != "" {
		if err := writeReport(f.report, res); err != nil {
			return exitError, err
		}
		fmt.Fprintf(stdout, "report: %s\n", f.report)
	}
	if !res.Pass {
		return exitMismatch, nil
	}
	return exitOK, nil
}

// buildDir is where the lab builds the shop: one folder in the user's
// cache that every invocation reuses, instead of a new temp folder per run
// that nothing removes. It is one folder per checkout (by the working
// directory's path): two checkouts of different versions sharing one binary
// would restart each other's replicas with the wrong one.
func buildDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	wd, _ := os.Getwd()
	sum := sha256.Sum256([]byte(wd))
	return filepath.Join(dir, "statelab", "shop-build-"+hex.EncodeToString(sum[:6]))
}

// buildShop builds cmd/shop once for this invocation into buildDir.
func buildShop(ctx context.Context) (string, error) {
	return cluster.BuildShop(ctx, buildDir())
}

// checkWritable creates path if it is missing (and removes it again) or
// opens it for writing, without changing an existing file.
func checkWritable(path string) error {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if os.IsNotExist(statErr) {
		return os.Remove(path)
	}
	return nil
}

func writeReport(path string, res *lab.Result) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := lab.WriteReport(out, res); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// matrix runs every scenario under every configuration it declares, one
// after the other: the runs share two cores with nothing else.
func matrix(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "run only this scenario")
	db := fs.String("db", cluster.DatabaseSQLite, "the replicas' database: sqlite or postgres")
	if err := fs.Parse(args); err != nil {
		return exitError, err
	}
	if *db != cluster.DatabaseSQLite && *db != cluster.DatabasePostgres {
		return exitError, fmt.Errorf("-db %q: want %s or %s", *db, cluster.DatabaseSQLite, cluster.DatabasePostgres)
	}
	builtins := lab.Builtins()
	if *only != "" {
		if _, err := lab.Lookup(*only); err != nil {
			return exitError, fmt.Errorf("-only: %w", err)
		}
	}
	bin, err := buildShop(ctx)
	if err != nil {
		return exitError, err
	}
	start := time.Now()
	var results []*lab.Result
	code := exitOK
	for _, b := range builtins {
		if *only != "" && b.Name != *only {
			continue
		}
		if b.Err != nil {
			// One broken script must not cost the others their run.
			fmt.Fprintf(stderr, "scenarios: %s is broken: %v\n", b.Name, b.Err)
			code = exitError
			continue
		}
		s := b.Script
		for _, cfg := range s.Configs {
			fmt.Fprintf(stderr, "running %s (%s)\n", s.Name, cfg)
			res, err := lab.Run(ctx, s, lab.Options{Config: cfg, Driver: &lab.LocalDriver{Binary: bin, Database: *db}})
			if err != nil {
				return exitError, fmt.Errorf("%s (%s): %w", s.Name, cfg, err)
			}
			if !res.Pass && code == exitOK {
				code = exitMismatch
			}
			results = append(results, res)
		}
	}
	lab.WriteMatrix(stdout, results, time.Since(start))
	return code, nil
}
