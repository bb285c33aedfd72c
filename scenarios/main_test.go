package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/scenarios/lab"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestList(t *testing.T) {
	code, out, _ := runCLI(t, "list")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, name := range []string{"across-replicas", "sticky", "failover", "rolling-restart", "scale-out", "redis-outage", "concurrent-cart", "redis-restart"} {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, name+" — ") && len(l) > len(name)+10 {
				found = true
			}
		}
		if !found {
			t.Errorf("list has no line %q — lesson:\n%s", name, out)
		}
	}
	// Every entry of the list is a name that show shows: load is the
	// benchmark, named apart, not an entry.
	for _, l := range lines {
		name, _, ok := strings.Cut(l, " — ")
		if !ok {
			continue
		}
		if code, _, errOut := runCLI(t, "show", name); code != exitOK {
			t.Errorf("list has %q, which show rejects: %s", name, errOut)
		}
	}
}

// TestHelpNamesEveryFlag: the help names every store, every run flag and
// matrix's -only.
func TestHelpNamesEveryFlag(t *testing.T) {
	_, out, _ := runCLI(t, "help")
	for _, want := range []string{"cookie", "-profile", "-cache", "-only", "-store", "-lb", "-lock", "-report", "-target", "-driver", "-db", buildDir()} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"dance"}, `unknown command "dance"`},
		{[]string{"run"}, "which scenario?"},
		{[]string{"run", "nosuch"}, `no scenario "nosuch"`},
		{[]string{"run", "failover", "-store", "disk"}, `-store=disk: want memory, redis`}, // and the other kinds
		{[]string{"run", "failover", "-lb", "round-robin"}, `-lb=round-robin: want roundrobin, sticky or noretry`},
		{[]string{"run", "chaos", "-profile", "stateles"}, `-profile=stateles: want stateful or stateless`},
		{[]string{"run", "./no/such/script.txt"}, `no/such/script.txt: no such file`},
		{[]string{"run", "failover", "-report", "/no/such/dir/r.html"}, `-report: open /no/such/dir/r.html: no such file or directory`},
		{[]string{"run", "failover", "-driver", "compose"}, "-driver and -compose-file need -target"},
		{[]string{"run", "failover", "-target", "http://x", "-driver", "k8s"}, `-driver=k8s: want none, goreman or compose`},
		{[]string{"show"}, "usage: scenarios show NAME"},
		{[]string{"run", "load", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"matrix", "-only", "across-replics"}, `-only: no scenario "across-replics"; there are: across-replicas,`},
		{[]string{"show", "load"}, `load is the load benchmark, not a scenario script`},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, tt.args...)
		if code != exitError || !strings.Contains(errOut, tt.want) {
			t.Errorf("scenarios %q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errOut, exitError, tt.want)
		}
	}
}

func TestShow(t *testing.T) {
	code, out, _ := runCLI(t, "show", "failover")
	if code != 0 || !strings.Contains(out, "kill -9 replica of alice") {
		t.Errorf("show failover: exit %d\n%s", code, out)
	}
}

