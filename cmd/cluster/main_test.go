package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/deploy"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/scenarios/lab"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestRejectsBadKnobs: a bad value is one line naming the variable and what
// it allows, before anything starts (the binaries named here do not exist:
// the check must come first).
func TestRejectsBadKnobs(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"STORE", "disk"}, "STORE=disk: want memory, redis or cookie"},
		{[]string{"PROFILE", "stateles"}, "PROFILE=stateles: want stateful or stateless"},
		{[]string{"LB", "round-robin"}, "LB=round-robin: want roundrobin or sticky"},
		{[]string{"LOCK", "yes"}, "LOCK=yes: want on or off"},
		{[]string{"LOG", "loud"}, "LOG=loud: want debug, info, warn or error"},
		{[]string{"UPLOADS", "nfs"}, "UPLOADS=nfs: want disk or s3"},
		{[]string{"PORT", "http"}, "PORT=http: want a port number such as 8080"},
		{[]string{"PORT", "80"}, "PORT=80: want a port from 2725 to 65060 (Redis takes PORT-1701, goreman PORT+475)"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(t.Context(), []string{"-goreman", "/nonexistent/goreman", "-shop", "/nonexistent/shop"}, envOf(tt.env...), &out, &out)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%v: error %v, want %q", tt.env, err, tt.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed %q before refusing", tt.env, out.String())
		}
	}
}

// TestProfileKnob: PROFILE sets the store, the policy and the uploads
// that suit it, and an explicit STORE, LB or UPLOADS wins.
func TestProfileKnob(t *testing.T) {
	tests := []struct {
		env                         []string
		profile, store, lb, uploads string
	}{
		{nil, "", "redis", "roundrobin", "disk"},
		{[]string{"PROFILE", "stateful"}, "stateful", "memory", "sticky", "disk"},
		{[]string{"PROFILE", "stateless"}, "stateless", "redis", "roundrobin", "s3"},
		{[]string{"PROFILE", "stateful", "STORE", "cookie", "LB", "roundrobin", "UPLOADS", "s3"}, "stateful", "cookie", "roundrobin", "s3"},
	}
	for _, tt := range tests {
		c, err := readConfig(envOf(tt.env...))
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		if c.profile != tt.profile || c.store != tt.store || c.lb != tt.lb || c.uploads != tt.uploads {
			t.Errorf("%v: profile %q, store %q, lb %q, uploads %q; want %q, %q, %q, %q", tt.env, c.profile, c.store, c.lb, c.uploads, tt.profile, tt.store, tt.lb, tt.uploads)
		}
	}
}

// TestMakeClusterRejectsBadKnobs: the same through make, at once and with a
// non-zero exit.
func TestMakeClusterRejectsBadKnobs(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	cmd := exec.Command("make", "--no-print-directory", "cluster", "LB=round-robin")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "make cluster: LB=round-robin: want roundrobin or sticky") {
		t.Errorf("make cluster LB=round-robin: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "go build -o .run/bin/shop") {
		t.Errorf("make cluster built the shop before refusing:\n%s", out)
	}
}

// TestFindsBinariesOffPath: nginx and redis-server are found in the sbin
// folders when PATH lacks them, as a normal user's PATH lacks /usr/sbin.
func TestFindsBinariesOffPath(t *testing.T) {
	for _, name := range []string{"nginx", "redis-server"} {
		if _, err := os.Stat(filepath.Join("/usr/sbin", name)); err != nil {
			continue // Debian puts redis-server in /usr/bin
		}
		dir, err := lookBinary(name, "/nonexistent")
		if err != nil || dir != "/usr/sbin" {
			t.Errorf("%s without /usr/sbin in PATH: %q, %v", name, dir, err)
		}
	}
	_, err := lookBinary("no-such-server", "")
	if err == nil || !strings.Contains(err.Error(), "brew install nginx redis") {
		t.Errorf("a missing binary: %v, want the install commands", err)
	}
}

