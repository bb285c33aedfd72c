package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	c, err := parseFlags([]string{"shop"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != ":8080" || c.sessionStore != "memory" || c.redisAddr != "127.0.0.1:6379" || c.db != "shop.db" || !c.sessionLock || c.drain != 2*time.Second {
		t.Errorf("defaults = %+v", c)
	}

	c, err = parseFlags([]string{"shop", "-session-store", "memory"}, env(map[string]string{
		"SHOP_SESSION_STORE": "redis", "SHOP_REPLICA": "shop7", "SHOP_ADDR": "127.0.0.1:9000", "SHOP_SESSION_LOCK": "off", "SHOP_DRAIN": "300ms",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.sessionStore != "memory" {
		t.Errorf("the flag must win over the environment: store %q", c.sessionStore)
	}
	if c.replica != "shop7" || c.addr != "127.0.0.1:9000" || c.sessionLock || c.drain != 300*time.Millisecond {
		t.Errorf("environment not used: %+v", c)
	}
	if c.redisMaster != "shop" || c.sentinels != nil || c.waitReplicas != 0 {
		t.Errorf("Redis defaults: master %q, sentinels %q, wait %d; want shop, none, 0", c.redisMaster, c.sentinels, c.waitReplicas)
	}
	c, err = parseFlags([]string{"shop", "-redis-master", "other"}, env(map[string]string{
		"SHOP_REDIS_SENTINELS": "127.0.0.1:26379, sentinel2:26379", "SHOP_REDIS_MASTER": "ignored", "SHOP_REDIS_WAIT_REPLICAS": "1",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.redisMaster != "other" || !slices.Equal(c.sentinels, []string{"127.0.0.1:26379", "sentinel2:26379"}) || c.waitReplicas != 1 {
		t.Errorf("Sentinel settings: master %q, sentinels %q, wait %d", c.redisMaster, c.sentinels, c.waitReplicas)
	}

	bad := []struct {
		args    []string
		env     map[string]string
		mention []string
	}{
		{[]string{"-session-store", "postgres"}, nil, []string{"-session-store", "memory", "redis"}},
		{nil, map[string]string{"SHOP_SESSION_STORE": "etcd"}, []string{"-session-store", "memory", "redis"}},
		{[]string{"-addr", "nonsense"}, nil, []string{"-addr"}},
		{[]string{"-addr", ":99999"}, nil, []string{"-addr"}},
		{[]string{"-redis-addr", "localhost"}, nil, []string{"-redis-addr"}},
		{[]string{"-redis-sentinels", "127.0.0.1:26379,nonsense"}, nil, []string{"-redis-sentinels", "host:port"}},
		{nil, map[string]string{"SHOP_REDIS_SENTINELS": ":26379"}, []string{"-redis-sentinels"}},
		{[]string{"-redis-master", "my shop"}, nil, []string{"-redis-master"}},
		{[]string{"-redis-wait-replicas", "-1"}, nil, []string{"-redis-wait-replicas"}},
		{[]string{"-redis-wait-replicas", "all"}, nil, []string{"-redis-wait-replicas"}},
		{[]string{"-session-lock", "maybe"}, nil, []string{"-session-lock", "on", "off"}},
		{[]string{"-drain", "soon"}, nil, []string{"-drain"}},
		{[]string{"-log-level", "loud"}, nil, []string{"-log-level"}},
		{[]string{"-no-such-flag"}, nil, []string{"no-such-flag"}},
		{[]string{"extra"}, nil, []string{"extra"}},
	}
	for _, tt := range bad {
		_, err := parseFlags(append([]string{"shop"}, tt.args...), env(tt.env), io.Discard)
		if err == nil {
			t.Errorf("%v %v: accepted", tt.args, tt.env)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("%v: error is more than one line: %q", tt.args, msg)
		}
		for _, m := range tt.mention {
			if !strings.Contains(msg, m) {
				t.Errorf("%v: error %q does not mention %q", tt.args, msg, m)
			}
		}
	}
}

// TestRun boots the real program on a free port, waits for /readyz, then
// cancels it as SIGTERM would and expects a clean exit after the drain.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	env := map[string]string{"SHOP_DB": filepath.Join(dir, "shop.db"), "SHOP_DRAIN": "200ms", "SHOP_LOG_LEVEL": "warn"}
	stdout, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"shop", "-addr", "127.0.0.1:0", "-replica", "test1"}, func(k string) string { return env[k] }, stdoutW, io.Discard)
		stdoutW.Close()
	}()

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v", err)
	}
	go io.Copy(io.Discard, stdout)
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no address in %q", line)
	}
	base := strings.Fields(line[i:])[0]

	waitStatus(t, base+"/readyz", http.StatusOK)
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "test1" {
		t.Errorf("GET /: %d, X-Served-By %q", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}

	cancel() // what SIGTERM does through signal.NotifyContext
	// While draining: not ready, still serving.
	waitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("during the drain /healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return 5 s after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after run returned")
	}
}

func TestRunBadFlag(t *testing.T) {
	err := run(context.Background(), []string{"shop", "-session-store", "nope"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "memory and redis") {
		t.Errorf("run with a bad store: %v", err)
	}
}

func TestHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"shop", "-healthcheck", "-addr", "127.0.0.1:1"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil {
		t.Error("-healthcheck against nothing succeeded")
	}
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d (last: %v %v)", url, want, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisPassword: -redis-addr takes host:port or
// redis://[[user]:password@]host[:port]; -redis-password (or
// SHOP_REDIS_PASSWORD) wins over a password in the URL; a bad address is
// one line that never repeats the password.
func TestRedisPassword(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	for _, tt := range []struct {
		args               []string
		env                map[string]string
		addr, user, passwd string
	}{
		{[]string{"-redis-addr", "10.0.0.5:6380"}, nil, "10.0.0.5:6380", "", ""},
		{[]string{"-redis-addr", "redis://:s3cret@10.0.0.5:6380"}, nil, "10.0.0.5:6380", "", "s3cret"},
		{[]string{"-redis-addr", "redis://s3cret@cache"}, nil, "cache:6379", "", "s3cret"},
		{[]string{"-redis-addr", "redis://shop:s3cret@cache:6379/"}, nil, "cache:6379", "shop", "s3cret"},
		{nil, map[string]string{"SHOP_REDIS_PASSWORD": "fromenv"}, "127.0.0.1:6379", "", "fromenv"},
		{[]string{"-redis-addr", "redis://:inurl@cache:6379", "-redis-password", "flag"}, nil, "cache:6379", "", "flag"},
	} {
		c, err := parseFlags(append([]string{"shop"}, tt.args...), env(tt.env), io.Discard)
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		if c.redisAddr != tt.addr || c.redisUser != tt.user || c.redisPass != tt.passwd {
			t.Errorf("%v %v: addr %q user %q password %q, want %q %q %q", tt.args, tt.env, c.redisAddr, c.redisUser, c.redisPass, tt.addr, tt.user, tt.passwd)
		}
	}
	for _, addr := range []string{"http://:s3cret@cache:6379", "redis://:s3cret@cache:6379/3", "redis://:s3cret@:6379", "redis://:s3cret@cache:port"} {
		_, err := parseFlags([]string{"shop", "-redis-addr", addr}, env(nil), io.Discard)
		if err == nil {
			t.Errorf("-redis-addr %s: accepted", addr)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "-redis-addr") || strings.Contains(msg, "s3cret") || strings.Contains(msg, "\n") {
			t.Errorf("-redis-addr %s: %q; want one line naming the flag, without the password", addr, msg)
		}
	}
}
