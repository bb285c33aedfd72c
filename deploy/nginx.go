// Package deploy holds the shop's nginx configuration: one template and one
// shared proxy snippet, rendered for the local Procfile cluster, docker
// compose and the tests. The committed renderings under nginx/ are what the
// Procfile and docker-compose.yml point at; a test keeps them fresh.
package deploy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"text/template"
)

// Load-balancing policies understood by RenderNginx.
const (
	// PolicyRoundRobin spreads every request over all replicas.
	PolicyRoundRobin = "roundrobin"
	// PolicySticky pins a browser to one replica with the shop_route cookie
	// and falls back to the others when that replica is down.
	PolicySticky = "sticky"
)

var (
	//go:embed nginx/nginx.conf.tmpl
	confTemplate string

	//go:embed nginx/proxy.conf
	proxySnippet []byte
)

// Replica is one upstream shop process.
type Replica struct {
	Name string // replica name, also the shop_route cookie value: "shop1"
	Addr string // host:port nginx connects to: "127.0.0.1:8081", "shop1:8080"
}

// NginxConfig describes one rendering of the shop's nginx configuration.
type NginxConfig struct {
	Listen    string // listen directive value: "127.0.0.1:8080", "8080"
	Policy    string // PolicyRoundRobin or PolicySticky
	Replicas  []Replica
	User      string // `user` directive, needed only when the master runs as root; "" omits it
	AccessLog string // access log path; "" means access.log inside the prefix
	// NoRetry renders proxy_next_upstream off: nginx never tries another
	// replica, as an L4 balancer or kube-proxy does not (the lab's
	// lb=noretry, where a drain is what keeps a stop from failing requests).
	NoRetry bool
	// Resolver is the DNS server nginx asks for the replicas' addresses
	// while it runs ("127.0.0.11", Docker's), so that a replica recreated
	// at a new address is found without a reload, and nginx starts while
	// one is missing. It needs nginx 1.27.3 or later (`resolve` on an
	// upstream server; NginxResolveSince). "" resolves once, at start: the
	// only way nginx 1.22, which the Procfile and the tests run, can.
	Resolver string
}

// NginxResolveSince is the first nginx release whose open-source upstream
// servers take the `resolve` parameter that NginxConfig.Resolver renders.
const NginxResolveSince = "1.27.3"

// Rendering is one nginx configuration committed under deploy/nginx.
type Rendering struct {
	File   string // file name inside deploy/nginx
	Config NginxConfig
}

// Renderings lists the configurations committed under deploy/nginx: the
// local ones the Procfile starts and the compose ones docker-compose.yml
// mounts. `go generate ./deploy/` writes them; a test keeps them fresh.
func Renderings() []Rendering {
	local := func(policy string) NginxConfig {
		return NginxConfig{
			Listen: "127.0.0.1:8080",
			Policy: policy,
			Replicas: []Replica{
				{Name: "shop1", Addr: "127.0.0.1:8081"},
				{Name: "shop2", Addr: "127.0.0.1:8082"},
				{Name: "shop3", Addr: "127.0.0.1:8083"},
			},
		}
	}
	compose := func(policy string) NginxConfig {
		return NginxConfig{
			Listen: "8080",
			Policy: policy,
			Replicas: []Replica{
				{Name: "shop1", Addr: "shop1:8080"},
				{Name: "shop2", Addr: "shop2:8080"},
				{Name: "shop3", Addr: "shop3:8080"},
			},
			// The container's stdout is where `docker compose logs` looks.
			AccessLog: "/dev/stdout",
			// Docker's embedded DNS: a shop recreated by `docker compose
			// up` comes back at a new address.
			Resolver: "127.0.0.11",
		}
	}
	return []Rendering{
		{File: "local-roundrobin.conf", Config: local(PolicyRoundRobin)},
		{File: "local-sticky.conf", Config: local(PolicySticky)},
		{File: "compose-roundrobin.conf", Config: compose(PolicyRoundRobin)},
		{File: "compose-sticky.conf", Config: compose(PolicySticky)},
	}
}

// ProxySnippet returns proxy.conf, the proxy settings every rendering
// includes from the directory of its nginx.conf.
func ProxySnippet() []byte {
	return bytes.Clone(proxySnippet)
}

