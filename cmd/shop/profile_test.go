package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statelab/shop/internal/testenv"
)

// TestProfile: -profile presets the state flags, an explicit flag or
// environment variable wins, and the profile reported is the one the
// settings match in full.
func TestProfile(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	// The object store's address and keys: the one thing -profile
	// stateless cannot preset.
	s3 := map[string]string{"SHOP_S3_ENDPOINT": "http://127.0.0.1:7070", "SHOP_S3_ACCESS_KEY": "key", "SHOP_S3_SECRET_KEY": "secret"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for mk, mv := range m {
			out[mk] = mv
		}
		return out
	}
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		store, want string
	}{
		{"defaults are the stateful profile", nil, nil, "memory", "stateful"},
		{"stateful", []string{"-profile", "stateful"}, nil, "memory", "stateful"},
		{"stateless", []string{"-profile", "stateless"}, s3, "redis", "stateless"},
		{"from the environment", nil, with(s3, "SHOP_PROFILE", "stateless"), "redis", "stateless"},
		{"a flag wins", []string{"-profile", "stateless", "-session-store", "cookie", "-session-keys", strings.Repeat("k", 32)}, s3, "cookie", "custom"},
		// A variable wins for its flag; the profile still sets the rest,
		// so the whole matches neither profile.
		{"the flag's variable wins", []string{"-profile", "stateless"}, with(s3, "SHOP_SESSION_STORE", "memory"), "memory", "custom"},
		{"every flag's variable wins", []string{"-profile", "stateless"}, map[string]string{"SHOP_SESSION_STORE": "memory", "SHOP_LIVE": "local", "SHOP_JOBS": "memory", "SHOP_SCHEDULE": "local", "SHOP_UPLOADS": "photos"}, "memory", "stateful"},
		{"flags one by one match a profile", []string{"-session-store", "redis", "-jobs", "queue", "-schedule", "shared", "-uploads", "s3://mine"}, s3, "redis", "stateless"},
		{"one state flag short is custom", []string{"-session-store", "redis", "-jobs", "queue", "-schedule", "shared"}, nil, "redis", "custom"},
		{"a directory for photos is stateful's", []string{"-uploads", "photos"}, nil, "memory", "stateful"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(append([]string{"shop"}, tt.args...), env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.sessionStore != tt.store || c.profile != tt.want {
				t.Errorf("session store %q, profile %q; want %q, %q", c.sessionStore, c.profile, tt.store, tt.want)
			}
		})
	}
	for _, e := range []map[string]string{nil, {"SHOP_S3_ENDPOINT": "http://127.0.0.1:7070"}} {
		_, err := parseFlags([]string{"shop", "-profile", "stateless"}, env(e), io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-s3-endpoint, -s3-access-key and -s3-secret-key") {
			t.Errorf("stateless with S3 settings %v: %v; want one line naming the S3 settings", e, err)
		}
	}
	_, err := parseFlags([]string{"shop", "-profile", "stateles"}, env(nil), io.Discard)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-profile") || !strings.Contains(err.Error(), "stateful and stateless") {
		t.Errorf("a bad profile: %v; want one line naming -profile and its values", err)
	}
}

