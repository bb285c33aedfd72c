package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestRenderNginxRejects(t *testing.T) {
	good := func() NginxConfig {
		return NginxConfig{
			Listen:   "127.0.0.1:8080",
			Policy:   PolicySticky,
			Replicas: []Replica{{"shop1", "127.0.0.1:8081"}, {"shop2", "127.0.0.1:8082"}},
		}
	}
	if _, err := RenderNginx(good()); err != nil {
		t.Fatalf("RenderNginx(valid config): %v", err)
	}
	tests := []struct {
		name   string
		change func(*NginxConfig)
	}{
		{"unknown policy", func(c *NginxConfig) { c.Policy = "ip_hash" }},
		{"empty policy", func(c *NginxConfig) { c.Policy = "" }},
		{"no replicas", func(c *NginxConfig) { c.Replicas = nil }},
		{"empty name", func(c *NginxConfig) { c.Replicas[0].Name = "" }},
		{"empty addr", func(c *NginxConfig) { c.Replicas[0].Addr = "" }},
		{"addr without port", func(c *NginxConfig) { c.Replicas[0].Addr = "127.0.0.1" }},
		{"addr with bad port", func(c *NginxConfig) { c.Replicas[0].Addr = "127.0.0.1:99999" }},
		{"addr injects a directive", func(c *NginxConfig) { c.Replicas[0].Addr = "127.0.0.1:8081; return 500" }},
		{"name injects a directive", func(c *NginxConfig) { c.Replicas[0].Name = "shop1; evil" }},
		{"name collides with shop_all", func(c *NginxConfig) { c.Replicas[0].Name = "all" }},
		{"duplicate name", func(c *NginxConfig) { c.Replicas[1].Name = "shop1" }},
		{"duplicate addr", func(c *NginxConfig) { c.Replicas[1].Addr = "127.0.0.1:8081" }},
		{"empty listen", func(c *NginxConfig) { c.Listen = "" }},
		{"listen with spaces", func(c *NginxConfig) { c.Listen = "8080 default_server" }},
		{"access log with spaces", func(c *NginxConfig) { c.AccessLog = "access.log main" }},
		{"user injects a directive", func(c *NginxConfig) { c.User = "root; daemon on" }},
		{"resolver injects a directive", func(c *NginxConfig) { c.Resolver = "127.0.0.11; evil" }},
		{"resolver is a name", func(c *NginxConfig) { c.Resolver = "dns" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			if conf, err := RenderNginx(c); err == nil {
				t.Errorf("RenderNginx(%+v) = nil error, want one; rendered:\n%s", c, conf)
			}
		})
	}
}