// TestPortInUse: a port the cluster needs is named before anything starts.
func TestPortInUse(t *testing.T) {
	base := freeBase(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+2)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = run(t.Context(), []string{"-check"}, envOf("PORT", strconv.Itoa(base)), os.Stderr, os.Stderr)
	want := "port " + strconv.Itoa(base+2) + " (shop2) is in use"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}

// freeBase finds an nginx port whose derived ports are all free, below the
// ephemeral range.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(10000)
		ports, err := deploy.PortsFor(base)
		if err == nil && checkPortsFree(ports) == nil {
			return base
		}
	}
	t.Fatal("no free set of ports")
	return 0
}

// binaries builds the shop and goreman once for the tests that start a
// cluster.
func binaries(t *testing.T) (shop, goreman string) {
	t.Helper()
	testenv.Require(t, "nginx", "redis-server")
	dir := t.TempDir()
	shop, err := cluster.BuildShop(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	goreman = filepath.Join(dir, "goreman")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", goreman, "github.com/mattn/goreman")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build goreman: %v\n%s", err, out)
	}
	return shop, goreman
}

// TestCluster runs the Procfile for real, the binaries built once.
func TestCluster(t *testing.T) {
	shop, goreman := binaries(t)
	t.Run("on another port, faults by the goreman driver", func(t *testing.T) { testOnAnotherPort(t, shop, goreman) })
	t.Run("a process dying at start stops everything", func(t *testing.T) { testDyingAtStart(t, goreman) })
	t.Run("killed outright, it leaves no process behind", func(t *testing.T) { testKilledOutright(t, shop, goreman) })
}

