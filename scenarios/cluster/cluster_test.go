package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statelab/shop/internal/proc"
)

// TestMain fails the run when a test left a child process behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if kids, err := proc.Children(os.Getpid()); err == nil && len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "cluster: leaked child processes: %v\n", kids)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// fakeTB records what Require does instead of stopping the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skip(args ...any)                  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	const missing = "statelab-no-such-binary"
	tests := []struct {
		name        string
		require     string // SHOP_TEST_REQUIRE
		path        string // PATH; "" keeps it
		binaries    []string
		wantSkip    string // substring; "" wants no skip
		wantFailure string // substring; "" wants no failure
	}{
		{name: "present", binaries: []string{"sh"}},
		{name: "missing skips", binaries: []string{"sh", missing}, wantSkip: "sudo apt-get install -y " + missing},
		{name: "missing fails when required", require: "all", binaries: []string{missing}, wantFailure: "apt-get install -y " + missing},
		{name: "package name differs", path: t.TempDir(), binaries: []string{"redis-cli"}, wantSkip: "apt-get install -y redis-tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SHOP_TEST_REQUIRE", tt.require)
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			f := &fakeTB{TB: t}
			Require(f, tt.binaries...)
			check := func(what, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", what, got, want)
				}
			}
			check("skip message", f.skipped, tt.wantSkip)
			check("failure message", f.failed, tt.wantFailure)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Replicas: 3, Store: "redis", LB: "roundrobin", Lock: "on", Drain: 300 * time.Millisecond, Database: DatabaseSQLite, Uploads: UploadsDisk}
	if fmt.Sprint(o) != fmt.Sprint(want) {
		t.Errorf("defaults = %+v, want %+v", o, want)
	}
	// A profile picks what the cluster around its replicas needs; what
	// is said explicitly wins.
	for _, tt := range []struct {
		o                  Options
		store, uploads, lb string
	}{
		{Options{Profile: "stateful"}, "memory", UploadsDisk, "sticky"},
		{Options{Profile: "stateless"}, "redis", UploadsS3, "roundrobin"},
		{Options{Profile: "stateful", Store: "redis", LB: "roundrobin"}, "redis", UploadsDisk, "roundrobin"},
	} {
		o, err := tt.o.withDefaults()
		if err != nil || o.Store != tt.store || o.Uploads != tt.uploads || o.LB != tt.lb {
			t.Errorf("%+v: store %q, uploads %q, lb %q (%v); want %q, %q, %q", tt.o, o.Store, o.Uploads, o.LB, err, tt.store, tt.uploads, tt.lb)
		}
	}
	for _, bad := range []Options{{Replicas: -1}, {Store: "disk"}, {LB: "random"}, {Lock: "maybe"}, {Database: "mysql"}, {Uploads: "nfs"}, {Profile: "stateles"}} {
		if _, err := Start(t.Context(), bad); err == nil {
			t.Errorf("Start(%+v) succeeded, want an error", bad)
		}
	}
}

func TestRedisStopStartKeepsData(t *testing.T) {
	t.Parallel()
	r := StartRedisT(t)
	addr := r.Addr()
	redisMust(t, addr, "SET", "statelab:test", "kept")

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if r.Running() {
		t.Error("Running after Stop")
	}
	wantRefused(t, addr)

	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Errorf("Addr after restart = %s, want %s", r.Addr(), addr)
	}
	if got := redisMust(t, addr, "GET", "statelab:test"); got != "kept" {
		t.Errorf("GET after restart = %q, want %q", got, "kept")
	}
}

func TestRedisKillAndStart(t *testing.T) {
	t.Parallel()
	r := StartRedisT(t)
	if err := r.Start(t.Context()); err == nil {
		t.Error("Start of a running Redis succeeded")
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, r.Addr())
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := redisMust(t, r.Addr(), "PING"); got != "PONG" {
		t.Errorf("PING = %q", got)
	}
}

func TestRedisPauseResume(t *testing.T) {
	t.Parallel()
	r := StartRedisT(t)
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if reply, err := proc.RedisCommand(ctx, r.Addr(), "PING"); err == nil {
		t.Errorf("PING to a paused Redis answered %q", reply)
	}
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	if got := redisMust(t, r.Addr(), "PING"); got != "PONG" {
		t.Errorf("PING after Resume = %q", got)
	}
	// Close must not wait on a paused Redis.
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close of a paused Redis: %v", err)
	}
}

func TestClusterRoundRobin(t *testing.T) {
	t.Parallel()
	c := StartT(t, Options{})
	if c.Redis() == nil {
		t.Error("Redis() = nil in redis mode")
	}
	if got := names(c.Replicas()); got != "shop1 shop2 shop3" {
		t.Errorf("replicas = %s", got)
	}

	// One keep-alive connection: one nginx worker, whose round robin is exact.
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	seen := make(map[string]int)
	for range 9 {
		h := get(t, client, c.URL()+"/healthz")
		seen[h.Get("X-Served-By")]++
	}
	for _, name := range []string{"shop1", "shop2", "shop3"} {
		if seen[name] == 0 {
			t.Errorf("no request served by %s; served by: %v", name, seen)
		}
	}

	if s := apiSession(t, client, c.URL()); s.Store != "redis" {
		t.Errorf("store = %q, want redis", s.Store)
	}
}

