package lab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/statelab/shop/session"
)

const header = "lesson l\nrun with store=redis\n"

// TestParseRejectsMalformedScripts: every error is one line naming the file
// and line, what is wrong, and the closest form when there is one.
func TestParseRejectsMalformedScripts(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   string // the whole error
	}{
		{"unknown step", header + "start 3 replicas\nfrobnicate shop2\nexpect carts intact\n",
			`x.txt:4: unknown step "frobnicate shop2"; did you mean "restart TARGET [with drain D | without drain]" (e.g. "restart shop1")?`},
		{"typo in a keyword", header + "start 3 replicas\nlod 6 shoppers for 2s\nwait for load\nexpect carts intact\n",
			`x.txt:4: unknown step "lod 6 shoppers for 2s"; did you mean "load N shoppers for D" (e.g. "load 6 shoppers for 2s")?`},
		{"bad add", header + "start 3 replicas\nas alice add two of product 1\nexpect carts intact\n",
			`x.txt:4: quantity "two": want a number from 1 to 99`},
		{"add misspelt", header + "start 3 replicas\nas alice adds 2 of product 1\nexpect carts intact\n",
			`x.txt:4: "as alice adds 2 of product 1" does not fit any "as" form; did you mean "as NAME add Q of product P [with a note] [in T tabs] [R times]" (e.g. "as alice add 2 of product 1")?`},
		{"quantity too big", header + "start 3 replicas\nas alice add 100 of product 1\nexpect carts intact\n",
			`x.txt:4: quantity 100: want 1 to 99`},
		{"bad duration", header + "start 3 replicas\nload 5 shoppers for soon\nwait for load\nexpect carts intact\n",
			`x.txt:4: "soon" is not a duration; did you mean one like 800ms or 2s (at most 1m)?`},
		{"kill without -9", header + "start 3 replicas\nkill shop2\nexpect carts intact\n",
			`x.txt:4: "kill shop2" does not fit any "kill" form; did you mean "kill -9 TARGET" (e.g. "kill -9 replica of alice")?`},
		{"bad target", header + "start 3 replicas\nstop nginx\nexpect carts intact\n",
			`x.txt:4: unknown target "nginx": want shopN, redis, redis primary or "replica of NAME"`},
		{"no such replica", header + "start 3 replicas\nkill -9 shop4\nexpect carts intact\n",
			`x.txt:4: no replica shop4 here: the cluster has shop1 to shop3`},
		{"drain on redis", header + "start 3 replicas\nstop redis without drain\nexpect carts intact\n",
			`x.txt:4: Redis has no drain: write "stop redis"`},
		{"two drains", header + "start 3 replicas\nstop shop2 with drain 2s\nstart shop2\nstop shop2 without drain\nexpect carts intact\n",
			`x.txt:6: shop2 is stopped with drain 2s on line 4: a replica's drain is set when it starts, so one script gives it one drain`},
		{"bad expectation", header + "start 3 replicas\nexpect carts intcat\n",
			`x.txt:4: unknown expectation "expect carts intcat"; did you mean "expect carts intact"?`},
		{"bad when", header + "start 3 replicas\nexpect carts intact when store=disk\n",
			`x.txt:4: store=disk: want ` + orList(session.Kinds())},
		{"bad lb", "lesson l\nrun with lb=round-robin\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:2: lb=round-robin: want roundrobin, sticky or noretry`},
		{"unknown key", header + "start 3 replicas\nexpect carts intact when colour=red\n",
			`x.txt:4: unknown key "colour": want profile, store, lb, lock, redis, wait, cache, uploads, jobs, schedule or live`},
		{"profile misspelt", "lesson l\nrun with profile=stateles\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:2: profile=stateles: want stateful or stateless`},
		{"profile misspelt in when", header + "start 3 replicas\nexpect carts intact when profile=statless\n",
			`x.txt:4: profile=statless: want stateful or stateless`},
		{"bare profile in run with", "lesson l\nrun with stateless\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:2: "stateless" is not KEY=VALUE; did you mean "profile=stateless"?`},
		{"empty when", header + "start 3 replicas\nexpect carts intact when\n",
			`x.txt:4: "when" without a condition; did you mean "expect carts intact when store=redis"?`},
		{"when on load", header + "start 3 replicas\nload 2 shoppers for 1s when store=redis\nwait for load\nexpect carts intact\n",
			`x.txt:4: "load N shoppers for D" cannot take a when clause: it shapes the whole run`},
		{"bare value in run with", "lesson l\nrun with redis\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:2: "redis" is not KEY=VALUE; did you mean "store=redis"?`},
		{"step before start", header + "kill -9 shop1\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:3: no replica shop1 here: the cluster has shop1 to shop0`},
		{"sleep before start", header + "sleep 1s\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:3: "sleep 1s" before "start N replicas": the cluster must be started first`},
		{"expect during load", header + "start 3 replicas\nload 2 shoppers for 1s\nexpect carts intact\nwait for load\n",
			`x.txt:5: an expectation while load is running; did you mean "wait for load" first? Carts are judged while nobody shops`},
		{"load never waited", header + "start 3 replicas\nexpect carts intact\nload 2 shoppers for 1s\n",
			`x.txt:5: load is still running at the end; did you mean to end with "wait for load"?`},
		{"expect during chaos", header + "start 3 replicas\nchaos every 1s\nexpect carts intact\nstop chaos\n",
			`x.txt:5: an expectation while chaos is running; did you mean "stop chaos" first? The judge looks at a cluster at rest`},
		{"chaos never stopped", header + "start 3 replicas\nexpect carts intact\nchaos every 1s\n",
			`x.txt:5: chaos is still running at the end; did you mean "stop chaos" before the expectations?`},
		{"stop without chaos", header + "start 3 replicas\nstop chaos\nexpect carts intact\n",
			`x.txt:4: "stop chaos" without a "chaos every D" before it`},
		{"chaos too often", header + "start 3 replicas\nchaos every 100ms\nstop chaos\nexpect carts intact\n",
			`x.txt:4: chaos every 100ms: want at least 500ms, or a replica never gets to serve`},
		{"wait without load", header + "start 3 replicas\nwait for load\nexpect carts intact\n",
			`x.txt:4: "wait for load" without a "load N shoppers for D" before it`},
		{"header after steps", header + "start 3 replicas\nlesson again\nexpect carts intact\n",
			`x.txt:4: lesson must come before the first step`},
		{"no lesson", "run with store=redis\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:1: no "lesson TEXT" line: say in one line what the scenario teaches`},
		{"no configuration", "lesson l\nstart 3 replicas\nexpect carts intact\n",
			`x.txt:1: no "run with KEY=VALUE ..." line: say which configurations the scenario applies to`},
		{"no expectation", header + "start 3 replicas\n",
			`x.txt:3: no "expect ..." line: a scenario without one cannot fail`},
		{"too many replicas", header + "start 12 replicas\nexpect carts intact\n",
			`x.txt:3: replicas 12: want 1 to 9`},
		{"misspelt drain", header + "start 3 replicas\nstop shop1 wihtout drain\nexpect carts intact\n",
			`x.txt:4: unknown target "shop1 wihtout drain"; did you mean "shop1 without drain"?`},
		{"misspelt drain with a duration", header + "start 3 replicas\nstop shop1 wiht drain 3s\nexpect carts intact\n",
			`x.txt:4: unknown target "shop1 wiht drain 3s"; did you mean "shop1 with drain 3s"?`},
		{"scale to N", header + "start 3 replicas\nscale to 5 replicas\nexpect carts intact\n",
			`x.txt:4: unknown step "scale to 5 replicas"; did you mean "add replica"?`},
		{"latency in other words", header + "start 3 replicas\nexpect p99 under 100ms\n",
			`x.txt:4: unknown expectation "expect p99 under 100ms"; did you mean "expect p99|p50 below D [in this phase]" (e.g. "expect p99 below 500ms")?`},
		{"duration over the maximum", header + "start 3 replicas\nload 6 shoppers for 90s\nwait for load\nexpect carts intact\n",
			`x.txt:4: 90s is over the maximum of 1m: a lab run is a lesson of seconds`},
		{"replica of a shopper who never shopped", header + "start 3 replicas\nas alice add 1 of product 1\nkill -9 replica of bob\nexpect carts intact\n",
			`x.txt:5: "replica of bob": bob has not added anything before this line, so no replica holds a session of bob; did you mean "as bob add 1 of product 1" first?`},
		{"unknown product", header + "start 3 replicas\nas alice add 1 of product 99\nexpect carts intact\n",
			`x.txt:4: product 99: the catalog has products 1 to 24`},
		{"latency out of range", header + "start 3 replicas\nexpect p99 below 2m\n",
			`x.txt:4: p99 below "2m": want a duration from 1ms to 1m, e.g. 250ms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.txt", tt.script)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.script)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse error:\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestParseStopsAtFirstError: a broken load line is the only error, not
// followed by "wait for load without a load" and the rest.
func TestParseStopsAtFirstError(t *testing.T) {
	_, err := Parse("x.txt", header+"start 3 replicas\nload 6 shopers for 2s\nsleep 1s\nwait for load\nfly\nexpect carts intact\n")
	if err == nil {
		t.Fatal("Parse accepted a bad load line")
	}
	want := `x.txt:4: "load 6 shopers for 2s" does not fit any "load" form; did you mean "load N shoppers for D" (e.g. "load 6 shoppers for 2s")?`
	if err.Error() != want {
		t.Errorf("error:\n%v\nwant only\n%s", err, want)
	}
}

// TestEveryFormExample: every entry of the step and expectation tables has
// a usage, help and an example that parses as that very form.
func TestEveryFormExample(t *testing.T) {
	for _, f := range steps {
		if f.Usage == "" || f.Help == "" || f.Example == "" {
			t.Errorf("step form %q lacks usage, help or example", f.Usage)
			continue
		}
		script := header + "start 5 replicas\nas alice add 1 of product 1\n"
		if f.Usage == "start N replicas" {
			script = header
		}
		st := parseOne(t, script, f.Example)
		if st != nil && st.form != f {
			t.Errorf("example %q parses as %q, not %q", f.Example, st.Form(), f.Usage)
		}
	}
	for _, f := range expectations {
		if f.Usage == "" || f.Help == "" || f.Example == "" {
			t.Errorf("expectation %q lacks usage, help or example", f.Usage)
			continue
		}
		st := parseOne(t, header+"start 3 replicas\nas alice add 1 of product 1\n", f.Example)
		if st != nil && (st.Expect == nil || st.Expect.form != f) {
			t.Errorf("example %q does not parse as expect %q", f.Example, f.Usage)
		}
	}
}

// parseOne parses line after the script before and returns its step.
func parseOne(t *testing.T, before, line string) *Step {
	t.Helper()
	if line == "wait for load" {
		before += "load 1 shopper for 1s\n"
	}
	// Forms that open or close a stretch need the other end around them.
	if line == "stop chaos" {
		before += "chaos every 2s\n"
	}
	s, err := Parse("x.txt", before+line+"\nexpect carts intact\n")
	if err != nil && strings.HasPrefix(line, "load ") {
		s, err = Parse("x.txt", before+line+"\nwait for load\nexpect carts intact\n")
	}
	if err != nil && strings.HasPrefix(line, "chaos every ") {
		s, err = Parse("x.txt", before+line+"\nstop chaos\nexpect carts intact\n")
	}
	if err != nil {
		t.Errorf("example %q: %v", line, err)
		return nil
	}
	for i := range s.Steps {
		if s.Steps[i].Text == line {
			return &s.Steps[i]
		}
	}
	t.Errorf("example %q: no step", line)
	return nil
}

func TestParseStepsAndExpectations(t *testing.T) {
	s, err := Parse("scripts/demo.txt", `# a comment
lesson something worth knowing
run with store=memory lb=sticky
run with lock=off

start 3 replicas
as alice add 2 of product 1
as alice add 1 of product 2 in 8 tabs 5 times
load 20 shoppers for 3s
sleep 800ms
kill -9 replica of alice
restart redis
pause shop2 when store=redis
resume shop2 when store=redis
stop shop3 without drain
wait for load
add replica
remove replica shop4
expect cart of alice is 2 when store=redis lb=roundrobin
expect lost carts when store=memory
expect no status 500
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "demo" || s.Lesson != "something worth knowing" {
		t.Errorf("name %q lesson %q", s.Name, s.Lesson)
	}
	wantCfg := []Config{{Store: "memory", LB: "sticky", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}, {Store: "redis", LB: "roundrobin", Lock: "off", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}}
	if len(s.Configs) != 2 || s.Configs[0] != wantCfg[0] || s.Configs[1] != wantCfg[1] {
		t.Errorf("configs = %v, want %v", s.Configs, wantCfg)
	}
	var forms []string
	for _, st := range s.Steps {
		forms = append(forms, strings.Fields(st.Form())[0])
	}
	want := "start as as load sleep kill restart pause resume stop wait add remove expect expect expect"
	if got := strings.Join(forms, " "); got != want {
		t.Errorf("forms = %s\nwant    %s", got, want)
	}
	tabs := s.Steps[2]
	if tabs.Tabs != 8 || tabs.Times != 5 || tabs.N != 1 || tabs.Product != 2 || tabs.Line != 8 {
		t.Errorf("tabs step = %+v", tabs)
	}
	if k := s.Steps[5]; k.Shopper != "alice" || k.Target != "" {
		t.Errorf("kill step = %+v", k)
	}
	if p := s.Steps[7]; p.Target != "shop2" || p.When.String() != "store=redis" {
		t.Errorf("pause step = %+v", p)
	}
	if st := s.Steps[9]; st.Target != "shop3" || st.Drain != (Drain{Set: true}) {
		t.Errorf("stop step = %+v", st)
	}
	st := s.Steps[13]
	e := st.Expect
	if e.Text != "cart of alice is 2" || e.Count != 2 || e.Shopper != "alice" {
		t.Errorf("expectation = %+v", e)
	}
	if st.When.Holds(Config{Store: "redis", LB: "sticky", Lock: "on"}) || !st.When.Holds(Config{Store: "redis", LB: "roundrobin", Lock: "off"}) {
		t.Errorf("when %v holds wrongly", st.When)
	}
}

// TestProfileConfigs: "run with profile=X" is the profile's presets, a key
// on the same line wins over the profile, "when profile=X" holds only
// under that profile, and the configuration names itself by its profile.
func TestProfileConfigs(t *testing.T) {
	s, err := Parse("x.txt", `lesson profiles
run with profile=stateful
run with profile=stateless
run with profile=stateful lb=roundrobin store=redis
run with store=memory lb=sticky uploads=disk jobs=memory schedule=local live=local
start 3 replicas
expect carts intact when profile=stateless
expect lost carts when profile=stateful
expect lost carts when store=memory
`)
	if err != nil {
		t.Fatal(err)
	}
	stateful := Config{Profile: "stateful", Store: "memory", LB: "sticky", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local", Live: "local"}
	stateless := Config{Profile: "stateless", Store: "redis", LB: "roundrobin", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "s3", Jobs: "queue", Schedule: "shared", Live: "redis"}
	overridden := stateful
	overridden.LB, overridden.Store = "roundrobin", "redis"
	byFlags := stateful
	byFlags.Profile = ""
	want := []Config{stateful, stateless, overridden, byFlags}
	if !slices.Equal(s.Configs, want) {
		t.Fatalf("configs:\n%v\nwant\n%v", s.Configs, want)
	}
	for i, name := range []string{"profile=stateful", "profile=stateless", "profile=stateful store=redis lb=roundrobin", "store=memory lb=sticky lock=on live=local"} {
		if got := s.Configs[i].String(); got != name {
			t.Errorf("config %d is %q, want %q", i, got, name)
		}
	}
	if got := stateful.Spelled(); got != "profile=stateful: store=memory lb=sticky lock=on redis=single wait=0 cache=off uploads=disk jobs=memory schedule=local live=local" {
		t.Errorf("spelled: %q", got)
	}
	// Expectation by expectation, which configurations it applies to.
	for i, wantHolds := range [][]bool{{false, true, false, false}, {true, false, true, false}, {true, false, false, true}} {
		for j, cfg := range s.Configs {
			if got := s.Steps[1+i].When.Holds(cfg); got != wantHolds[j] {
				t.Errorf("%q under %s: holds %v", s.Steps[1+i].Text, cfg, got)
			}
		}
	}
	// Options with only a profile fill the rest from it.
	if got := (Config{Profile: "stateless"}).withDefaults(); got != stateless {
		t.Errorf("withDefaults of a bare profile: %v", got)
	}
}

// TestBuiltins: every file in scripts/ is a built-in script, none is
// broken, and every configuration a script declares has an expectation
// that applies to it (or its run could not fail). No names by hand: adding
// a script is adding a file.
func TestBuiltins(t *testing.T) {
	files, err := filepath.Glob("scripts/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	builtins := Builtins()
	if len(builtins) != len(files) || len(files) == 0 {
		t.Fatalf("%d built-in scripts for %d files", len(builtins), len(files))
	}
	for _, b := range builtins {
		if b.Err != nil {
			t.Errorf("%s: %v", b.Name, b.Err)
			continue
		}
		if !strings.HasPrefix(b.Script.File, "scenarios/lab/scripts/") {
			t.Errorf("%s: file %q is not the path in the repository", b.Name, b.Script.File)
		}
		for _, cfg := range b.Script.Configs {
			applies := false
			for _, st := range b.Script.Steps {
				if st.Expect != nil && st.When.Holds(cfg) {
					applies = true
				}
			}
			if !applies {
				t.Errorf("%s: no expectation applies to %s", b.Name, cfg)
			}
		}
	}
	if _, err := Lookup("no-such-scenario"); err == nil || !strings.Contains(err.Error(), builtins[0].Name) {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
}

// TestBrokenBuiltinBreaksNothing: a broken script lists with its first
// error, and the others parse and run as usual.
func TestBrokenBuiltinBreaksNothing(t *testing.T) {
	good, err := os.ReadFile("scripts/across-replicas.txt")
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"scripts/a-broken.txt": {Data: []byte(header + "start 3 replicas\nlod 6 shoppers for 2s\nwait for load\nexpect carts intact\n")},
		"scripts/good.txt":     {Data: good},
	}
	got := builtinsIn(fsys)
	if len(got) != 2 {
		t.Fatalf("%d scripts, want 2", len(got))
	}
	broken, ok := got[0], got[1]
	if broken.Name != "a-broken" || broken.Script != nil ||
		broken.Err == nil || !strings.HasPrefix(broken.Err.Error(), "scenarios/lab/scripts/a-broken.txt:4: unknown step") || strings.Contains(broken.Err.Error(), "\n") {
		t.Errorf("broken script = %+v, want one line naming its file and line", broken)
	}
	if ok.Name != "good" || ok.Err != nil || ok.Script == nil || len(ok.Script.Steps) == 0 {
		t.Errorf("good script = %+v", ok)
	}
	// Running the good one parses only it.
	if s, err := lookupIn(fsys, "good"); err != nil || s.Name != "good" {
		t.Errorf("lookup of the good script beside a broken one: %v", err)
	}
	if _, err := lookupIn(fsys, "a-broken"); err == nil || err.Error() != broken.Err.Error() {
		t.Errorf("lookup of the broken script: %v, want its first error", err)
	}
}