func TestRenderNginxPolicies(t *testing.T) {
	replicas := []Replica{{"shop1", "127.0.0.1:8081"}, {"shop2", "127.0.0.1:8082"}}
	sticky, err := RenderNginx(NginxConfig{Listen: "8080", Policy: PolicySticky, Replicas: replicas, User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	roundRobin, err := RenderNginx(NginxConfig{Listen: "8080", Policy: PolicyRoundRobin, Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"user root;",
		"proxy_set_header X-Shop-Sticky 1;",
		"proxy_pass http://$shop_backend;",
		"shop1 shop_shop1;",
		"server 127.0.0.1:8082 max_fails=1 fail_timeout=2s backup;",
		"add_header X-LB-Policy sticky always;",
		"access_log access.log shop;",
	} {
		if !bytes.Contains(sticky, []byte(want)) {
			t.Errorf("sticky rendering lacks %q", want)
		}
	}
	for _, want := range []string{
		`proxy_set_header X-Shop-Sticky "";`,
		"proxy_pass http://shop_all;",
		"add_header X-LB-Policy roundrobin always;",
	} {
		if !bytes.Contains(roundRobin, []byte(want)) {
			t.Errorf("roundrobin rendering lacks %q", want)
		}
	}
	for _, unwanted := range []string{"user ", "X-Shop-Sticky 1", "backup", "$cookie_shop_route"} {
		if bytes.Contains(roundRobin, []byte(unwanted)) {
			t.Errorf("roundrobin rendering contains %q", unwanted)
		}
	}
}

func TestRenderingsAreFresh(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.FromSlash(f.Path))
		if err != nil {
			t.Fatalf("%v (run go generate ./deploy/)", err)
		}
		if !bytes.Equal(got, f.Body) {
			t.Errorf("%s differs from its rendering: run go generate ./deploy/", f.Path)
		}
	}
}

func TestWriteNginx(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	c := NginxConfig{Listen: "8080", Policy: PolicySticky, Replicas: []Replica{{"shop1", "127.0.0.1:8081"}}}
	confPath, err := WriteNginx(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if confPath != filepath.Join(dir, "nginx.conf") {
		t.Errorf("conf path = %s, want %s", confPath, filepath.Join(dir, "nginx.conf"))
	}
	want, _ := RenderNginx(c)
	if got, _ := os.ReadFile(confPath); !bytes.Equal(got, want) {
		t.Error("nginx.conf differs from RenderNginx's output")
	}
	committed, err := os.ReadFile(filepath.Join("nginx", "proxy.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "proxy.conf")); !bytes.Equal(got, committed) || !bytes.Equal(ProxySnippet(), committed) {
		t.Error("proxy.conf written or returned differs from nginx/proxy.conf")
	}
	for _, d := range []string{"client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("temp dir %s: %v", d, err)
		}
		if !bytes.Contains(want, []byte(" "+d+";")) {
			t.Errorf("nginx.conf does not use temp dir %s", d)
		}
	}
	if _, err := WriteNginx(t.TempDir(), NginxConfig{Policy: PolicySticky}); err == nil {
		t.Error("WriteNginx(invalid config) = nil error")
	}
}

// TestNginxAcceptsRenderings runs `nginx -t` on fresh renderings of both
// policies and on the committed ones.
func TestNginxAcceptsRenderings(t *testing.T) {
	nginx := nginxBinary(t)
	for _, policy := range []string{PolicyRoundRobin, PolicySticky} {
		t.Run(policy, func(t *testing.T) {
			c := NginxConfig{
				Listen:   freeAddr(t),
				Policy:   policy,
				Replicas: []Replica{{"shop1", freeAddr(t)}, {"shop2", freeAddr(t)}, {"shop3", freeAddr(t)}},
				User:     testUser(),
			}
			dir := t.TempDir()
			conf, err := WriteNginx(dir, c)
			if err != nil {
				t.Fatal(err)
			}
			checkNginxConfig(t, nginx, dir, conf)
		})
	}

	committed := make(map[string][]byte)
	for _, r := range Renderings() {
		b, err := os.ReadFile(filepath.Join("nginx", r.File))
		if err != nil {
			t.Fatal(err)
		}
		committed[r.File] = b
	}
	for _, r := range Renderings() {
		t.Run(r.File, func(t *testing.T) {
			conf := committed[r.File]
			if local, ok := strings.CutPrefix(r.File, "compose-"); ok {
				// The compose nginx re-resolves its replicas (Resolver),
				// which this machine's nginx 1.22 cannot parse: check the
				// rendering without it, and that it differs from the
				// committed one only in what Resolver adds.
				conf = withoutResolver(t, r.Config, conf)
				// Compose upstreams (shop1:8080) only resolve inside the
				// compose network, and nginx -t resolves them. Point them at
				// the local replicas instead, and prove that this and the
				// listen and access_log lines are all that set the compose
				// rendering apart from the local one nginx -t checks too.
				conf = composeAsLocal(t, conf, committed["local-"+local])
			}
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "proxy.conf"), ProxySnippet())
			writeFile(t, filepath.Join(dir, "nginx.conf"), conf)
			checkNginxConfig(t, nginx, dir, filepath.Join(dir, "nginx.conf"))
		})
	}
}

