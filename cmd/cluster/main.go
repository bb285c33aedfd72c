// Command cluster is `make cluster`: it checks the knobs (PROFILE, STORE,
// LB, LOCK, PORT, LOG) and every port before anything starts, runs the Procfile
// under goreman, and stops the whole cluster with a message and a non-zero
// exit if any process dies while it starts: never half a cluster, never
// exit 0 after a bind error. Once the cluster serves it prints where, and
// how the lab reaches it (-target URL -driver goreman).
//
// With STORE=cookie the replicas need shared keys: SHOP_SESSION_KEYS when
// set, else a key generated for this start and printed, so that every
// replica of this cluster (and no other) opens its cookies.
//
// UPLOADS=disk keeps each replica's review photos in a folder of its own
// (its disk); UPLOADS=s3 keeps them in a bucket of the cluster's object
// store (versitygw), which runs either way.
//
// PROFILE=stateful|stateless starts every replica with that -profile (and
// STORE, LB and UPLOADS to match unless given).
//
//	PROFILE=stateful|stateless STORE=redis|memory|cookie LB=roundrobin|sticky LOCK=on|off UPLOADS=disk|s3 PORT=8080 LOG=warn|info|debug|error \
//	  go run ./cmd/cluster -goreman .run/bin/goreman -shop .run/bin/shop
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/statelab/shop/deploy"
	"github.com/statelab/shop/session"
)

func main() {
	// SIGHUP: the terminal closed. Stop the cluster as on Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "make cluster: %v\n", err)
		os.Exit(1)
	}
}

// knob is one variable of `make cluster` and the values it allows.
type knob struct {
	name, def string
	values    []string
}

// knobs are checked before anything starts. STORE takes the shop's own
// list of store kinds: a new kind is allowed here the day the shop has it.
var knobs = []knob{
	{"STORE", session.Redis, session.Kinds()},
	{"LB", deploy.PolicyRoundRobin, []string{deploy.PolicyRoundRobin, deploy.PolicySticky}},
	{"LOCK", "on", []string{"on", "off"}},
	{"UPLOADS", "disk", []string{"disk", "s3"}},
	{"LOG", "warn", []string{"debug", "info", "warn", "error"}},
}

// profiles are PROFILE's values: the shop's -profile presets every state
// flag of the replicas, and here the cluster's defaults follow it. The
// stateful profile keeps sessions in each replica, so it is served sticky;
// an explicit STORE or LB still wins.
var profiles = map[string]struct{ store, lb, uploads string }{
	"stateful":  {session.Memory, deploy.PolicySticky, "disk"},
	"stateless": {session.Redis, deploy.PolicyRoundRobin, "s3"},
}

// profileWords is "profile stateless, " for the serving line, or nothing.
func profileWords(p string) string {
	if p == "" {
		return ""
	}
	return "profile " + p + ", "
}

// config is the checked knobs.
type config struct {
	profile, store, lb, lock, log string
	uploads                       string
	ports                         deploy.LocalPorts
}

// readConfig checks every knob and returns the first problem as one line
// naming the variable and what it allows.
func readConfig(getenv func(string) string) (config, error) {
	vals := map[string]string{}
	profile := getenv("PROFILE")
	p, ok := profiles[profile]
	if profile != "" && !ok {
		return config{}, fmt.Errorf("PROFILE=%s: want stateful or stateless", profile)
	}
	for _, k := range knobs {
		v := getenv(k.name)
		switch {
		case v != "":
		case profile != "" && k.name == "STORE":
			v = p.store
		case profile != "" && k.name == "LB":
			v = p.lb
		case profile != "" && k.name == "UPLOADS":
			v = p.uploads
		default:
			v = k.def
		}
		if !slices.Contains(k.values, v) {
			return config{}, fmt.Errorf("%s=%s: want %s", k.name, v, orList(k.values))
		}
		vals[k.name] = v
	}
	c := config{profile: profile, store: vals["STORE"], lb: vals["LB"], lock: vals["LOCK"], log: vals["LOG"], uploads: vals["UPLOADS"]}
	port := 8080
	if s := getenv("PORT"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil {
			return config{}, fmt.Errorf("PORT=%s: want a port number such as 8080", s)
		}
		port = p
	}
	ports, err := deploy.PortsFor(port)
	if err != nil {
		return config{}, fmt.Errorf("PORT=%d: %v", port, err)
	}
	c.ports = ports
	return c, nil
}

