package deploy

import (
	"bytes"
	"go/ast"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// composeProject is the part of docker-compose.yml these tests check, as a
// loader (loadCompose, in compose_load_*_test.go) reads it: anchors merged,
// variables interpolated, relative paths made absolute.
type composeProject struct {
	Services map[string]composeService
	Volumes  []string // top-level named volumes
}

type composeService struct {
	Image       string
	User        string
	Build       *composeBuild
	Command     []string
	Environment map[string]string
	Healthcheck []string          // the test, e.g. ["CMD", "/shop", "-healthcheck"]
	DependsOn   map[string]string // service → condition
	Mounts      []composeMount
	Tmpfs       []string
	Ports       []composePort
}

type composeBuild struct {
	Context, Dockerfile string // absolute paths
}

type composeMount struct {
	Type, Source, Target string // Source is absolute for binds
	ReadOnly             bool
}

type composePort struct {
	Target    uint32
	Published string
}

func TestCompose(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const sentinels = "sentinel1:26379,sentinel2:26379,sentinel3:26379"
	tests := []struct {
		name        string
		env         map[string]string
		store, lock string
		policy      string
		ha          bool
	}{
		{"defaults", nil, "redis", "on", PolicyRoundRobin, false},
		{"from the environment", map[string]string{
			"SHOP_SESSION_STORE": "memory", "SHOP_SESSION_LOCK": "off", "SHOP_LB": PolicySticky,
		}, "memory", "off", PolicySticky, false},
		{"photos in the object store", map[string]string{"SHOP_UPLOADS": "s3://shop-photos"}, "redis", "on", PolicyRoundRobin, false},
		{"cookie sessions", map[string]string{
			"SHOP_SESSION_STORE": "cookie", "SHOP_SESSION_KEYS": strings.Repeat("k", 64),
		}, "cookie", "on", PolicyRoundRobin, false},
		{"ha profile", map[string]string{
			"COMPOSE_PROFILES": "ha", "SHOP_REDIS_SENTINELS": sentinels,
		}, "redis", "on", PolicyRoundRobin, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadCompose(t, filepath.Join(root, "docker-compose.yml"), tt.env)
			var names []string
			for name := range p.Services {
				names = append(names, name)
			}
			slices.Sort(names)
			want := []string{"nginx", "objects", "redis", "shop1", "shop2", "shop3"}
			if tt.ha {
				want = []string{"nginx", "objects", "redis", "redis-replica", "sentinel1", "sentinel2", "sentinel3", "shop1", "shop2", "shop3"}
			}
			if !slices.Equal(names, want) {
				t.Fatalf("services = %v, want %v", names, want)
			}
			checkComposeShops(t, p, root, tt.store, tt.lock)
			for _, name := range []string{"shop1", "shop2", "shop3"} {
				if got := p.Services[name].Environment["SHOP_SESSION_KEYS"]; got != tt.env["SHOP_SESSION_KEYS"] {
					t.Errorf("%s: SHOP_SESSION_KEYS=%q, want %q: every replica must seal with the same keys", name, got, tt.env["SHOP_SESSION_KEYS"])
				}
			}
			checkComposeRedis(t, p)
			checkComposeUploads(t, p, tt.env["SHOP_UPLOADS"])
			checkComposeNginx(t, p, root, tt.policy)
			if tt.ha {
				checkComposeHA(t, p, root)
			} else {
				for _, name := range []string{"shop1", "shop2", "shop3"} {
					if got := p.Services[name].Environment["SHOP_REDIS_SENTINELS"]; got != "" {
						t.Errorf("%s: SHOP_REDIS_SENTINELS=%q without the ha profile, want empty", name, got)
					}
				}
			}
		})
	}
}

