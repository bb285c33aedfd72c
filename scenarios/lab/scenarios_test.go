package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/scenarios/cluster"
)

// runT runs a script against a local cluster in the test's temp dir and
// logs the narrative and the table.
func runT(t *testing.T, s *Script, cfg Config, d *LocalDriver) *Result {
	t.Helper()
	if cfg.Store == "memory" {
		testenv.Require(t, "nginx")
	} else {
		testenv.Require(t, "nginx", "redis-server")
	}
	d.Dir = t.TempDir()
	var out bytes.Buffer
	res, err := Run(t.Context(), s, Options{Config: cfg, Driver: d, Out: &out})
	if err != nil {
		t.Log(out.String())
		t.Fatal(err)
	}
	WriteTable(&out, res)
	t.Log("\n" + out.String())
	return res
}

// TestScenarios runs every scenario under every configuration it applies to
// and wants the outcome it expects. One after the other: each starts its own
// cluster, and the machine is shared.
func TestScenarios(t *testing.T) {
	for _, b := range Builtins() {
		s := b.Script
		if b.Err != nil {
			t.Errorf("%s: %v", b.Name, b.Err)
			continue
		}
		for _, cfg := range s.Configs {
			t.Run(s.Name+"/"+strings.ReplaceAll(cfg.String(), " ", "-"), func(t *testing.T) {
				res := runT(t, s, cfg, &LocalDriver{})
				if !res.Pass {
					t.Errorf("%s under %s: outcome differs from the expectation:\n%s", s.Name, cfg, strings.Join(res.Differences, "\n"))
				}
			})
		}
	}
}

// TestJudgeCatchesWrongStore proves the judge can fail: the scenarios claim
// Redis sessions, but the replicas are started with memory sessions, and the
// judge must say which expectation broke and what it saw instead.
func TestJudgeCatchesWrongStore(t *testing.T) {
	t.Run("every replica", func(t *testing.T) {
		s, err := Lookup("across-replicas")
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Store: "redis", LB: "roundrobin", Lock: "on"}
		res := runT(t, s, cfg, &LocalDriver{Env: []string{"SHOP_SESSION_STORE=memory"}})
		if res.Pass {
			t.Fatal("the judge passed replicas with memory sessions as a Redis cluster")
		}
		wantDiff(t, res, "scenarios/lab/scripts/across-replicas.txt:", "expected carts intact, observed 0 of 3 carts intact, 3 lost")
		wantDiff(t, res, "", "expected cart of alice is 4, observed cart of alice is lost")
	})
	t.Run("the added replica", func(t *testing.T) {
		s, err := Lookup("scale-out")
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Store: "redis", LB: "roundrobin", Lock: "on"}
		res := runT(t, s, cfg, &LocalDriver{AddEnv: []string{"SHOP_SESSION_STORE=memory"}})
		if res.Pass {
			t.Fatal("the judge passed a scale-out whose new replica keeps sessions in memory")
		}
		wantDiff(t, res, "scenarios/lab/scripts/scale-out.txt:", "expected carts intact, observed")
	})
}

func wantDiff(t *testing.T, res *Result, prefix, want string) {
	t.Helper()
	for _, d := range res.Differences {
		if strings.HasPrefix(d, prefix) && strings.Contains(d, want) {
			return
		}
	}
	t.Errorf("no difference %q…%q in:\n%s", prefix, want, strings.Join(res.Differences, "\n"))
}

// TestTargetMode runs the shopper side against a cluster the lab did not
// start, as `-target URL` does: the store, the policy, the profile and
// where each kind of state lives come from the cluster (its /api/session
// and /api/state), not from the flags, and a fault step without a fault
// driver fails plainly.
func TestTargetMode(t *testing.T) {
	// The stateless profile: every key but the policy differs from what
	// the flags below claim.
	c := cluster.StartT(t, cluster.Options{Profile: "stateless"})
	s, err := Lookup("across-replicas")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// The flags claim memory sessions and every other kind in the replica;
	// the cluster keeps them all outside.
	flags := ConfigOf(Condition{"store": "memory", "live": "local"})
	res, err := Run(t.Context(), s, Options{Config: flags, Driver: NoFaults{URL: c.URL()}, Detect: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	want := Config{Profile: "stateless", Store: "redis", LB: "roundrobin", Uploads: "s3", Jobs: "queue", Schedule: "shared", Live: "redis"}
	got := res.Config
	if got.Profile != want.Profile || got.Store != want.Store || got.LB != want.LB || got.Uploads != want.Uploads ||
		got.Jobs != want.Jobs || got.Schedule != want.Schedule || got.Live != want.Live || !res.Pass {
		t.Errorf("target run: config %s, pass %v, differences %q; want %s", got.Spelled(), res.Pass, res.Differences, want.Spelled())
	}

	f, err := Lookup("failover")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(t.Context(), f, Options{Driver: NoFaults{URL: c.URL()}, Detect: true})
	if err == nil || !strings.Contains(err.Error(), "scripts/failover.txt:") || !strings.Contains(err.Error(), "no fault driver") {
		t.Errorf("fault without a driver: %v", err)
	}
}

// TestDrainsPausesAndConditionalSteps: each replica starts with the drain
// its stop step asks for (the shop logs it), pause and resume leave a
// replica serving, and a step whose "when" does not hold is skipped.
func TestDrainsPausesAndConditionalSteps(t *testing.T) {
	s, err := Parse("drains.txt", `lesson drains, pauses and conditions
run with store=redis
start 3 replicas
as alice add 1 of product 1
pause shop3
resume shop3
kill -9 shop3 when store=memory
stop shop1 with drain 1500ms
stop shop2 without drain
start shop1
start shop2
expect cart of alice is 1
expect traffic on shop3
`)
	if err != nil {
		t.Fatal(err)
	}
	d := &LocalDriver{}
	res := runT(t, s, Config{Store: "redis"}, d)
	if !res.Pass {
		t.Errorf("differences: %v", res.Differences)
	}
	for name, want := range map[string]string{"shop1": `"for":"1.5s"`, "shop2": `"for":"0s"`} {
		log, err := os.ReadFile(filepath.Join(d.Dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`"msg":"draining".*` + regexp.QuoteMeta(want)).Match(log) {
			t.Errorf("%s did not drain with %s:\n%s", name, want, log)
		}
	}
	for _, e := range res.Events {
		if strings.Contains(e.Text, "shop3 killed") {
			t.Errorf("a step for store=memory ran under store=redis: %s", e.Text)
		}
	}
}
