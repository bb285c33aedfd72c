package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProcfile(t *testing.T) {
	// Every SHOP_* variable cmd/shop reads, from its source: a new one is
	// accepted here once the shop reads it.
	shopEnv := readShopSource(t).Env
	procs := readProcfile(t, filepath.Join("..", "Procfile"))
	var names []string
	for name := range procs {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"nginx", "objects", "redis", "shop1", "shop2", "shop3"}; !slices.Equal(names, want) {
		t.Fatalf("Procfile processes = %v, want %v", names, want)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	redis := procArgs(t, procs["redis"], root, nil)
	for _, want := range [][]string{
		{"redis-server"}, {"--bind", "127.0.0.1"}, {"--port", "6379"},
		{"--appendonly", "yes"}, {"--dir", ".run/redis"},
	} {
		if !containsRun(redis, want) {
			t.Errorf("redis argv %q lacks %q", redis, want)
		}
	}

	locals := make(map[string]NginxConfig) // policy → local rendering
	for _, r := range Renderings() {
		if strings.HasPrefix(r.File, "local-") {
			locals[r.Config.Policy] = r.Config
		}
	}
	for _, tt := range []struct{ lb, policy string }{{"", PolicyRoundRobin}, {PolicyRoundRobin, PolicyRoundRobin}, {PolicySticky, PolicySticky}} {
		argv := procArgs(t, procs["nginx"], root, []string{"SHOP_LB=" + tt.lb})
		want := []string{
			"nginx", "-p", filepath.Join(root, ".run/nginx"),
			"-c", filepath.Join(root, "deploy/nginx/local-"+tt.policy+".conf"),
			"-e", filepath.Join(root, ".run/nginx/error.log"),
			"-g", "daemon off;",
		}
		if !slices.Equal(argv, want) {
			t.Errorf("SHOP_LB=%q: nginx argv %q, want %q", tt.lb, argv, want)
		}
		if c, ok := locals[tt.policy]; !ok || c.Listen != "127.0.0.1:8080" {
			t.Errorf("no committed local rendering for %s listening on 127.0.0.1:8080", tt.policy)
		}
	}

	objects := procArgs(t, procs["objects"], root, nil)
	for _, want := range [][]string{{"versitygw"}, {"--port", "127.0.0.1:7070"}, {"posix", ".run/objects"}} {
		if !containsRun(objects, want) {
			t.Errorf("objects argv %q lacks %q", objects, want)
		}
	}
	disk := func(name string) string { return ".run/" + name + "-uploads" }
	bucket := func(string) string { return "s3://shop-photos" }
	for _, tt := range []struct {
		env         []string
		store, lock string
		uploads     func(name string) string
	}{
		{nil, "redis", "on", disk},
		{[]string{"SHOP_SESSION_STORE=memory", "SHOP_SESSION_LOCK=off"}, "memory", "off", disk},
		{[]string{"UPLOADS_BUCKET=s3://shop-photos"}, "redis", "on", bucket},
	} {
		for i, name := range []string{"shop1", "shop2", "shop3"} {
			argv := procArgs(t, procs[name], root, tt.env)
			env, bin := splitEnvArgv(t, argv)
			if !slices.Equal(bin, []string{".run/bin/shop"}) {
				t.Errorf("%s runs %q, want .run/bin/shop", name, bin)
			}
			for k := range env {
				if !shopEnv[k] {
					t.Errorf("%s sets %s, which the shop does not read", name, k)
				}
			}
			want := map[string]string{
				"SHOP_REPLICA":       name,
				"SHOP_ADDR":          "127.0.0.1:" + []string{"8081", "8082", "8083"}[i],
				"SHOP_DB":            ".run/shop.db",
				"SHOP_REDIS_ADDR":    "127.0.0.1:6379",
				"SHOP_SESSION_STORE": tt.store,
				"SHOP_SESSION_LOCK":  tt.lock,
				// Each replica's photos on its own disk, or the bucket.
				"SHOP_UPLOADS":     tt.uploads(name),
				"SHOP_S3_ENDPOINT": "http://127.0.0.1:7070",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("env %q: %s has %s=%q, want %q", tt.env, name, k, env[k], v)
				}
			}
			// The local renderings send shopN's traffic to shopN's address.
			for _, c := range locals {
				if !slices.Contains(c.Replicas, Replica{Name: name, Addr: env["SHOP_ADDR"]}) {
					t.Errorf("local %s rendering has no replica %s at %s", c.Policy, name, env["SHOP_ADDR"])
				}
			}
		}
	}
}

// readProcfile parses lines "name: command" the way goreman does: blank
// lines, lines without a colon and lines starting with # are skipped.
func readProcfile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	procs := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, cmd, ok := strings.Cut(sc.Text(), ":")
		if !ok || name == "" || name[0] == '#' {
			continue
		}
		name = strings.TrimSpace(name)
		if _, dup := procs[name]; dup {
			t.Errorf("Procfile names %s twice", name)
		}
		procs[name] = strings.TrimSpace(cmd)
	}
	return procs
}

// procArgs returns the argv a Procfile command execs, expanded by /bin/sh
// as goreman runs it, from dir and with env added to a bare environment.
func procArgs(t *testing.T, cmdline, dir string, env []string) []string {
	t.Helper()
	rest, ok := strings.CutPrefix(cmdline, "exec ")
	if !ok {
		t.Fatalf("Procfile command %q does not start with exec (signals would stop at the shell)", cmdline)
	}
	cmd := exec.Command("/bin/sh", "-c", `printf '%s\0' `+rest)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "PWD=" + dir}, env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("expand %q: %v", cmdline, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// splitEnvArgv splits `env K=V ... cmd args` into the assignments and the command.
func splitEnvArgv(t *testing.T, argv []string) (map[string]string, []string) {
	t.Helper()
	if len(argv) == 0 || argv[0] != "env" {
		t.Fatalf("argv %q: want env K=V ... command", argv)
	}
	env := make(map[string]string)
	i := 1
	for ; i < len(argv); i++ {
		k, v, ok := strings.Cut(argv[i], "=")
		if !ok {
			break
		}
		env[k] = v
	}
	return env, argv[i:]
}

// containsRun reports whether want occurs in argv as consecutive elements.
func containsRun(argv, want []string) bool {
	for i := 0; i+len(want) <= len(argv); i++ {
		if slices.Equal(argv[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