func TestPickConfig(t *testing.T) {
	s, err := lab.Lookup("failover") // declares memory+sticky, then redis+roundrobin
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want lab.Config
	}{
		{nil, lab.Config{Store: "memory", LB: "sticky", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}},
		{[]string{"-store", "redis"}, lab.Config{Store: "redis", LB: "roundrobin", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}},
		// Not declared: the flags win, the judge will say no expectation applies if none does.
		{[]string{"-store", "memory", "-lb", "roundrobin"}, lab.Config{Store: "memory", LB: "roundrobin", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}},
	}
	for _, tt := range tests {
		_, f, err := parseRunFlags(append([]string{"failover"}, tt.args...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if got := pickConfig(s, f); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestRunWritesReport(t *testing.T) {
	testenv.Require(t, "nginx", "redis-server")
	report := filepath.Join(t.TempDir(), "report.html")
	code, out, errOut := runCLI(t, "run", "across-replicas", "-store", "redis", "-report", report)
	t.Log(out, errOut)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"alice adds 2 of product 1", "✓ expect carts intact", "PASS: observed what across-replicas expects", "replica  requests"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	// Ten requests: the report lists them one by one, and tells the story
	// the terminal told.
	for _, want := range []string{`data-testid="sequence"`, "carts lost: 0, wrong: 0 of 3", "alice adds 2 of product 1 → shop"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("report lacks %q:\n%.500s", want, html)
		}
	}
}

func TestRunMismatchExitsOne(t *testing.T) {
	testenv.Require(t, "nginx")
	// across-replicas expects lost carts from memory sessions; sticky
	// routing (not a configuration the script declares) keeps them. The
	// run must exit 1 and name the difference.
	code, out, _ := runCLI(t, "run", "across-replicas", "-store", "memory", "-lb", "sticky")
	if code != exitMismatch || !strings.Contains(out, "across-replicas.txt:20: expected lost carts, observed 3 of 3 carts intact") {
		t.Errorf("exit %d, want %d\n%s", code, exitMismatch, out)
	}
}

func TestMatrix(t *testing.T) {
	testenv.Require(t, "nginx", "redis-server")
	code, out, errOut := runCLI(t, "matrix", "-only", "across-replicas")
	t.Log(out, errOut)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"| across-replicas | memory | roundrobin | on | lost carts | 0 / 3 / 0 |",
		"| across-replicas | redis | roundrobin | on | carts intact; cart of alice is 4 | 3 / 0 / 0 |",
		"| across-replicas | cookie | roundrobin | on | carts intact; cart of alice is 4 | 3 / 0 / 0 |",
		"- **across-replicas**: round robin",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("matrix lacks %q", want)
		}
	}
}

// TestTargetWithoutFaultDriver: a fault step against a target with no fault
// driver fails before any load starts, naming the line, and the story never
// speaks of starting a cluster. Port 1 is never served: the lab must not
// even try to shop there.
func TestTargetWithoutFaultDriver(t *testing.T) {
	code, out, errOut := runCLI(t, "run", "failover", "-target", "http://127.0.0.1:1")
	want := "scenarios/lab/scripts/failover.txt:17: kill -9 replica of alice: the none driver cannot kill"
	if code != exitError || !strings.Contains(errOut, want) || !strings.Contains(errOut, "unsupported operation") {
		t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, exitError, want)
	}
	if strings.Contains(out, "starting") || strings.Contains(out, "load") {
		t.Errorf("the run began before failing:\n%s", out)
	}
}

// TestRunScriptFromFile: a script outside the repository runs by its path,
// and its errors name that path.
func TestRunScriptFromFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "mine.txt")
	if err := os.WriteFile(bad, []byte("lesson l\nrun with store=redis\nstart 3 replicas\nlod 6 shoppers for 2s\nexpect carts intact\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "run", bad)
	want := bad + `:4: unknown step "lod 6 shoppers for 2s"; did you mean "load N shoppers for D" (e.g. "load 6 shoppers for 2s")?`
	if code != exitError || strings.TrimSpace(errOut) != "scenarios: "+want {
		t.Errorf("exit %d, stderr %q; want exit %d and one line %q", code, errOut, exitError, want)
	}
	code, out, _ := runCLI(t, "show", bad)
	if code != exitOK || !strings.Contains(out, "lod 6 shoppers") {
		t.Errorf("show %s: exit %d\n%s", bad, code, out)
	}

	testenv.Require(t, "nginx")
	good := filepath.Join(dir, "two-shoppers.txt")
	if err := os.WriteFile(good, []byte("lesson memory sessions under sticky routing stay put\nrun with store=memory lb=sticky\nstart 2 replicas\nas ann add 1 of product 3\nas ann add 2 of product 3\nexpect cart of ann is 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "run", good)
	if code != exitOK || !strings.Contains(out, "PASS: observed what two-shoppers expects") {
		t.Errorf("run %s: exit %d\n%s%s", good, code, out, errOut)
	}
}

// TestListMarksBrokenScripts: the list prints a broken script with its
// first error and every other one as usual.
func TestListMarksBrokenScripts(t *testing.T) {
	s, err := lab.Lookup("sticky")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeList(&out, []lab.Builtin{
		{Name: "broken", Err: errors.New("scenarios/lab/scripts/broken.txt:4: unknown step \"fly\"")},
		{Name: "sticky", Script: s},
	})
	for _, want := range []string{"broken — BROKEN: scenarios/lab/scripts/broken.txt:4: unknown step", "sticky — " + s.Lesson, "(not a scenario: scenarios run load"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, out.String())
		}
	}
}