func checkComposeShops(t *testing.T, p composeProject, root, store, lock string) {
	t.Helper()
	// Every SHOP_* variable cmd/shop reads, from its source: a new one is
	// accepted here once the shop reads it.
	shopEnv := readShopSource(t).Env
	first := p.Services["shop1"]
	if first.Build == nil || first.Image == "" {
		t.Fatalf("shop1: build %v, image %q: want both, so the three shops share one image", first.Build, first.Image)
	}
	if first.Build.Context != root || first.Build.Dockerfile != filepath.Join(root, "Dockerfile") {
		t.Errorf("shop1 builds %+v, want the repository's Dockerfile", *first.Build)
	}
	if _, err := os.Stat(first.Build.Dockerfile); err != nil {
		t.Error(err)
	}
	if !slices.Contains(p.Volumes, "shopdata") {
		t.Errorf("named volumes %v lack shopdata", p.Volumes)
	}
	for _, name := range []string{"shop1", "shop2", "shop3"} {
		s := p.Services[name]
		if s.Image != first.Image || s.Build == nil || *s.Build != *first.Build {
			t.Errorf("%s: image %q build %v, want shop1's %q %v", name, s.Image, s.Build, first.Image, *first.Build)
		}
		if want := []string{"CMD", "/shop", "-healthcheck"}; !slices.Equal(s.Healthcheck, want) {
			t.Errorf("%s health check %q, want %q", name, s.Healthcheck, want)
		}
		for k := range s.Environment {
			if !shopEnv[k] {
				t.Errorf("%s sets %s, which the shop does not read", name, k)
			}
		}
		want := map[string]string{
			"SHOP_REPLICA":       name,
			"SHOP_SESSION_STORE": store,
			"SHOP_SESSION_LOCK":  lock,
			"SHOP_REDIS_ADDR":    "redis:6379",
			"SHOP_DB":            "/data/shop.db",
		}
		for k, v := range want {
			if got, ok := s.Environment[k]; !ok || got != v {
				t.Errorf("%s: %s=%q, want %q", name, k, got, v)
			}
		}
		if addr, ok := s.Environment["SHOP_ADDR"]; ok && addr != ":8080" {
			t.Errorf("%s: SHOP_ADDR=%q, but nginx connects to port 8080", name, addr)
		}
		if !slices.Contains(s.Mounts, composeMount{Type: "volume", Source: "shopdata", Target: "/data"}) {
			t.Errorf("%s mounts %+v, want volume shopdata at /data", name, s.Mounts)
		}
		if want := map[string]string{"redis": "service_healthy", "objects": "service_started"}; !maps.Equal(s.DependsOn, want) {
			t.Errorf("%s depends on %v, want %v", name, s.DependsOn, want)
		}
	}
}

func checkComposeRedis(t *testing.T, p composeProject) {
	t.Helper()
	r := p.Services["redis"]
	if !strings.HasPrefix(r.Image, "redis:") {
		t.Errorf("redis image %q", r.Image)
	}
	if !containsRun(r.Command, []string{"--appendonly", "yes"}) {
		t.Errorf("redis command %q does not turn on the append-only file", r.Command)
	}
	if len(r.Healthcheck) == 0 || r.Healthcheck[0] != "CMD" || !containsRun(r.Healthcheck, []string{"redis-cli", "ping"}) {
		t.Errorf("redis health check %q, want CMD redis-cli ping", r.Healthcheck)
	}
	if !slices.ContainsFunc(r.Mounts, func(m composeMount) bool { return m.Type == "volume" && m.Target == "/data" }) {
		t.Errorf("redis mounts %+v, want a volume at /data", r.Mounts)
	}
}