func TestReplicaFaults(t *testing.T) {
	t.Parallel()
	c := StartT(t, Options{})
	ctx := t.Context()
	r := c.Replica("shop2")
	if r == nil || !r.Running() {
		t.Fatal("shop2 is not running")
	}

	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if r.Running() {
		t.Error("Running after Kill")
	}
	if code, err := r.Wait(ctx); err != nil || code != -1 {
		t.Errorf("Wait after Kill = %d, %v; want -1 (signal), nil", code, err)
	}
	wantRefused(t, r.Addr())

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for range 6 {
		if by := get(t, client, c.URL()+"/healthz").Get("X-Served-By"); by == "shop2" {
			t.Errorf("served by killed shop2")
		}
	}

	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if by := get(t, client, r.URL()+"/readyz").Get("X-Served-By"); by != "shop2" {
		t.Errorf("restarted replica says X-Served-By %q", by)
	}

	s1 := c.Replica("shop1")
	if err := s1.Pause(); err != nil {
		t.Fatal(err)
	}
	impatient := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := httpGet(ctx, impatient, s1.URL()+"/healthz"); err == nil {
		t.Error("a paused replica answered")
	}
	if err := s1.Resume(); err != nil {
		t.Fatal(err)
	}
	get(t, client, s1.URL()+"/healthz")

	s3 := c.Replica("shop3")
	if err := s3.Pause(); err != nil { // Term must reach a paused replica too
		t.Fatal(err)
	}
	if err := s3.Term(); err != nil {
		t.Fatal(err)
	}
	if code, err := s3.Wait(ctx); err != nil || code != 0 {
		t.Errorf("Wait after Term = %d, %v; want 0, nil", code, err)
	}
}

func TestAddRemoveReplica(t *testing.T) {
	t.Parallel()
	c := StartT(t, Options{})
	ctx := t.Context()

	// The misconfigured replica of a lab scenario: its own env wins.
	r4, err := c.AddReplica(ctx, "SHOP_SESSION_STORE=memory")
	if err != nil {
		t.Fatal(err)
	}
	if r4.Name() != "shop4" || c.Replica("shop4") != r4 {
		t.Fatalf("added %s; Replica(shop4) = %v", r4.Name(), c.Replica("shop4"))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	if s := apiSession(t, client, r4.URL()); s.Store != "memory" || s.Replica != "shop4" {
		t.Errorf("shop4 /api/session = %+v, want replica shop4, store memory", s)
	}
	seen := make(map[string]int)
	for range 8 {
		seen[get(t, client, c.URL()+"/healthz").Get("X-Served-By")]++
	}
	if seen["shop4"] == 0 {
		t.Errorf("shop4 took no traffic: %v", seen)
	}

	if err := c.RemoveReplica(ctx, "shop4"); err != nil {
		t.Fatal(err)
	}
	if r4.Running() || c.Replica("shop4") != nil {
		t.Errorf("after RemoveReplica: running %v, Replica(shop4) = %v", r4.Running(), c.Replica("shop4"))
	}
	if got := names(c.Replicas()); got != "shop1 shop2 shop3" {
		t.Errorf("replicas = %s", got)
	}
	wantRefused(t, r4.Addr())
	client.CloseIdleConnections()
	for range 9 {
		if by := get(t, client, c.URL()+"/healthz").Get("X-Served-By"); by == "shop4" {
			t.Error("served by removed shop4")
		}
	}
	if err := c.RemoveReplica(ctx, "shop4"); err == nil {
		t.Error("removing shop4 twice succeeded")
	}
}

func TestMemoryStickyCloseLeavesNothing(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	c := StartT(t, Options{Store: "memory", LB: "sticky", Replicas: 2, Stdout: &out})
	if c.Redis() != nil {
		t.Error("Redis() != nil in memory mode")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	if s := apiSession(t, client, c.URL()); s.Store != "memory" {
		t.Errorf("store = %q, want memory", s.Store)
	}
	if p := get(t, client, c.URL()+"/healthz").Get("X-LB-Policy"); p != "sticky" {
		t.Errorf("X-LB-Policy = %q, want sticky", p)
	}

	pids := []int{c.nginx.p.Pid()}
	workers, err := proc.Children(c.nginx.p.Pid())
	if err != nil || len(workers) == 0 {
		t.Fatalf("nginx workers: %v, %v", workers, err)
	}
	for pid := range workers {
		pids = append(pids, pid)
	}
	for _, r := range c.Replicas() {
		pids = append(pids, r.current().Pid())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Close (kill -0: %v)", pid, err)
		}
	}
	logs := out.String()
	for _, prefix := range []string{"shop1 | ", "shop2 | "} {
		if !strings.Contains(logs, prefix) {
			t.Errorf("Options.Stdout got no line prefixed %q", prefix)
		}
	}
}

func TestStartFailureNamesReplica(t *testing.T) {
	t.Parallel()
	Require(t, "nginx")
	_, err := Start(t.Context(), Options{
		Store:    "memory",
		Replicas: 1,
		Dir:      t.TempDir(),
		Env:      []string{"SHOP_SESSION_STORE=bogus"},
	})
	if err == nil {
		t.Fatal("Start with SHOP_SESSION_STORE=bogus succeeded")
	}
	for _, want := range []string{"shop1 exited", "last lines of"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func get(t *testing.T, client *http.Client, url string) http.Header {
	t.Helper()
	h, err := httpGet(t.Context(), client, url)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type sessionReply struct {
	Replica string `json:"replica"`
	Store   string `json:"store"`
}

func apiSession(t *testing.T, client *http.Client, base string) sessionReply {
	t.Helper()
	resp, err := client.Get(base + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s sessionReply
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/session: %s, %v", resp.Status, err)
	}
	return s
}

func names(rs []*Replica) string {
	var ns []string
	for _, r := range rs {
		ns = append(ns, r.Name())
	}
	return strings.Join(ns, " ")
}

func wantRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}

func redisMust(t *testing.T, addr string, args ...string) string {
	t.Helper()
	reply, err := proc.RedisCommand(t.Context(), addr, args...)
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return reply
}

// lockedBuffer is a bytes.Buffer safe to read while processes write to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
