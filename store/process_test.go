package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The environment of a helper process started by TestConcurrentProcesses.
const (
	helperDBEnv      = "STORE_TEST_HELPER_DB"
	helperWorkerEnv  = "STORE_TEST_HELPER_WORKER"
	helperOrdersEnv  = "STORE_TEST_HELPER_ORDERS"
	helperProductEnv = "STORE_TEST_HELPER_PRODUCT"
)

// helperResult is what a helper process reports on its last line.
type helperResult struct {
	Worker        int
	Seeded        bool
	SharedID      string
	SharedCreated bool
	Created       int
	OutOfStock    int
	Errors        []string
}

const resultPrefix = "RESULT "

// TestConcurrentProcesses starts replica-like processes on one new database
// file, all at once: they race to migrate and seed, then each places orders of
// one unit of the same scarce product, more in total than its stock, plus one
// order under a key they share. Separate processes matter: SQLite's locking
// between processes is file locks, and only they show SQLITE_BUSY that a
// single process's connections would not.
func TestConcurrentProcesses(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const (
			workers = 4
			orders  = 30 // per worker
		)
		exe, err := os.Executable()
		if err != nil {
			t.Skipf("cannot find the test binary to re-execute: %v", err)
		}

		// The scarcest seeded product, so that the workers sell out.
		var productID int64
		initial := 0
		var id int64
		for _, c := range seedCatalog {
			for _, p := range c.Products {
				id++
				if productID == 0 || p.Stock < initial {
					productID, initial = id, p.Stock
				}
			}
		}
		if workers*orders+1 <= initial {
			t.Fatalf("%d orders cannot sell out a stock of %d", workers*orders+1, initial)
		}

		path := b.newDSN(t)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()

		type proc struct {
			cmd    *exec.Cmd
			stdin  io.WriteCloser
			lines  *bufio.Scanner
			stderr strings.Builder
		}
		procs := make([]*proc, workers)
		for w := range procs {
			p := &proc{cmd: exec.CommandContext(ctx, exe, "-test.run=^TestHelperProcess$", "-test.count=1")}
			p.cmd.Env = append(os.Environ(),
				helperDBEnv+"="+path,
				helperWorkerEnv+"="+strconv.Itoa(w),
				helperOrdersEnv+"="+strconv.Itoa(orders),
				helperProductEnv+"="+strconv.FormatInt(productID, 10),
			)
			p.cmd.Stderr = &p.stderr
			if p.stdin, err = p.cmd.StdinPipe(); err != nil {
				t.Fatal(err)
			}
			stdout, err := p.cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			p.lines = bufio.NewScanner(stdout)
			if err := p.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			procs[w] = p
		}

		// Two start barriers: every process is up before any opens the
		// database (they race to migrate and seed), and every process has it
		// open before any orders (they race on the shared key).
		for _, phase := range []string{"READY", "OPENED"} {
			for w, p := range procs {
				if !p.lines.Scan() || p.lines.Text() != phase {
					out := []string{p.lines.Text()}
					for p.lines.Scan() {
						out = append(out, p.lines.Text())
					}
					t.Fatalf("worker %d: want %s, got:\n%s\nstderr:\n%s", w, phase, strings.Join(out, "\n"), p.stderr.String())
				}
			}
			for _, p := range procs {
				if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, p := range procs {
			p.stdin.Close()
		}

		results := make([]helperResult, workers)
		var wg sync.WaitGroup
		for w, p := range procs {
			wg.Go(func() {
				var out []string
				for p.lines.Scan() {
					line := p.lines.Text()
					if r, ok := strings.CutPrefix(line, resultPrefix); ok {
						if err := json.Unmarshal([]byte(r), &results[w]); err != nil {
							t.Errorf("worker %d: bad result %q: %v", w, r, err)
						}
						continue
					}
					out = append(out, line)
				}
				if err := p.cmd.Wait(); err != nil {
					t.Errorf("worker %d: %v\nstdout:\n%s\nstderr:\n%s", w, err, strings.Join(out, "\n"), p.stderr.String())
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		created, seeded, sharedCreated := 0, 0, 0
		for w, r := range results {
			for _, e := range r.Errors {
				if strings.Contains(e, "SQLITE_BUSY") || strings.Contains(e, "locked") {
					t.Errorf("worker %d: SQLITE_BUSY: %s", w, e)
				} else {
					t.Errorf("worker %d: %s", w, e)
				}
			}
			if r.Seeded {
				seeded++
			}
			if r.SharedCreated {
				sharedCreated++
			}
			if r.SharedID == "" || r.SharedID != results[0].SharedID {
				t.Errorf("worker %d got shared order %q, worker 0 got %q", w, r.SharedID, results[0].SharedID)
			}
			created += r.Created
			t.Logf("worker %d: seeded %v, shared created %v, %d created, %d out of stock",
				w, r.Seeded, r.SharedCreated, r.Created, r.OutOfStock)
		}
		if seeded != 1 {
			t.Errorf("%d processes seeded, want exactly 1", seeded)
		}
		if sharedCreated != 1 {
			t.Errorf("the shared key created %d orders, want exactly 1", sharedCreated)
		}
		created += sharedCreated

		d := openPath(t, path)
		final := stock(t, d, productID)
		if initial-final != created {
			t.Errorf("stock went from %d to %d, but %d orders were created", initial, final, created)
		}
		if final != 0 {
			t.Errorf("stock = %d after %d attempts on a stock of %d, want sold out", final, workers*orders+1, initial)
		}
		if n := count(t, d, "SELECT count(*) FROM orders"); n != created {
			t.Errorf("%d orders stored, %d reported created", n, created)
		}
		if n := count(t, d, "SELECT CAST(coalesce(sum(quantity), 0) AS BIGINT) FROM order_lines WHERE product_id = ?", productID); n != initial-final {
			t.Errorf("order lines hold %d units, stock fell by %d", n, initial-final)
		}
		if n := count(t, d, "SELECT count(*) FROM products"); n != seedProductCount() {
			t.Errorf("%d products, want %d (seeded once)", n, seedProductCount())
		}
	})
}

// TestHelperProcess is one worker of TestConcurrentProcesses; run directly it
// does nothing.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperDBEnv)
	if path == "" {
		t.Skip("helper for TestConcurrentProcesses")
	}
	worker, err1 := strconv.Atoi(os.Getenv(helperWorkerEnv))
	orders, err2 := strconv.Atoi(os.Getenv(helperOrdersEnv))
	productID, err3 := strconv.ParseInt(os.Getenv(helperProductEnv), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}

	stdin := bufio.NewReader(os.Stdin)
	barrier := func(phase string) {
		fmt.Println(phase)
		if _, err := stdin.ReadString('\n'); err != nil {
			t.Fatalf("%s: waiting for go: %v", phase, err)
		}
	}

	barrier("READY")
	d, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Warm the read pool, so that every process reaches its look-up of the
	// shared key before the first one can commit it.
	if err := d.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	barrier("OPENED")

	r := helperResult{Worker: worker, Seeded: d.seeded}
	defer func() {
		b, _ := json.Marshal(r)
		fmt.Println(resultPrefix + string(b))
	}()
	line := []NewOrderLine{{ProductID: productID, Quantity: 1}}

	// Every worker submits the same checkout: one shopper's form retried
	// through every replica.
	o, created, err := d.PlaceOrder(t.Context(), NewOrder{
		IdempotencyKey: "shared", SessionID: "shared-session", Replica: "shared", Lines: line,
	})
	if err != nil {
		r.Errors = append(r.Errors, "shared: "+err.Error())
	}
	r.SharedID, r.SharedCreated = o.ID, created

	for i := range orders {
		_, created, err := d.PlaceOrder(t.Context(), NewOrder{
			IdempotencyKey: fmt.Sprintf("w%d-%d", worker, i),
			SessionID:      fmt.Sprintf("session-%d", worker),
			Replica:        fmt.Sprintf("proc%d", worker),
			Lines:          line,
		})
		switch {
		case errors.Is(err, ErrOutOfStock):
			r.OutOfStock++
		case err != nil:
			r.Errors = append(r.Errors, err.Error())
		case created:
			r.Created++
		default:
			r.Errors = append(r.Errors, fmt.Sprintf("order %d: a fresh key was not created", i))
		}
	}
}