// sessionKeys returns the keys of a cookie cluster: SHOP_SESSION_KEYS when
// set (checked as the shop checks it), else one generated for this start.
func sessionKeys(cfg config, getenv func(string) string) (keys string, generated bool, err error) {
	if cfg.store != session.Cookie {
		return "", false, nil
	}
	if keys = getenv("SHOP_SESSION_KEYS"); keys != "" {
		if _, err := session.ParseKeys(keys); err != nil {
			return "", false, fmt.Errorf("SHOP_SESSION_KEYS: %v", err)
		}
		return keys, false, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	return hex.EncodeToString(b), true, nil
}

func orList(words []string) string {
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// checkPortsFree tries every port before anything starts, so a port in use
// is one clear line instead of a process dying with a bind error.
func checkPortsFree(p deploy.LocalPorts) error {
	for _, np := range p.Named() {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(np.Port)))
		if err != nil {
			return fmt.Errorf("port %d (%s) is in use: stop what listens there, or move the whole cluster with PORT=%d", np.Port, np.Name, p.Nginx+1000)
		}
		l.Close()
	}
	return nil
}

// sbinDirs are where nginx and redis-server live when PATH lacks them:
// Debian's /usr/sbin (what `make deps` installs), Homebrew's bin folders.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/opt/homebrew/bin", "/usr/local/bin"}