// checkComposeHA checks the ha profile: a replica of redis, three sentinels
// running the committed renderings of deploy/sentinel.go, and shops that
// find the primary through exactly those sentinels.
func checkComposeHA(t *testing.T, p composeProject, root string) {
	t.Helper()
	if !containsRun(p.Services["redis"].Command, []string{"--replica-announce-ip", "redis"}) {
		t.Errorf("redis command %q: want --replica-announce-ip redis (it may become a replica)", p.Services["redis"].Command)
	}
	replica := p.Services["redis-replica"]
	if !strings.HasPrefix(replica.Image, "redis:") {
		t.Errorf("redis-replica image %q", replica.Image)
	}
	for _, want := range [][]string{{"--replicaof", "redis", "6379"}, {"--replica-announce-ip", "redis-replica"}, {"--appendonly", "yes"}} {
		if !containsRun(replica.Command, want) {
			t.Errorf("redis-replica command %q lacks %q", replica.Command, want)
		}
	}

	var addrs []string
	for _, r := range SentinelRenderings() {
		name := strings.TrimSuffix(strings.TrimPrefix(r.File, "compose-"), ".conf")
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("rendering %s has no service %s", r.File, name)
			continue
		}
		addrs = append(addrs, name+":"+strconv.Itoa(r.Config.Port))
		if !strings.HasPrefix(s.Image, "redis:") {
			t.Errorf("%s image %q", name, s.Image)
		}
		// The entrypoint drops root only for `redis-server ...`; the
		// sentinels start with sh.
		if s.User != "redis" && (len(s.Command) == 0 || s.Command[0] != "redis-server") {
			t.Errorf("%s runs %q as user %q: want user redis, not root", name, s.Command, s.User)
		}
		mount := composeMount{Type: "bind", Source: filepath.Join(root, "deploy", "sentinel", r.File), Target: "/etc/statelab/sentinel.conf", ReadOnly: true}
		if !slices.Contains(s.Mounts, mount) {
			t.Errorf("%s mounts %+v, want %+v", name, s.Mounts, mount)
		}
		script := strings.Join(s.Command, " ")
		if !strings.Contains(script, "cp /etc/statelab/sentinel.conf /data/sentinel.conf") || !strings.Contains(script, "exec redis-server /data/sentinel.conf --sentinel") {
			t.Errorf("%s command %q: want it to run a writable copy of its configuration", name, s.Command)
		}
		if want := map[string]string{"redis": "service_healthy", "redis-replica": "service_healthy"}; !maps.Equal(s.DependsOn, want) {
			t.Errorf("%s depends on %v, want %v", name, s.DependsOn, want)
		}
		c := r.Config
		if !c.Hostnames || c.AnnounceIP != name || c.PrimaryHost != "redis" || c.PrimaryPort != 6379 {
			t.Errorf("%s: %+v: want hostnames resolved and announced, announcing %s, watching redis:6379", r.File, c, name)
		}
		rendered, err := RenderSentinel(c)
		if err != nil {
			t.Fatal(err)
		}
		if committed, err := os.ReadFile(filepath.Join(root, "deploy", "sentinel", r.File)); err != nil || !bytes.Equal(committed, rendered) {
			t.Errorf("deploy/sentinel/%s is missing or stale (%v): run go generate ./deploy/", r.File, err)
		}
		for _, directive := range []string{"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes", "sentinel monitor " + SentinelMaster + " redis 6379 2"} {
			if !bytes.Contains(rendered, []byte(directive+"\n")) {
				t.Errorf("%s lacks %q", r.File, directive)
			}
		}
	}
	for _, name := range []string{"shop1", "shop2", "shop3"} {
		env := p.Services[name].Environment
		if got := env["SHOP_REDIS_SENTINELS"]; got != strings.Join(addrs, ",") {
			t.Errorf("%s: SHOP_REDIS_SENTINELS=%q, want %q", name, got, strings.Join(addrs, ","))
		}
		if got := env["SHOP_REDIS_MASTER"]; got != SentinelMaster {
			t.Errorf("%s: SHOP_REDIS_MASTER=%q, want %q", name, got, SentinelMaster)
		}
	}
}

func checkComposeNginx(t *testing.T, p composeProject, root, policy string) {
	t.Helper()
	n := p.Services["nginx"]
	want := map[string]string{"shop1": "service_healthy", "shop2": "service_healthy", "shop3": "service_healthy"}
	if !maps.Equal(n.DependsOn, want) {
		t.Errorf("nginx depends on %v, want %v", n.DependsOn, want)
	}
	if !slices.Contains(n.Ports, composePort{Target: 8080, Published: "8080"}) {
		t.Errorf("nginx ports %+v, want 8080:8080", n.Ports)
	}
	var confDir string
	for _, m := range n.Mounts {
		if m.Type == "bind" && m.Source == filepath.Join(root, "deploy", "nginx") {
			confDir = m.Target
			if !m.ReadOnly {
				t.Errorf("nginx mounts %s read-write", m.Source)
			}
		}
	}
	if confDir == "" {
		t.Fatalf("nginx mounts %+v, want ./deploy/nginx", n.Mounts)
	}
	if len(n.Command) == 0 || n.Command[0] != "nginx" || !containsRun(n.Command, []string{"-g", "daemon off;"}) {
		t.Errorf("nginx command %q, want nginx ... -g 'daemon off;'", n.Command)
	}
	prefix := flagValue(n.Command, "-p")
	tmpfs := slices.ContainsFunc(n.Mounts, func(m composeMount) bool { return m.Type == "tmpfs" && m.Target == prefix })
	if prefix == "" || !(tmpfs || slices.Contains(n.Tmpfs, prefix)) {
		t.Errorf("nginx prefix -p %q is not a tmpfs (%q, %+v): nginx could not write there", prefix, n.Tmpfs, n.Mounts)
	}

	// The renderings' `resolve` needs nginx NginxResolveSince or later.
	if m := regexp.MustCompile(`^nginx:(\d+)\.(\d+)(?:\.(\d+))?(-|$)`).FindStringSubmatch(n.Image); m == nil {
		t.Errorf("nginx image %q: want nginx:MAJOR.MINOR[.PATCH][-variant]", n.Image)
	} else if since := strings.Split(NginxResolveSince, "."); compareVersions(m[1:4], since) < 0 {
		t.Errorf("nginx image %q is older than %s, the first with `resolve` on upstream servers", n.Image, NginxResolveSince)
	}

	wantConf := "compose-" + policy + ".conf"
	if got := flagValue(n.Command, "-c"); got != confDir+"/"+wantConf {
		t.Fatalf("nginx -c %q, want %s/%s", got, confDir, wantConf)
	}
	i := slices.IndexFunc(Renderings(), func(r Rendering) bool { return r.File == wantConf })
	if i < 0 {
		t.Fatalf("%s is not a committed rendering", wantConf)
	}
	c := Renderings()[i].Config
	rendered, err := RenderNginx(c)
	if err != nil {
		t.Fatal(err)
	}
	if committed, err := os.ReadFile(filepath.Join(root, "deploy", "nginx", wantConf)); err != nil || !bytes.Equal(committed, rendered) {
		t.Errorf("deploy/nginx/%s is missing or stale (%v): run go generate ./deploy/", wantConf, err)
	}
	if c.Listen != "8080" {
		t.Errorf("%s listens on %q, but compose publishes container port 8080", wantConf, c.Listen)
	}
	for _, r := range c.Replicas {
		if _, ok := p.Services[r.Name]; !ok || r.Addr != r.Name+":8080" {
			t.Errorf("%s sends %s to %s, want the compose service %s on port 8080", wantConf, r.Name, r.Addr, r.Name)
		}
	}
}

