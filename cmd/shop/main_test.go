package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
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

	if c.jobs != "memory" || c.jobDelay != 0 || c.schedule != "local" || c.reportEvery != time.Hour {
		t.Errorf("job defaults: jobs %q, delay %s, schedule %q, every %s; want memory, 0s, local, 1h", c.jobs, c.jobDelay, c.schedule, c.reportEvery)
	}
	c, err = parseFlags([]string{"shop", "-jobs", "queue", "-report-every", "5s"}, env(map[string]string{
		"SHOP_JOBS": "memory", "SHOP_JOB_DELAY": "3s", "SHOP_SCHEDULE": "shared", "SHOP_REPORT_EVERY": "1m",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.jobs != "queue" || c.jobDelay != 3*time.Second || c.schedule != "shared" || c.reportEvery != 5*time.Second {
		t.Errorf("job settings: jobs %q, delay %s, schedule %q, every %s; want queue, 3s, shared, 5s (flags win)", c.jobs, c.jobDelay, c.schedule, c.reportEvery)
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
	if c.dbMaxConns != 0 {
		t.Errorf("-db-max-conns defaults to %d, want 0 (the store's own default)", c.dbMaxConns)
	}
	if c, err := parseFlags([]string{"shop", "-db-max-conns", "6"}, env(map[string]string{"SHOP_DB_MAX_CONNS": "9"}), io.Discard); err != nil || c.dbMaxConns != 6 {
		t.Errorf("-db-max-conns 6 over SHOP_DB_MAX_CONNS=9: %d, %v", c.dbMaxConns, err)
	}
	if c, err := parseFlags([]string{"shop"}, env(map[string]string{"SHOP_DB_MAX_CONNS": "9"}), io.Discard); err != nil || c.dbMaxConns != 9 {
		t.Errorf("SHOP_DB_MAX_CONNS=9: %d, %v", c.dbMaxConns, err)
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
		{[]string{"-session-store", "postgres"}, nil, []string{"-session-store", "memory", "redis", "cookie"}},
		{nil, map[string]string{"SHOP_SESSION_STORE": "etcd"}, []string{"-session-store", "memory", "redis", "cookie"}},
		{[]string{"-session-store", "cookie"}, nil, []string{"-session-keys", "32"}},
		{[]string{"-session-store", "cookie", "-session-keys", strings.Repeat("k", 32) + ",short"}, nil, []string{"-session-keys", "key 2", "32"}},
		{nil, map[string]string{"SHOP_SESSION_STORE": "cookie", "SHOP_SESSION_KEYS": " "}, []string{"-session-keys"}},
		{[]string{"-addr", "nonsense"}, nil, []string{"-addr"}},
		{[]string{"-addr", ":99999"}, nil, []string{"-addr"}},
		{[]string{"-redis-addr", "localhost"}, nil, []string{"-redis-addr"}},
		{[]string{"-redis-sentinels", "127.0.0.1:26379,nonsense"}, nil, []string{"-redis-sentinels", "host:port"}},
		{nil, map[string]string{"SHOP_REDIS_SENTINELS": ":26379"}, []string{"-redis-sentinels"}},
		{[]string{"-redis-master", "my shop"}, nil, []string{"-redis-master"}},
		{[]string{"-redis-wait-replicas", "-1"}, nil, []string{"-redis-wait-replicas"}},
		{[]string{"-redis-wait-replicas", "all"}, nil, []string{"-redis-wait-replicas"}},
		{[]string{"-session-lock", "maybe"}, nil, []string{"-session-lock", "on", "off"}},
		{[]string{"-memory-sessions", "0"}, nil, []string{"-memory-sessions"}},
		{[]string{"-db-max-conns", "-1"}, nil, []string{"-db-max-conns", "1 to 1000"}},
		{nil, map[string]string{"SHOP_DB_MAX_CONNS": "many"}, []string{"-db-max-conns"}},
		{[]string{"-db-max-conns", "5000"}, nil, []string{"-db-max-conns"}},
		{[]string{"-drain", "soon"}, nil, []string{"-drain"}},
		{[]string{"-jobs", "cron"}, nil, []string{"-jobs", "memory", "queue"}},
		{nil, map[string]string{"SHOP_JOBS": "redis"}, []string{"-jobs", "memory", "queue"}},
		{[]string{"-job-delay", "-1s"}, nil, []string{"-job-delay"}},
		{[]string{"-job-delay", "1h"}, nil, []string{"-job-delay"}},
		{[]string{"-schedule", "cron"}, nil, []string{"-schedule", "local", "shared"}},
		{[]string{"-report-every", "0s"}, nil, []string{"-report-every"}},
		{nil, map[string]string{"SHOP_REPORT_EVERY": "often"}, []string{"-report-every"}},
		{[]string{"-live", "kafka"}, nil, []string{"-live", "local", "redis"}},
		{nil, map[string]string{"SHOP_LIVE": "Redis"}, []string{"-live", "local", "redis"}},
		{[]string{"-live-max-streams", "0"}, nil, []string{"-live-max-streams"}},
		{nil, map[string]string{"SHOP_LIVE_MAX_STREAMS": "lots"}, []string{"-live-max-streams"}},
		{[]string{"-log-level", "loud"}, nil, []string{"-log-level"}},
		{[]string{"-no-such-flag"}, nil, []string{"no-such-flag"}},
		{[]string{"extra"}, nil, []string{"extra"}},
		{[]string{"-uploads", "s3://Bad_Bucket"}, nil, []string{"-uploads", "s3://BUCKET"}},
		{[]string{"-uploads", "gs://photos"}, nil, []string{"-uploads"}},
		{[]string{"-uploads", "s3://photos"}, nil, []string{"-s3-endpoint", "required"}},
		{[]string{"-uploads", "s3://photos", "-s3-endpoint", "127.0.0.1:7070", "-s3-access-key", "a", "-s3-secret-key", "b"}, nil, []string{"-s3-endpoint", "http://"}},
		{nil, map[string]string{"SHOP_UPLOADS": "s3://photos", "SHOP_S3_ENDPOINT": "http://127.0.0.1:7070"}, []string{"-s3-access-key", "-s3-secret-key"}},
		{[]string{"-uploads", "s3://photos", "-s3-endpoint", "http://s3:7070", "-s3-access-key", "a", "-s3-secret-key", "b", "-s3-region", "US East"}, nil, []string{"-s3-region"}},
	}
	c, err = parseFlags([]string{"shop", "-db", "/var/lib/shop/shop.db"}, env(nil), io.Discard)
	if err != nil || c.uploads.Dir != "/var/lib/shop/uploads" || c.uploads.Kind() != "disk" {
		t.Errorf("default -uploads = %+v (%v), want the folder uploads beside the database", c.uploads, err)
	}
	c, err = parseFlags([]string{"shop", "-uploads", "s3://photos"}, env(map[string]string{
		"SHOP_S3_ENDPOINT": "http://127.0.0.1:7070", "SHOP_S3_ACCESS_KEY": "ak", "SHOP_S3_SECRET_KEY": "sk",
	}), io.Discard)
	if err != nil || c.s3.Bucket != "photos" || c.s3.Endpoint.Host != "127.0.0.1:7070" || c.s3.Region != "us-east-1" || c.s3.AccessKey != "ak" || c.s3.SecretKey != "sk" {
		t.Errorf("-uploads s3://photos = %+v (%v)", c.s3, err)
	}
	c, err = parseFlags([]string{"shop", "-session-store", "cookie"}, env(map[string]string{
		"SHOP_SESSION_KEYS": strings.Repeat("a", 32) + "," + strings.Repeat("b", 40),
	}), io.Discard)
	if err != nil || len(c.sessionKeys) != 2 || c.sessionKeys[1] != strings.Repeat("b", 40) || c.sharesRedis() {
		t.Errorf("cookie with two keys and no Redis set: %v, keys %d, shares Redis %v", err, len(c.sessionKeys), c.sharesRedis())
	}
	for _, tt := range []struct {
		args    []string
		env     map[string]string
		store   string
		sharing bool
	}{
		{nil, nil, "memory", false},
		{[]string{"-redis-addr", "10.0.0.1:6379"}, nil, "memory", false},
		{nil, nil, "redis", true},
		{nil, nil, "cookie", false},
		{[]string{"-redis-addr", "10.0.0.1:6379"}, nil, "cookie", true},
		{nil, map[string]string{"SHOP_REDIS_ADDR": "redis:6379"}, "cookie", true},
	} {
		e := map[string]string{"SHOP_SESSION_STORE": tt.store, "SHOP_SESSION_KEYS": strings.Repeat("k", 32)}
		for k, v := range tt.env {
			e[k] = v
		}
		c, err := parseFlags(append([]string{"shop"}, tt.args...), env(e), io.Discard)
		if err != nil || c.sharesRedis() != tt.sharing {
			t.Errorf("%s %v %v: shares Redis %v (%v), want %v", tt.store, tt.args, tt.env, c.sharesRedis(), err, tt.sharing)
		}
		// -live follows: redis where the replicas share a Redis.
		if want := map[bool]string{true: "redis", false: "local"}[tt.sharing]; c.live != want {
			t.Errorf("%s %v %v: -live defaults to %q, want %q", tt.store, tt.args, tt.env, c.live, want)
		}
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
	if err == nil || !strings.Contains(err.Error(), "memory, redis and cookie") {
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

// TestRunCookieWithoutRedis: a cookie replica is ready and keeps a cart
// with no Redis at all, and with a configured Redis that is down logins
// still work, counted per replica.
func TestRunCookieWithoutRedis(t *testing.T) {
	key := strings.Repeat("k", 32)
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"none configured", nil},
		{"configured and down", map[string]string{"SHOP_REDIS_ADDR": "127.0.0.1:1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s", "SHOP_LOG_LEVEL": "warn",
				"SHOP_SESSION_STORE": "cookie", "SHOP_SESSION_KEYS": key}
			for k, v := range tt.env {
				env[k] = v
			}
			base := startRun(t, env)
			waitStatus(t, base+"/readyz", http.StatusOK)
			jar, _ := cookiejar.New(nil)
			client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			post := func(path string, form url.Values) *http.Response {
				req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			if resp := post("/cart/items", url.Values{"product_id": {"1"}, "quantity": {"2"}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("X-Session-Store") != "cookie" {
				t.Fatalf("add to cart: %d, X-Session-Store %q", resp.StatusCode, resp.Header.Get("X-Session-Store"))
			}
			resp, err := client.Get(base + "/api/session")
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Cart struct{ Count int } `json:"cart"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if body.Cart.Count != 2 {
				t.Errorf("cart count %d, want 2", body.Cart.Count)
			}
			// A wrong password is checked and refused (422) either way: with
			// the shared limiter's Redis down the attempt is counted per
			// replica instead (issue 22, item 6; it was a 503 naming the
			// session store, which a cookie replica does not use).
			login := post("/login", url.Values{"email": {"ada@example.com"}, "password": {"not the password"}})
			if want := http.StatusUnprocessableEntity; login.StatusCode != want {
				t.Errorf("login: %d, want %d", login.StatusCode, want)
			}
		})
	}
}

// startRun runs the program on a free port with env until the test ends and
// returns its base URL.
func startRun(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"shop", "-addr", "127.0.0.1:0", "-replica", "test1"}, func(k string) string { return env[k] }, stdoutW, io.Discard)
		stdoutW.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v", err)
	}
	go io.Copy(io.Discard, stdout)
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no address in %q", line)
	}
	return strings.Fields(line[i:])[0]
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