// withoutResolver renders c without its Resolver, and checks that the
// lines conf has beyond that rendering are only Resolver's: the resolver and
// zone directives, comments, and the resolve parameter of upstream servers.
func withoutResolver(t *testing.T, c NginxConfig, conf []byte) []byte {
	t.Helper()
	if c.Resolver == "" {
		t.Fatalf("a compose rendering without Resolver: %+v", c)
	}
	c.Resolver = ""
	plain, err := RenderNginx(c)
	if err != nil {
		t.Fatal(err)
	}
	significant := func(b []byte, dropResolve bool) []string {
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if dropResolve {
				line = strings.Replace(line, " resolve;", ";", 1)
				if strings.HasPrefix(line, "resolver ") || strings.HasPrefix(line, "zone ") {
					continue
				}
			}
			if line != "" && !strings.HasPrefix(line, "#") {
				out = append(out, line)
			}
		}
		return out
	}
	if got, want := significant(conf, true), significant(plain, false); !slices.Equal(got, want) {
		t.Errorf("the rendering differs from the one without a resolver in more than resolver, zone and resolve:\n%s\n----\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	return plain
}

// TestNginxResolvesInCompose: the compose renderings look the replicas up
// at request time through Docker's DNS, on every upstream server, with the
// shared-memory zone that needs; the local ones, run by nginx 1.22, do not.
func TestNginxResolvesInCompose(t *testing.T) {
	for _, r := range Renderings() {
		conf, err := RenderNginx(r.Config)
		if err != nil {
			t.Fatal(err)
		}
		compose := strings.HasPrefix(r.File, "compose-")
		if compose != (r.Config.Resolver == "127.0.0.11") {
			t.Errorf("%s: Resolver %q; want 127.0.0.11 (Docker's DNS) in compose renderings only", r.File, r.Config.Resolver)
		}
		if !compose {
			if bytes.Contains(conf, []byte("resolve")) {
				t.Errorf("%s mentions resolve, which its nginx 1.22 does not know", r.File)
			}
			continue
		}
		if !bytes.Contains(conf, []byte("\n    resolver 127.0.0.11 ")) {
			t.Errorf("%s: no resolver 127.0.0.11 in the http block", r.File)
		}
		var upstream string
		zoned := make(map[string]bool)
		for _, line := range strings.Split(string(conf), "\n") {
			f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ";"))
			switch {
			case len(f) == 3 && f[0] == "upstream":
				upstream = f[1]
			case len(f) == 3 && f[0] == "zone" && f[1] == upstream:
				zoned[upstream] = true
			case len(f) > 1 && f[0] == "server" && upstream != "":
				if f[len(f)-1] != "resolve" {
					t.Errorf("%s: upstream %s: %q is resolved only once, at start", r.File, upstream, line)
				}
				if !zoned[upstream] {
					t.Errorf("%s: upstream %s resolves without a zone before its servers", r.File, upstream)
				}
			case len(f) == 1 && f[0] == "}":
				upstream = ""
			}
		}
		if len(zoned) == 0 {
			t.Errorf("%s: no upstream with a zone", r.File)
		}
	}
}

// composeAsLocal rewrites the compose rendering's upstream servers to the
// local rendering's addresses of the same replicas and checks that every
// other line the two differ in is a listen or access_log line.
func composeAsLocal(t *testing.T, compose, local []byte) []byte {
	t.Helper()
	addrs := make(map[string]string) // replica name → local address
	for _, r := range Renderings() {
		if strings.HasPrefix(r.File, "local-") {
			for _, rep := range r.Config.Replicas {
				addrs[rep.Name] = rep.Addr
			}
		}
	}
	rewritten := string(compose)
	for _, r := range Renderings() {
		if strings.HasPrefix(r.File, "compose-") {
			for _, rep := range r.Config.Replicas {
				rewritten = strings.ReplaceAll(rewritten, "server "+rep.Addr+" ", "server "+addrs[rep.Name]+" ")
			}
		}
	}
	got, want := strings.Split(rewritten, "\n"), strings.Split(string(local), "\n")
	if len(got) != len(want) {
		t.Fatalf("compose rendering has %d lines, local has %d", len(got), len(want))
	}
	for i := range got {
		line := strings.TrimSpace(got[i])
		if got[i] != want[i] && !strings.HasPrefix(line, "listen ") && !strings.HasPrefix(line, "access_log ") {
			t.Errorf("line %d: compose rendering has %q, local has %q", i+1, got[i], want[i])
		}
	}
	return []byte(rewritten)
}