// compareVersions compares dotted version parts ("" counts as 0).
func compareVersions(a, b []string) int {
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// flagValue returns the argument after flag in argv, or "".
func flagValue(argv []string, flag string) string {
	if i := slices.Index(argv, flag); i >= 0 && i+1 < len(argv) {
		return argv[i+1]
	}
	return ""
}

// checkComposeUploads: each shop keeps photos in its own container
// (/uploads, not the shared volume) unless SHOP_UPLOADS names the bucket,
// and every shop can reach the objects service's versitygw either way.
func checkComposeUploads(t *testing.T, p composeProject, uploads string) {
	t.Helper()
	if uploads == "" {
		uploads = "/uploads"
	}
	for _, name := range []string{"shop1", "shop2", "shop3"} {
		env := p.Services[name].Environment
		if env["SHOP_UPLOADS"] != uploads || env["SHOP_S3_ENDPOINT"] != "http://objects:7070" {
			t.Errorf("%s: SHOP_UPLOADS=%q SHOP_S3_ENDPOINT=%q, want %q and the objects service", name, env["SHOP_UPLOADS"], env["SHOP_S3_ENDPOINT"], uploads)
		}
		if env["SHOP_S3_ACCESS_KEY"] != p.Services["objects"].Environment["ROOT_ACCESS_KEY"] ||
			env["SHOP_S3_SECRET_KEY"] != p.Services["objects"].Environment["ROOT_SECRET_KEY"] {
			t.Errorf("%s's S3 keys are not the object store's", name)
		}
		for _, m := range p.Services[name].Mounts {
			if strings.HasPrefix(uploads, "/") && strings.HasPrefix(uploads, m.Target) {
				t.Errorf("%s keeps photos in %s, on the mount %+v: shared, not its own disk", name, uploads, m)
			}
		}
	}
	o := p.Services["objects"]
	if want := []string{"--port", ":7070", "posix", "/data"}; !slices.Equal(o.Command, want) {
		t.Errorf("objects command %q, want %q", o.Command, want)
	}
	if !slices.Contains(o.Mounts, composeMount{Type: "volume", Source: "objectdata", Target: "/data"}) {
		t.Errorf("objects mounts %+v, want volume objectdata at /data", o.Mounts)
	}
}

// TestComposeProfiles runs each `SHOP_PROFILE=... docker compose up` line of
// the compose file's header as docker compose would read the file with that
// environment: the profile reaches every shop, no value the file sets
// contradicts it (an explicit setting wins over the profile, so one would
// quietly make the shops "custom"), stateless has the object store it needs,
// and stateful is served sticky. The profiles are read from cmd/shop.
func TestComposeProfiles(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docker-compose.yml")
	header, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	profiles := readShopProfiles(t)
	documented := map[string]bool{}
	line := regexp.MustCompile(`(?m)^#\s+((?:[A-Z_]+=\S+\s+)+)docker compose up`)
	for _, m := range line.FindAllStringSubmatch(string(header), -1) {
		env := map[string]string{}
		for _, kv := range strings.Fields(m[1]) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		profile := env["SHOP_PROFILE"]
		if profile == "" {
			continue
		}
		t.Run(profile, func(t *testing.T) {
			preset, ok := profiles[profile]
			if !ok {
				t.Fatalf("the header runs SHOP_PROFILE=%s, which cmd/shop does not have", profile)
			}
			documented[profile] = true
			p := loadCompose(t, path, env)
			for _, name := range []string{"shop1", "shop2", "shop3"} {
				got := p.Services[name].Environment
				if got["SHOP_PROFILE"] != profile {
					t.Errorf("%s: SHOP_PROFILE=%q, want %q", name, got["SHOP_PROFILE"], profile)
				}
				for flag, want := range preset {
					env := "SHOP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
					v := got[env]
					fits := v == "" || v == want
					if flag == "uploads" { // any bucket, or any directory, fits
						fits = v == "" || strings.HasPrefix(v, "s3://") == strings.HasPrefix(want, "s3://")
					}
					if !fits {
						t.Errorf("%s: %s=%q contradicts -profile %s (%s): the explicit value wins and the shop is custom", name, env, v, profile, want)
					}
				}
			}
			if strings.HasPrefix(preset["uploads"], "s3://") {
				checkComposeUploads(t, p, env["SHOP_UPLOADS"])
				for _, name := range []string{"shop1", "shop2", "shop3"} {
					if !strings.HasPrefix(p.Services[name].Environment["SHOP_UPLOADS"], "s3://") {
						t.Errorf("%s: SHOP_UPLOADS=%q: -profile %s keeps photos in the object store", name, p.Services[name].Environment["SHOP_UPLOADS"], profile)
					}
				}
			}
			// Sessions in each shop's memory need a shopper to stay on one.
			policy := PolicyRoundRobin
			if preset["session-store"] == "memory" {
				policy = PolicySticky
			}
			checkComposeNginx(t, p, root, policy)
		})
	}
	for name := range profiles {
		if !documented[name] {
			t.Errorf("docker-compose.yml's header has no `SHOP_PROFILE=%s ... docker compose up` line", name)
		}
	}
}

// readShopProfiles reads cmd/shop's -profile presets (profile.go's
// profiles): profile name → flag → value.
func readShopProfiles(t *testing.T) map[string]map[string]string {
	t.Helper()
	consts := map[string]string{}
	var table *ast.CompositeLit
	for _, f := range parseGoFiles(t, filepath.Join("..", "cmd", "shop")) {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if s, ok := goStringLit(vs.Values[i]); ok {
					consts[name.Name] = s
				}
				if lit, ok := vs.Values[i].(*ast.CompositeLit); ok && name.Name == "profiles" {
					table = lit
				}
			}
			return true
		})
	}
	if table == nil {
		t.Fatal("cmd/shop: no var profiles (profile.go) any more: re-read the presets in this test")
	}
	value := func(e ast.Expr) string {
		if s, ok := goStringLit(e); ok {
			return s
		}
		if id, ok := e.(*ast.Ident); ok {
			return consts[id.Name]
		}
		t.Fatalf("cmd/shop profiles: %T is not a string or a constant", e)
		return ""
	}
	out := map[string]map[string]string{}
	for _, e := range table.Elts {
		p, ok := e.(*ast.CompositeLit)
		if !ok || len(p.Elts) != 2 {
			t.Fatalf("cmd/shop profiles: an entry is not {name, flags}")
		}
		flags := map[string]string{}
		for _, fe := range p.Elts[1].(*ast.CompositeLit).Elts {
			var flag, v string
			for _, kv := range fe.(*ast.CompositeLit).Elts {
				kv := kv.(*ast.KeyValueExpr)
				switch kv.Key.(*ast.Ident).Name {
				case "flag":
					flag = value(kv.Value)
				case "value":
					v = value(kv.Value)
				}
			}
			flags[flag] = v
		}
		out[value(p.Elts[0])] = flags
	}
	if len(out) == 0 {
		t.Fatal("cmd/shop profiles: none read")
	}
	return out
}