// lookBinary finds a binary in the folders of path (a PATH value), then in
// sbinDirs, and returns its folder.
func lookBinary(name, path string) (string, error) {
	for _, d := range append(filepath.SplitList(path), sbinDirs...) {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s: install it (Debian: make deps; macOS: brew install nginx redis)", name, strings.Join(sbinDirs, ", "))
}

// lookVersitygw finds the object store: on PATH or in the sbin folders,
// then where go install put it (make deps: $GOBIN, $GOPATH/bin, ~/go/bin).
func lookVersitygw(getenv func(string) string) (string, error) {
	if d, err := lookBinary("versitygw", getenv("PATH")); err == nil {
		return filepath.Join(d, "versitygw"), nil
	}
	var dirs []string
	if d := getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range filepath.SplitList(getenv("GOPATH")) {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home := getenv("HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("versitygw (the object store) not found in PATH, $GOBIN or $GOPATH/bin: make deps installs it (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
}

// startTimeout bounds the start: Redis, three replicas and nginx take a
// second or two; a replica that cannot reach Redis reports not-ready.
const startTimeout = 30 * time.Second

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	goreman := fs.String("goreman", ".run/bin/goreman", "the goreman binary")
	shop := fs.String("shop", ".run/bin/shop", "the shop binary")
	dir := fs.String("dir", ".", "the repository: the Procfile and deploy/ are there")
	check := fs.Bool("check", false, "only check the knobs and the ports, then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := readConfig(getenv)
	if err != nil {
		return err
	}
	if *check {
		return checkPortsFree(cfg.ports)
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	pathDirs := []string{}
	for _, b := range []string{"nginx", "redis-server"} {
		d, err := lookBinary(b, getenv("PATH"))
		if err != nil {
			return err
		}
		pathDirs = append(pathDirs, d)
	}
	versitygw, err := lookVersitygw(getenv)
	if err != nil {
		return err
	}
	for _, b := range []*string{goreman, shop} {
		if !filepath.IsAbs(*b) {
			*b = filepath.Join(root, *b)
		}
		if _, err := os.Stat(*b); err != nil {
			return fmt.Errorf("%s: %w (make cluster builds it)", *b, err)
		}
	}
	if err := checkPortsFree(cfg.ports); err != nil {
		return err
	}
	keys, generated, err := sessionKeys(cfg, getenv)
	if err != nil {
		return err
	}

	// Each port gets its own folder: two clusters side by side share
	// nothing but the binary.
	runDir := filepath.Join(root, ".run")
	if cfg.ports.Nginx != 8080 {
		runDir = filepath.Join(root, ".run", "cluster-"+strconv.Itoa(cfg.ports.Nginx))
	}
	for _, d := range []string{"redis", "objects"} {
		if err := os.MkdirAll(filepath.Join(runDir, d), 0o755); err != nil {
			return err
		}
	}
	conf, err := deploy.WriteNginx(filepath.Join(runDir, "nginx"), deploy.NginxConfig{
		Listen:   "127.0.0.1:" + strconv.Itoa(cfg.ports.Nginx),
		Policy:   cfg.lb,
		Replicas: cfg.ports.Replicas,
	})
	if err != nil {
		return err
	}
	redisLog := map[string]string{"debug": "debug", "info": "verbose", "warn": "warning", "error": "warning"}[cfg.log]
	env := append(os.Environ(),
		"PATH="+strings.Join(append(pathDirs, getenv("PATH")), string(os.PathListSeparator)),
		"PORT="+strconv.Itoa(cfg.ports.Nginx),
		"REDIS_PORT="+strconv.Itoa(cfg.ports.Redis),
		"RUN="+runDir,
		"NGINX_CONF="+conf,
		"SHOP_BIN="+*shop,
		"SHOP_PROFILE="+cfg.profile,
		"SHOP_SESSION_STORE="+cfg.store,
		"SHOP_LB="+cfg.lb,
		"SHOP_SESSION_LOCK="+cfg.lock,
		"SHOP_LOG_LEVEL="+cfg.log,
		"REDIS_LOGLEVEL="+redisLog,
		"GOREMAN_RPC_ADDR=127.0.0.1",
		"OBJECTS_PORT="+strconv.Itoa(cfg.ports.Objects),
		"VERSITYGW="+versitygw,
	)
	if cfg.uploads == "s3" {
		env = append(env, "UPLOADS_BUCKET=s3://shop-photos")
	}
	if keys != "" {
		env = append(env, "SHOP_SESSION_KEYS="+keys)
	}
	cmd := exec.Command(*goreman, "-f", filepath.Join(root, "Procfile"), "-p", strconv.Itoa(cfg.ports.RPC), "-set-ports=false", "start")
	cmd.Dir = root
	cmd.Env = env
	// Ctrl-C reaches this program, which stops goreman once, and goreman
	// stops every process; if this program dies outright, goreman is told
	// (goremanAttr).
	cmd.SysProcAttr = goremanAttr()
	// goreman writes to a file this program follows, not to a pipe: were
	// this program killed, goreman and the replicas would die of SIGPIPE on
	// their next line (a Go program's write to a broken stdout pipe ends
	// it) before stopping the rest, and nginx, which writes nothing there,
	// would outlive them all.
	logPath := filepath.Join(runDir, "goreman.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Start()
	logFile.Close() // goreman has its own copy
	if err != nil {
		return fmt.Errorf("start goreman: %w", err)
	}
	out, err := followFile(logPath)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	exited := make(chan error, 1)
	logs := newProcLogs()
	var copied sync.WaitGroup
	copied.Go(func() { logs.copy(out, stdout) })
	go func() {
		err := cmd.Wait()
		out.stop()
		copied.Wait() // every line goreman wrote is copied first
		exited <- err
	}()
	stopAll := func() error {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(20 * time.Second): // goreman kills what ignores SIGINT after 10 s
			cmd.Process.Kill()
			return <-exited
		}
	}

	url := "http://127.0.0.1:" + strconv.Itoa(cfg.ports.Nginx)
	if err := waitReady(ctx, cfg, url, logs, exited); err != nil {
		if !errors.Is(err, errGoremanExited) {
			stopAll()
		}
		return fmt.Errorf("%v; the cluster is stopped", err)
	}
	fmt.Fprintf(stdout, `
make cluster: serving at %s (%sstore=%s lb=%s lock=%s uploads=%s)
  shop1..shop3 on %d..%d, Redis on %d, the object store on %d, files in %s
  logs: LOG=%s (make cluster LOG=info shows every request), also in goreman.log there
  the lab against it, faults included:
    go run ./scenarios run failover -target %s -driver goreman
  Ctrl-C stops everything.

`, url, profileWords(cfg.profile), cfg.store, cfg.lb, cfg.lock, cfg.uploads, cfg.ports.Nginx+1, cfg.ports.Nginx+3, cfg.ports.Redis, cfg.ports.Objects, runDir, cfg.log, url)
	if generated {
		fmt.Fprintf(stdout, "  session key for this start (cookies sealed with it die with the cluster):\n    SHOP_SESSION_KEYS=%s\n  set it before make cluster STORE=cookie to keep sessions across restarts.\n\n", keys)
	}

	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("goreman exited: %v", err)
		}
		return nil
	case <-ctx.Done():
		fmt.Fprintln(stdout, "make cluster: stopping")
		if err := stopAll(); err != nil && !isInterrupt(err) {
			return fmt.Errorf("goreman: %v", err)
		}
		return nil
	}
}

// isInterrupt reports whether goreman ended because it was told to.
func isInterrupt(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && (ee.ExitCode() == 0 || ee.ExitCode() == -1 || ee.ExitCode() == 130)
}

var errGoremanExited = errors.New("goreman exited")

// waitReady waits until Redis answers (when the store uses it), every
// replica is ready and nginx routes to them. A process that exits
// meanwhile ends the wait with its last lines.
func waitReady(ctx context.Context, cfg config, url string, logs *procLogs, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	checks := []struct {
		what string
		ok   func() error
	}{}
	for _, r := range cfg.ports.Replicas {
		checks = append(checks, struct {
			what string
			ok   func() error
		}{r.Name + " /readyz", httpOK(ctx, client, "http://"+r.Addr+"/readyz")})
	}
	checks = append(checks, struct {
		what string
		ok   func() error
	}{"nginx " + url + "/healthz", httpOK(ctx, client, url+"/healthz")})
	last := ""
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if name, lines := logs.died(); name != "" {
			return fmt.Errorf("%s exited while the cluster started:\n%s", name, lines)
		}
		pending := 0
		for _, c := range checks {
			if err := c.ok(); err != nil {
				pending++
				last = fmt.Sprintf("%s: %v", c.what, err)
				break
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w (%v) while the cluster started: %s", errGoremanExited, err, logs.tail())
		case <-ctx.Done():
			if name, lines := logs.died(); name != "" {
				return fmt.Errorf("%s exited while the cluster started:\n%s", name, lines)
			}
			return fmt.Errorf("not ready after %s: %s", startTimeout, last)
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, client *http.Client, url string) func() error {
	return func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
}

// follower reads a file that another process appends to, as tail -f does,
// until stop is called and the end is reached.
type follower struct {
	f    *os.File
	done chan struct{}
	once sync.Once
}

func followFile(path string) (*follower, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &follower{f: f, done: make(chan struct{})}, nil
}

// stop makes Read return io.EOF once everything written is read.
func (f *follower) stop() { f.once.Do(func() { close(f.done) }) }

func (f *follower) Read(p []byte) (int, error) {
	for {
		n, err := f.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		select {
		case <-f.done:
			// The writer is gone: one last read takes what it wrote
			// before it went.
			n, err := f.f.Read(p)
			if n > 0 {
				return n, nil
			}
			f.f.Close()
			if err == nil {
				err = io.EOF
			}
			return 0, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// procLogs copies goreman's output and keeps each process's last lines, so
// a process that dies at start can be quoted.
type procLogs struct {
	mu    sync.Mutex
	lines map[string][]string
	dead  string // the first process goreman saw terminate
	all   []string
}

func newProcLogs() *procLogs { return &procLogs{lines: map[string][]string{}} }

// goreman's lines: "\x1b[32m15:04:05 shop1 | \x1b[mtext".
var (
	ansi       = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	goremanRe  = regexp.MustCompile(`^(?:\d\d:\d\d:\d\d )?\s*(\S+) \| (.*)$`)
	terminated = regexp.MustCompile(`^Terminating (\S+)$`)
)

const keepLines = 8

func (l *procLogs) copy(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(w, line)
		plain := ansi.ReplaceAllString(line, "")
		l.mu.Lock()
		l.all = append(l.all, plain)
		if len(l.all) > keepLines {
			l.all = l.all[1:]
		}
		if m := goremanRe.FindStringSubmatch(plain); m != nil {
			name, text := m[1], m[2]
			if t := terminated.FindStringSubmatch(text); t != nil && l.dead == "" {
				l.dead = t[1]
			} else {
				l.lines[name] = append(l.lines[name], text)
				if len(l.lines[name]) > keepLines {
					l.lines[name] = l.lines[name][1:]
				}
			}
		}
		l.mu.Unlock()
	}
}

// died returns the first process that terminated and its last lines.
func (l *procLogs) died() (name, lines string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead == "" {
		return "", ""
	}
	return l.dead, "  " + strings.Join(l.lines[l.dead], "\n  ")
}

// tail is goreman's last lines.
func (l *procLogs) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}