// RenderNginx renders nginx.conf for c.
func RenderNginx(c NginxConfig) ([]byte, error) {
	data, err := newTemplateData(c)
	if err != nil {
		return nil, fmt.Errorf("deploy: render nginx: %w", err)
	}
	tmpl, err := template.New("nginx.conf").Option("missingkey=error").Parse(confTemplate)
	if err != nil {
		return nil, fmt.Errorf("deploy: parse nginx template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("deploy: render nginx: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteNginx writes dir/nginx.conf rendered from c and dir/proxy.conf beside
// it, and creates the temp directories, so that dir can serve as nginx's
// prefix: nginx -p dir -c dir/nginx.conf -e dir/error.log -g 'daemon off;'.
// It returns the path of nginx.conf.
func WriteNginx(dir string, c NginxConfig) (confPath string, err error) {
	conf, err := RenderNginx(c)
	if err != nil {
		return "", err
	}
	temp := tempPaths()
	for _, d := range []string{dir, temp.ClientBody, temp.Proxy, temp.FastCGI, temp.UWSGI, temp.SCGI} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", fmt.Errorf("deploy: write nginx: %w", err)
		}
	}
	confPath = filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return "", fmt.Errorf("deploy: write nginx: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "proxy.conf"), proxySnippet, 0o644); err != nil {
		return "", fmt.Errorf("deploy: write nginx: %w", err)
	}
	return confPath, nil
}

// tempDirs names nginx's temp directories, relative to the prefix.
type tempDirs struct {
	ClientBody, Proxy, FastCGI, UWSGI, SCGI string
}

func tempPaths() tempDirs {
	return tempDirs{
		ClientBody: "client_body_temp",
		Proxy:      "proxy_temp",
		FastCGI:    "fastcgi_temp",
		UWSGI:      "uwsgi_temp",
		SCGI:       "scgi_temp",
	}
}

// templateData is what nginx.conf.tmpl sees: every upstream and route is
// worked out here so that the template stays a plain listing.
type templateData struct {
	NginxConfig
	Sticky    bool
	Temp      tempDirs
	Upstreams []upstream
	Routes    []route
}

type upstream struct {
	Name    string
	Servers []upstreamServer
}

type upstreamServer struct {
	Addr   string
	Backup bool
}

// route maps a shop_route cookie value to the upstream pinned to it.
type route struct {
	Cookie, Upstream string
}

// allUpstream balances requests that carry no (known) shop_route cookie.
const allUpstream = "shop_all"

// Values end up verbatim in nginx.conf: anything that could close a directive
// or start a variable is refused rather than escaped.
var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	addrPattern = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]+$`)
	pathPattern = regexp.MustCompile(`^[^\s;'"{}$#\\]+$`)
	userPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*( [A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
)

func newTemplateData(c NginxConfig) (templateData, error) {
	if c.Policy != PolicyRoundRobin && c.Policy != PolicySticky {
		return templateData{}, fmt.Errorf("policy %q: want %q or %q", c.Policy, PolicyRoundRobin, PolicySticky)
	}
	if err := checkListen(c.Listen); err != nil {
		return templateData{}, err
	}
	if len(c.Replicas) == 0 {
		return templateData{}, errors.New("at least one replica is required")
	}
	if c.User != "" && !userPattern.MatchString(c.User) {
		return templateData{}, fmt.Errorf("user %q: want a user name, optionally followed by a group", c.User)
	}
	if c.AccessLog == "" {
		c.AccessLog = "access.log"
	}
	if c.Resolver != "" && (!addrPattern.MatchString(c.Resolver) || net.ParseIP(c.Resolver) == nil) {
		return templateData{}, fmt.Errorf("resolver %q: want the DNS server's IP address", c.Resolver)
	}
	if !pathPattern.MatchString(c.AccessLog) {
		return templateData{}, fmt.Errorf("access log %q: path has spaces or nginx syntax", c.AccessLog)
	}
	names := make(map[string]bool)
	addrs := make(map[string]bool)
	for i, r := range c.Replicas {
		if !namePattern.MatchString(r.Name) {
			return templateData{}, fmt.Errorf("replica %d: name %q: want letters, digits, '-' or '_'", i, r.Name)
		}
		if "shop_"+r.Name == allUpstream {
			return templateData{}, fmt.Errorf("replica %d: name %q is reserved", i, r.Name)
		}
		if err := checkHostPort(r.Addr); err != nil {
			return templateData{}, fmt.Errorf("replica %s: addr: %w", r.Name, err)
		}
		if names[r.Name] || addrs[r.Addr] {
			return templateData{}, fmt.Errorf("replica %s (%s): name or addr used twice", r.Name, r.Addr)
		}
		names[r.Name], addrs[r.Addr] = true, true
	}

	d := templateData{NginxConfig: c, Sticky: c.Policy == PolicySticky, Temp: tempPaths()}
	all := upstream{Name: allUpstream}
	for _, r := range c.Replicas {
		all.Servers = append(all.Servers, upstreamServer{Addr: r.Addr})
	}
	d.Upstreams = append(d.Upstreams, all)
	if !d.Sticky {
		return d, nil
	}
	// One upstream per replica: the pinned replica first, the others as
	// backups that nginx only uses while the pinned one is failing.
	for _, pinned := range c.Replicas {
		u := upstream{Name: "shop_" + pinned.Name}
		u.Servers = append(u.Servers, upstreamServer{Addr: pinned.Addr})
		for _, r := range c.Replicas {
			if r != pinned {
				u.Servers = append(u.Servers, upstreamServer{Addr: r.Addr, Backup: true})
			}
		}
		d.Upstreams = append(d.Upstreams, u)
		d.Routes = append(d.Routes, route{Cookie: pinned.Name, Upstream: u.Name})
	}
	return d, nil
}

// checkListen accepts a port ("8080") or host:port ("127.0.0.1:8080").
func checkListen(listen string) error {
	if listen == "" {
		return errors.New("listen is required")
	}
	if _, err := parsePort(listen); err == nil {
		return nil
	}
	if err := checkHostPort(listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

func checkHostPort(addr string) error {
	if !addrPattern.MatchString(addr) {
		return fmt.Errorf("%q: want host:port", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: host is empty", addr)
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q: want 1..65535", s)
	}
	return p, nil
}
