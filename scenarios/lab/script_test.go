package lab

import (
	"strings"
	"testing"
)

const header = "lesson l\nrun with store=redis\n"

func TestParseRejectsMalformedScripts(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   string // in the error
	}{
		{"unknown step", header + "start 3 replicas\nfrobnicate shop2\nexpect carts intact\n", `x.txt:4: expected a step`},
		{"bad add", header + "start 3 replicas\nas alice add two of product 1\nexpect carts intact\n", `x.txt:4: expected "as NAME add Q of product P`},
		{"quantity too big", header + "start 3 replicas\nas alice add 100 of product 1\nexpect carts intact\n", `x.txt:4: add 100: expected a quantity from 1 to 99`},
		{"bad duration", header + "start 3 replicas\nload 5 shoppers for soon\nwait for load\nexpect carts intact\n", `x.txt:4: expected a duration like 800ms or 2s`},
		{"bad kill", header + "start 3 replicas\nkill shop2\nexpect carts intact\n", `x.txt:4: expected "kill -9 TARGET"`},
		{"bad target", header + "start 3 replicas\nstop nginx\nexpect carts intact\n", `x.txt:4: expected "shopN", "redis" or "replica of NAME" after "stop"`},
		{"bad expectation", header + "start 3 replicas\nexpect everything fine\n", `x.txt:4: expected "expect carts intact|`},
		{"bad when", header + "start 3 replicas\nexpect carts intact when store=disk\n", `x.txt:4: store=disk: expected store=memory|redis`},
		{"unknown key", header + "start 3 replicas\nexpect carts intact when colour=red\n", `x.txt:4: unknown key "colour"`},
		{"empty when", header + "start 3 replicas\nexpect carts intact when\n", `x.txt:4: expected KEY=VALUE after "when"`},
		{"bad run with", "lesson l\nrun with redis\nstart 3 replicas\nexpect carts intact\n", `x.txt:2: expected "run with KEY=VALUE ..."`},
		{"step before start", header + "kill -9 shop1\nstart 3 replicas\nexpect carts intact\n", `x.txt:3: expected "start N replicas" before "kill -9 shop1"`},
		{"expect during load", header + "start 3 replicas\nload 2 shoppers for 1s\nexpect carts intact\nwait for load\n", `x.txt:5: expected "wait for load" before an expectation`},
		{"load never waited", header + "start 3 replicas\nexpect carts intact\nload 2 shoppers for 1s\n", `expected "wait for load" before the end`},
		{"wait without load", header + "start 3 replicas\nwait for load\nexpect carts intact\n", `x.txt:4: "wait for load" without a "load"`},
		{"header after steps", header + "start 3 replicas\nlesson again\nexpect carts intact\n", `x.txt:4: lesson must come before the first step`},
		{"no lesson", "run with store=redis\nstart 3 replicas\nexpect carts intact\n", `x.txt:1: expected a "lesson ..." line`},
		{"no configuration", "lesson l\nstart 3 replicas\nexpect carts intact\n", `x.txt:1: expected at least one "run with`},
		{"no expectation", header + "start 3 replicas\n", `expected at least one "expect ..." line`},
		{"too many replicas", header + "start 12 replicas\nexpect carts intact\n", `x.txt:3: start 12 replicas: expected 1 to 9 replicas`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.txt", tt.script)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.script)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	_, err := Parse("x.txt", header+"start 3 replicas\nfly\nswim\nexpect carts intact\n")
	if err == nil {
		t.Fatal("Parse accepted two bad lines")
	}
	for _, want := range []string{"x.txt:4:", "x.txt:5:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
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
	wantCfg := []Config{{Store: "memory", LB: "sticky", Lock: "on"}, {Store: "redis", LB: "roundrobin", Lock: "off"}}
	if len(s.Configs) != 2 || s.Configs[0] != wantCfg[0] || s.Configs[1] != wantCfg[1] {
		t.Errorf("configs = %v, want %v", s.Configs, wantCfg)
	}
	var kinds []string
	for _, st := range s.Steps {
		kinds = append(kinds, st.Kind)
	}
	want := "start add add load sleep kill restart wait-load add-replica remove-replica expect expect expect"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("kinds = %s\nwant     %s", got, want)
	}
	tabs := s.Steps[2]
	if tabs.Tabs != 8 || tabs.Times != 5 || tabs.N != 1 || tabs.Product != 2 || tabs.Line != 8 {
		t.Errorf("tabs step = %+v", tabs)
	}
	if k := s.Steps[5]; k.Shopper != "alice" || k.Target != "" {
		t.Errorf("kill step = %+v", k)
	}
	e := s.Steps[10].Expect
	if e.What != expectCartCount || e.Count != 2 || e.Shopper != "alice" {
		t.Errorf("expectation = %+v", e)
	}
	if e.When.Holds(Config{Store: "redis", LB: "sticky", Lock: "on"}) || !e.When.Holds(Config{Store: "redis", LB: "roundrobin", Lock: "off"}) {
		t.Errorf("when %v holds wrongly", e.When)
	}
}

func TestEmbeddedScripts(t *testing.T) {
	scripts, err := Scripts()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"across-replicas", "sticky", "failover", "rolling-restart", "scale-out", "redis-outage", "redis-restart", "concurrent-cart"}
	var got []string
	for _, s := range scripts {
		got = append(got, s.Name)
		// Every configuration a script declares must have an expectation
		// that applies to it, or its run could not fail.
		for _, cfg := range s.Configs {
			applies := false
			for _, st := range s.Steps {
				if st.Kind == kindExpect && st.Expect.When.Holds(cfg) {
					applies = true
				}
			}
			if !applies {
				t.Errorf("%s: no expectation applies to %s", s.Name, cfg)
			}
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("scripts = %v, want %v", got, want)
	}
	if _, err := Lookup("no-such-scenario"); err == nil || !strings.Contains(err.Error(), "across-replicas") {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
}
