package bench_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/scenarios/bench"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/state/price"
)

// TestShortRun is the bench's smoke test: the whole path (build, two
// clusters, every page under both models, memory, restarts, the report) in
// a few seconds. It asserts that the bench works, never how fast the shop
// is: speed goals live in the bench's output.
func TestShortRun(t *testing.T) {
	testenv.Require(t, "nginx", "redis-server")
	testenv.RequirePostgres(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	doc := filepath.Join(t.TempDir(), "benchmarks.md")
	priceFile := filepath.Join(t.TempDir(), "measured.json")
	var out bytes.Buffer
	res, err := bench.Run(ctx, bench.Options{Short: true, Dir: t.TempDir(), Doc: doc, Price: priceFile, Command: "go test ./scenarios/bench"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	// Five pages under every store kind, and the near-cache cluster on the
	// three that only read the session.
	if got, want := len(res.Measurements), 5*len(session.Kinds())+3; got != want {
		t.Errorf("%d measurements, want %d: 5 pages × %d stores + 3 with the near-cache", got, want, len(session.Kinds()))
	}
	for _, m := range res.Measurements {
		if m.Throughput <= 0 || m.OpenP50 <= 0 {
			t.Errorf("%s (%s): nothing measured: %+v", m.Page, m.Store, m)
		}
	}
	if got := len(res.Databases); got != 4 {
		t.Errorf("%d database measurements, want catalog and checkout × sqlite and postgres", got)
	}
	for _, m := range res.Databases {
		if m.Throughput <= 0 || m.P50 <= 0 {
			t.Errorf("%s on %s: nothing measured: %+v", m.Page, m.Database, m)
		}
	}
	if res.Limit["redis"].Throughput <= 0 {
		t.Error("no /healthz limit measured")
	}
	for store, cm := range res.Memory {
		if cm.MaxReplica() == 0 || cm.Nginx == 0 || (store == "redis" && cm.Redis == 0) {
			t.Errorf("%s cluster memory not read: %+v", store, cm)
		}
	}
	if got := len(res.Profiles); got != 4 {
		t.Errorf("%d profile measurements, want stateful, stateless and the two between", got)
	}
	for _, m := range res.Profiles {
		if m.Throughput <= 0 || m.OpenP99 <= 0 || len(m.Steps) == 0 || m.MeanReplicaRSS() == 0 {
			t.Errorf("-profile %s: nothing measured: %+v", m.Profile, m)
		}
		if shared := m.Memory.Redis > 0 && m.Memory.ObjectStore > 0; m.Profile != bench.ProfileStatefulRedis && shared != (m.Profile != bench.ProfileStateful) {
			t.Errorf("-profile %s: redis %d, object store %d bytes; want both only for stateless", m.Profile, m.Memory.Redis, m.Memory.ObjectStore)
		}
	}
	if len(res.Goals) == 0 {
		t.Error("no goals judged")
	}
	report := out.String()
	if res.CookieBytes[session.Cookie] <= res.CookieBytes[session.Memory] || res.CookieBytes[session.Memory] != len("session=")+43 {
		t.Errorf("session cookie bytes per request %v: want a token (51 B) for memory and more for the sealed cookie", res.CookieBytes)
	}
	for _, want := range []string{"/healthz (limit)", "catalog", "add", "(goal ", "redis mode vs memory mode", "redis+cache", "near-cache vs memory mode", "cookie mode vs memory mode", "session cookie"} {
		if !strings.Contains(report, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	md, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Goals", "## Pages", "## Database", "## The price of statelessness", "go test ./scenarios/bench", "CPUs"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	b, err := os.ReadFile(priceFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := price.Parse(b)
	if err != nil || !p.Complete() || p.Command != "go test ./scenarios/bench" || p.Machine != res.Machine.String() {
		t.Errorf("the figures for /state: %+v, %v", p, err)
	}
}