// testKilledOutright: make cluster's program killed with kill -9 (what a
// closed terminal or an OOM kill does) takes goreman and every process of
// the Procfile with it: the ports come free. Without the parent-death
// signal, the replicas kept serving an hour later.
func testKilledOutright(t *testing.T, shop, goreman string) {
	base := freeBase(t)
	ports, _ := deploy.PortsFor(base)
	t.Cleanup(func() { os.RemoveAll(filepath.Join("../../.run", "cluster-"+strconv.Itoa(base))) })
	bin := filepath.Join(t.TempDir(), "cluster")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cmd/cluster: %v\n%s", err, out)
	}
	out := &testenv.Buffer{}
	cmd := exec.Command(bin, "-goreman", goreman, "-shop", shop, "-dir", "../..")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(base), "STORE=redis", "LB=roundrobin")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	url := "http://127.0.0.1:" + strconv.Itoa(base)
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(out.String(), "make cluster: serving at "+url) {
		select {
		case err := <-exited:
			t.Fatalf("the cluster did not start: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the cluster did not start in 40 s:\n%s", out.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	// goreman stops the replicas as on Ctrl-C: each drains (2 s by
	// default) and exits.
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := checkPortsFree(ports)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after kill -9 of make cluster: %v\n%s", err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testOnAnotherPort: make cluster's program runs the Procfile on a port
// other than 8080, nginx answers there, the goreman driver runs the
// failover scenario against it (kill -9 of alice's replica, Redis sessions
// survive), and cancelling stops every process.
func testOnAnotherPort(t *testing.T, shop, goreman string) {
	base := freeBase(t)
	ports, _ := deploy.PortsFor(base)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-goreman", goreman, "-shop", shop, "-dir", "../.."},
			envOf("PORT", strconv.Itoa(base), "STORE", "redis", "LB", "roundrobin", "PATH", os.Getenv("PATH")), out, out)
	}()
	t.Cleanup(func() { os.RemoveAll(filepath.Join("../../.run", "cluster-"+strconv.Itoa(base))) })
	url := "http://127.0.0.1:" + strconv.Itoa(base)
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(out.String(), "make cluster: serving at "+url) {
		select {
		case err := <-done:
			t.Fatalf("the cluster did not start: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not start in 40 s:\n%s", out.String())
		}
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("nginx on %s: %v %v", url, resp, err)
	}
	resp.Body.Close()

	s, err := lab.Lookup("failover")
	if err != nil {
		t.Fatal(err)
	}
	var story bytes.Buffer
	res, err := lab.Run(ctx, s, lab.Options{Config: lab.Config{Store: "redis"}, Driver: &lab.GoremanDriver{URL: url}, Detect: true, Out: &story})
	t.Log("\n" + story.String())
	if err != nil {
		t.Fatalf("failover against make cluster: %v\n%s", err, out.String())
	}
	if !res.Pass {
		t.Errorf("failover against make cluster: %v", res.Differences)
	}
	for _, want := range []string{"killed (kill -9)", "the running cluster at " + url} {
		if !strings.Contains(story.String(), want) {
			t.Errorf("story lacks %q", want)
		}
	}
	if strings.Contains(story.String(), "starting 3 replicas") {
		t.Error("the story claims the lab started the cluster")
	}

	// replace (the chaos step's fault): kill -9 alice's replica, empty its
	// upload folder (RUN/shopN-uploads) and start it again: her photo,
	// on that replica's disk, is lost.
	s, err = lab.Lookup("uploads")
	if err != nil {
		t.Fatal(err)
	}
	story.Reset()
	res, err = lab.Run(ctx, s, lab.Options{Config: lab.Config{Store: "redis", Uploads: "disk"}, Driver: &lab.GoremanDriver{URL: url}, Detect: true, Out: &story})
	t.Log("\n" + story.String())
	if err != nil {
		t.Fatalf("uploads against make cluster: %v\n%s", err, out.String())
	}
	if !res.Pass {
		t.Errorf("uploads against make cluster: %v", res.Differences)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopping: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the cluster did not stop")
	}
	if err := checkPortsFree(ports); err != nil {
		t.Errorf("after the stop: %v", err)
	}
}

// testDyingAtStart: replicas that exit at once stop the whole cluster with
// their name, a non-nil error (non-zero exit) and no process left.
func testDyingAtStart(t *testing.T, goreman string) {
	base := freeBase(t)
	ports, _ := deploy.PortsFor(base)
	t.Cleanup(func() { os.RemoveAll(filepath.Join("../../.run", "cluster-"+strconv.Itoa(base))) })
	broken := filepath.Join(t.TempDir(), "shop")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'shop: -addr: cannot bind' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	err := run(t.Context(), []string{"-goreman", goreman, "-shop", broken, "-dir", "../.."},
		envOf("PORT", strconv.Itoa(base), "PATH", os.Getenv("PATH")), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "exited while the cluster started") || !strings.Contains(err.Error(), "cannot bind") ||
		!strings.Contains(err.Error(), "the cluster is stopped") {
		t.Errorf("error %v, want the replica named with its last line\n%s", err, out.String())
	}
	if err := checkPortsFree(ports); err != nil {
		t.Errorf("half a cluster is left: %v", err)
	}
}

// TestSessionKeys: a cookie cluster gets a fresh key per start unless
// SHOP_SESSION_KEYS gives one, which is checked as the shop checks it;
// other stores need none.
func TestSessionKeys(t *testing.T) {
	cookie := config{store: "cookie"}
	a, generated, err := sessionKeys(cookie, envOf())
	b, _, _ := sessionKeys(cookie, envOf())
	if err != nil || !generated || len(a) != 64 || a == b {
		t.Errorf("generated keys %q and %q (%v, generated %v): want two different 64-hex-digit keys", a, b, err, generated)
	}
	given := strings.Repeat("k", 40)
	if k, generated, err := sessionKeys(cookie, envOf("SHOP_SESSION_KEYS", given)); err != nil || generated || k != given {
		t.Errorf("given keys: %q, generated %v, %v", k, generated, err)
	}
	if _, _, err := sessionKeys(cookie, envOf("SHOP_SESSION_KEYS", "short")); err == nil || !strings.Contains(err.Error(), "SHOP_SESSION_KEYS") {
		t.Errorf("a short key: %v", err)
	}
	if k, _, err := sessionKeys(config{store: "redis"}, envOf()); k != "" || err != nil {
		t.Errorf("redis needs no keys: %q, %v", k, err)
	}
}