// TestStateAudit: a memory replica's /api/state counts the carts it holds
// as lost if it is killed, and says so in the headline.
func TestStateAudit(t *testing.T) {
	base := startRun(t, map[string]string{"SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s", "SHOP_LOG_LEVEL": "warn"})
	waitStatus(t, base+"/readyz", http.StatusOK)
	audit := func() (a struct {
		Replica, Profile, Loses string
		Kinds                   []struct {
			Kind, Lives  string
			HeldHere     int  `json:"held_here"`
			LostIfKilled bool `json:"lost_if_killed"`
		}
	}) {
		t.Helper()
		resp, err := http.Get(base + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/api/state: %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := audit()
	if a.Replica != "test1" || a.Profile != "stateful" || a.Loses != "nothing" {
		t.Errorf("before any cart: %+v; want test1, stateful, nothing", a)
	}
	for i := 0; i < 2; i++ {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("POST", base+"/cart/items", strings.NewReader(url.Values{"product_id": {"1"}, "quantity": {"1"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add: %s", resp.Status)
		}
	}
	a = audit()
	if a.Loses != "2 carts" {
		t.Errorf("with two carts in memory the headline is %q; want %q", a.Loses, "2 carts")
	}
	var sessions bool
	for _, k := range a.Kinds {
		if k.Kind == "sessions" {
			sessions = true
			if k.Lives != "replica" || k.HeldHere != 2 || !k.LostIfKilled {
				t.Errorf("sessions row %+v; want replica, 2 held, lost if killed", k)
			}
		}
	}
	if !sessions {
		t.Errorf("no sessions row in %+v", a.Kinds)
	}
	resp, err := http.Get(base + "/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "kill -9 now would lose: 2 carts.") {
		t.Errorf("/state: %s, headline missing from the page", resp.Status)
	}
}

// TestStateAuditKinds: each profile's /api/state answers every kind that
// has landed from the running configuration: the stateful profile's login
// counts live in the replica and are lost with it, the stateless
// profile's in Redis; caches are never lost.
func TestStateAuditKinds(t *testing.T) {
	redis := testenv.StartRedis(t)
	objects := testenv.StartObjectStore(t)
	stateless := map[string]string{"SHOP_REDIS_ADDR": redis.Addr(), "SHOP_SESSION_CACHE": "on"}
	for _, kv := range objects.Env("shop-photos") {
		k, v, _ := strings.Cut(kv, "=")
		stateless[k] = v
	}
	tests := []struct {
		profile string
		env     map[string]string
		lives   map[string]string // kind → lives
		lost    map[string]bool   // kind → lost_if_killed after one wrong password
		loses   string
	}{
		{"stateful", nil,
			map[string]string{"sessions": "replica", "uploads": "replica", "jobs": "replica", "schedule": "replica", "live": "replica", "caches": "replica", "rate-limits": "replica", "configuration": "replica"},
			map[string]bool{"sessions": true, "caches": false, "rate-limits": true},
			"1 login-limit count"},
		{"stateless", stateless,
			map[string]string{"sessions": "shared", "uploads": "object-store", "rate-limits": "shared", "caches": "replica"},
			map[string]bool{"sessions": false, "uploads": false, "caches": false, "rate-limits": false},
			"nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			env := map[string]string{"SHOP_PROFILE": tt.profile, "SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s", "SHOP_LOG_LEVEL": "warn"}
			for k, v := range tt.env {
				env[k] = v
			}
			if tt.profile == "stateless" {
				// Only the object store's settings are given, and the
				// profile puts the photos there.
				delete(env, "SHOP_UPLOADS")
			}
			base := startRun(t, env)
			waitStatus(t, base+"/readyz", http.StatusOK)
			resp, err := http.PostForm(base+"/login", url.Values{"email": {"ada@example.com"}, "password": {"not the password"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			resp, err = http.Get(base + "/api/state")
			if err != nil {
				t.Fatal(err)
			}
			var a struct {
				Profile, Loses string
				Kinds          []struct {
					Kind, Lives  string
					LostIfKilled bool `json:"lost_if_killed"`
				}
			}
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if a.Profile != tt.profile || a.Loses != tt.loses {
				t.Errorf("profile %q, headline %q; want %q, %q", a.Profile, a.Loses, tt.profile, tt.loses)
			}
			seen := map[string]bool{}
			for _, k := range a.Kinds {
				seen[k.Kind] = true
				if want, ok := tt.lives[k.Kind]; ok && k.Lives != want {
					t.Errorf("%s lives %q; want %q", k.Kind, k.Lives, want)
				}
				if want, ok := tt.lost[k.Kind]; ok && k.LostIfKilled != want {
					t.Errorf("%s lost_if_killed %v; want %v", k.Kind, k.LostIfKilled, want)
				}
			}
			for _, kind := range []string{"sessions", "uploads", "jobs", "schedule", "live", "caches", "rate-limits", "configuration"} {
				if !seen[kind] {
					t.Errorf("no %s row in %+v", kind, a.Kinds)
				}
			}
		})
	}
}