func checkNginxConfig(t *testing.T, nginx, prefix, conf string) {
	t.Helper()
	errorLog := filepath.Join(prefix, "error.log")
	out, err := exec.Command(nginx, "-t", "-q", "-p", prefix, "-c", conf, "-e", errorLog).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(errorLog)
		t.Fatalf("nginx -t: %v\n%s%s", err, out, log)
	}
}

func TestNginxRoundRobin(t *testing.T) {
	t.Parallel()
	nginx := nginxBinary(t)
	backends := startBackends(t, "shop1", "shop2", "shop3")
	lb := startNginx(t, nginx, PolicyRoundRobin, backends)

	t.Run("health", func(t *testing.T) {
		res, body := lb.get(t, "/nginx-health", nil)
		if res.StatusCode != http.StatusOK || strings.TrimSpace(body) != "ok" {
			t.Errorf("GET /nginx-health = %d %q, want 200 ok", res.StatusCode, body)
		}
	})

	t.Run("spreads over every replica", func(t *testing.T) {
		served := make(map[string]int)
		for range 9 {
			// A client's own X-Shop-Sticky must not make the app pin it.
			res, body := lb.get(t, "/", map[string]string{"X-Shop-Sticky": "1"})
			seen := decodeSeen(t, body)
			served[res.Header.Get("X-Served-By")]++
			if got := res.Header.Get("X-LB-Policy"); got != PolicyRoundRobin {
				t.Errorf("X-LB-Policy = %q, want %q", got, PolicyRoundRobin)
			}
			if seen.Sticky != "" || res.Header.Get("Set-Cookie") != "" {
				t.Errorf("roundrobin passed X-Shop-Sticky %q upstream (Set-Cookie %q)", seen.Sticky, res.Header.Get("Set-Cookie"))
			}
		}
		for _, b := range backends {
			if served[b.name] == 0 {
				t.Errorf("9 requests never reached %s: %v", b.name, served)
			}
		}
	})

	t.Run("proxy headers", func(t *testing.T) {
		res, body := lb.get(t, "/", nil)
		seen := decodeSeen(t, body)
		if seen.Host != lb.addr {
			t.Errorf("backend saw Host %q, want %q (with the port)", seen.Host, lb.addr)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(seen.RequestID) {
			t.Errorf("backend saw X-Request-ID %q, want nginx's $request_id", seen.RequestID)
		}
		if seen.ForwardedFor != "127.0.0.1" || seen.ForwardedProto != "http" {
			t.Errorf("backend saw X-Forwarded-For %q, X-Forwarded-Proto %q", seen.ForwardedFor, seen.ForwardedProto)
		}
		if res.Header.Get("X-Served-By") != seen.Replica {
			t.Errorf("X-Served-By = %q, want %q", res.Header.Get("X-Served-By"), seen.Replica)
		}
	})

	t.Run("same-origin POST passes CrossOriginProtection", func(t *testing.T) {
		for _, tt := range []struct {
			origin string
			want   int
		}{
			{"http://" + lb.addr, http.StatusOK},
			{"http://evil.example", http.StatusForbidden},
		} {
			res, _ := lb.do(t, http.MethodPost, "/cart/items", map[string]string{"Origin": tt.origin})
			if res.StatusCode != tt.want {
				t.Errorf("POST with Origin %s = %d, want %d", tt.origin, res.StatusCode, tt.want)
			}
		}
	})

	// Last: a dropped connection marks its replica failed for fail_timeout.
	t.Run("sent POST is not retried, GET is", func(t *testing.T) {
		hits := func() int64 {
			var n int64
			for _, b := range backends {
				n += b.drops.Load()
			}
			return n
		}
		before := hits()
		res, _ := lb.do(t, http.MethodPost, "/drop", nil)
		if res.StatusCode != http.StatusBadGateway || hits()-before != 1 {
			t.Errorf("POST /drop = %d after %d attempts, want 502 after 1", res.StatusCode, hits()-before)
		}
		// The replica the POST failed on now sits out fail_timeout, so the
		// GET meets the two others.
		before = hits()
		res, _ = lb.do(t, http.MethodGet, "/drop", nil)
		if res.StatusCode != http.StatusBadGateway || hits()-before != 2 {
			t.Errorf("GET /drop = %d after %d attempts, want 502 after 2", res.StatusCode, hits()-before)
		}
	})
}

func TestNginxSticky(t *testing.T) {
	t.Parallel()
	nginx := nginxBinary(t)
	backends := startBackends(t, "shop1", "shop2", "shop3")
	lb := startNginx(t, nginx, PolicySticky, backends)

	// Cookieless requests are spread, and each one is offered a pin.
	served := make(map[string]int)
	for range 9 {
		res, _ := lb.get(t, "/", nil)
		served[res.Header.Get("X-Served-By")]++
		if route := routeCookie(res); route != res.Header.Get("X-Served-By") {
			t.Errorf("cookieless request served by %s got shop_route %q", res.Header.Get("X-Served-By"), route)
		}
	}
	if len(served) != len(backends) {
		t.Errorf("9 cookieless requests reached %v, want all %d replicas", served, len(backends))
	}

	// Sticky from the very first request.
	res, body := lb.get(t, "/", nil)
	pinned := routeCookie(res)
	if pinned == "" || pinned != res.Header.Get("X-Served-By") {
		t.Fatalf("first request served by %q set shop_route %q", res.Header.Get("X-Served-By"), pinned)
	}
	if got := res.Header.Get("X-LB-Policy"); got != PolicySticky {
		t.Errorf("X-LB-Policy = %q, want %q", got, PolicySticky)
	}
	if seen := decodeSeen(t, body); seen.Sticky != "1" {
		t.Errorf("backend saw X-Shop-Sticky %q, want 1", seen.Sticky)
	}
	cookie := map[string]string{"Cookie": "shop_route=" + pinned}
	for i := range 10 {
		res, _ := lb.get(t, "/", cookie)
		if got := res.Header.Get("X-Served-By"); got != pinned {
			t.Fatalf("request %d with shop_route=%s served by %s", i+1, pinned, got)
		}
		if route := routeCookie(res); route != "" {
			t.Errorf("request %d re-pinned to %q though the cookie matched", i+1, route)
		}
	}

	// The pinned replica dies: requests fall back to a backup and get re-pinned.
	for _, b := range backends {
		if b.name == pinned {
			b.srv.Close()
		}
	}
	res, _ = lb.get(t, "/", cookie)
	repinned := routeCookie(res)
	if res.StatusCode != http.StatusOK || repinned == "" || repinned == pinned || repinned != res.Header.Get("X-Served-By") {
		t.Fatalf("after %s died: status %d, served by %q, shop_route %q; want 200 from another replica that re-pins",
			pinned, res.StatusCode, res.Header.Get("X-Served-By"), repinned)
	}
	cookie = map[string]string{"Cookie": "shop_route=" + repinned}
	for i := range 5 {
		res, _ := lb.get(t, "/", cookie)
		if got := res.Header.Get("X-Served-By"); res.StatusCode != http.StatusOK || got != repinned {
			t.Fatalf("request %d with shop_route=%s: %d from %s", i+1, repinned, res.StatusCode, got)
		}
	}
	// A browser still holding the dead replica's cookie is served too.
	if res, _ := lb.get(t, "/", map[string]string{"Cookie": "shop_route=" + pinned}); res.StatusCode != http.StatusOK {
		t.Errorf("request with the dead replica's cookie: %d", res.StatusCode)
	}
}

// nginxBinary returns the nginx executable, or skips the test with the
// install command; with SHOP_TEST_REQUIRE=all a missing nginx fails instead.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	// Debian puts nginx in /usr/sbin, which is not on every user's PATH.
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && !fi.IsDir() {
		return "/usr/sbin/nginx"
	}
	const msg = "nginx not found; install it with: apt-get install -y nginx"
	if os.Getenv("SHOP_TEST_REQUIRE") == "all" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// testUser is the `user` directive a test rendering needs: a root master
// would otherwise run its workers as nobody, who cannot enter t.TempDir().
func testUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return ""
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// backend stands in for a shop replica: it names itself in X-Served-By,
// pins like the app when nginx asks for it, refuses cross-origin POSTs like
// the app, and echoes what nginx sent it.
type backend struct {
	name  string
	srv   *httptest.Server
	drops atomic.Int64 // requests to /drop, answered by closing the connection
}

// seenRequest is what a backend echoes about the request nginx sent it.
type seenRequest struct {
	Replica, Host, RequestID, Sticky, ForwardedFor, ForwardedProto string
}

func startBackends(t *testing.T, names ...string) []*backend {
	t.Helper()
	var backends []*backend
	for _, name := range names {
		b := &backend{name: name}
		mux := http.NewServeMux()
		mux.HandleFunc("/drop", func(w http.ResponseWriter, r *http.Request) {
			b.drops.Add(1)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", name)
			if r.Header.Get("X-Shop-Sticky") == "1" {
				if c, err := r.Cookie("shop_route"); err != nil || c.Value != name {
					http.SetCookie(w, &http.Cookie{Name: "shop_route", Value: name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
				}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(seenRequest{
				Replica:        name,
				Host:           r.Host,
				RequestID:      r.Header.Get("X-Request-ID"),
				Sticky:         r.Header.Get("X-Shop-Sticky"),
				ForwardedFor:   r.Header.Get("X-Forwarded-For"),
				ForwardedProto: r.Header.Get("X-Forwarded-Proto"),
			})
		})
		b.srv = httptest.NewServer(http.NewCrossOriginProtection().Handler(mux))
		t.Cleanup(b.srv.Close)
		backends = append(backends, b)
	}
	return backends
}

// lb is a running nginx in front of test backends.
type lb struct {
	addr   string
	client *http.Client
}

// startNginx runs nginx with a WriteNginx rendering on a free port until the
// test ends.
func startNginx(t *testing.T, nginx, policy string, backends []*backend) *lb {
	t.Helper()
	c := NginxConfig{Listen: freeAddr(t), Policy: policy, User: testUser()}
	for _, b := range backends {
		c.Replicas = append(c.Replicas, Replica{Name: b.name, Addr: b.srv.Listener.Addr().String()})
	}
	dir := t.TempDir()
	conf, err := WriteNginx(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	errorLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(nginx, "-p", dir, "-c", conf, "-e", errorLog, "-g", "daemon off;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Own process group: if the master ignores SIGTERM, its workers go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	l := &lb{addr: c.Listen, client: &http.Client{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.addr+"/nginx-health", nil)
		if res, err := l.client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return l
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx exited at start: %s%s", out.Bytes(), log)
		case <-ctx.Done():
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx not answering on %s: %s%s", l.addr, out.Bytes(), log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (l *lb) get(t *testing.T, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	return l.do(t, http.MethodGet, path, header)
}

func (l *lb) do(t *testing.T, method, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+l.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := l.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	return res, body.String()
}

func decodeSeen(t *testing.T, body string) seenRequest {
	t.Helper()
	var s seenRequest
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return s
}

// routeCookie returns the shop_route value the response sets, or "".
func routeCookie(res *http.Response) string {
	for _, c := range res.Cookies() {
		if c.Name == "shop_route" {
			return c.Value
		}
	}
	return ""
}
