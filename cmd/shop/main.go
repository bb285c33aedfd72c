// Command shop is one replica of the Statelab teaching shop. See
// docs/CONTRACT.md for its flags, routes and behaviour under faults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/uploads"
	"github.com/statelab/shop/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// config is the replica's settings after flags and environment.
type config struct {
	addr         string
	replica      string
	sessionStore string
	redisAddr    string // host:port, from -redis-addr's either form
	// redisSet: -redis-addr, -redis-sentinels or their environment was
	// given, so a cookie replica shares that Redis for what is not a session.
	redisSet     bool
	redisUser    string   // from a redis://user:password@ address
	redisPass    string   // -redis-password, or the password in a redis:// address
	sentinels    []string // find the primary through these; redisAddr is then unused
	redisMaster  string
	waitReplicas int
	sessionKeys  []string // cookie sessions: the first seals, every one opens
	db           string
	dbMaxConns   int // -db-max-conns; 0 keeps the store's default
	sessionLock  bool
	memoryMax    int // -memory-sessions
	clientLimit  int // -login-client-limit
	drain        time.Duration
	logLevel     slog.Level
	healthcheck  bool
	trusted      []netip.Prefix
	// cache is the near-cache for redis sessions (-session-cache).
	cache cacheConfig
	// uploads is where review photos go (-uploads), s3 how to reach an
	// object store for s3://BUCKET.
	uploads uploads.Target
	s3      uploads.S3Config
	// jobs is where receipt jobs run (-jobs memory|queue); jobDelay the
	// least time each takes (-job-delay).
	jobs     string
	jobDelay time.Duration
	// schedule is -schedule local|shared; reportEvery its period.
	schedule    string
	reportEvery time.Duration
	// live is -live: live.Local or live.Redis (the default follows
	// whether the replicas share a Redis), and liveMax -live-max-streams.
	live    string
	liveMax int
	// profile is the profile the state flags match in full (stateful,
	// stateless), or "custom"; see profile.go.
	profile string
	// peers is -peers: the cluster's replicas, for /metrics/live without
	// a shared Redis.
	peers []web.Peer
}

// parsePeers parses -peers: "shop1=127.0.0.1:8081,shop2=127.0.0.1:8082".
func parsePeers(s string) ([]web.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var peers []web.Peer
	for _, item := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if _, _, err := net.SplitHostPort(addr); !ok || name == "" || err != nil {
			return nil, fmt.Errorf("shop: -peers %q: want name=host:port,..., e.g. shop1=127.0.0.1:8081,shop2=127.0.0.1:8082", item)
		}
		peers = append(peers, web.Peer{Name: name, Addr: addr})
	}
	return peers, nil
}

// masterName is what a Sentinel master name may be here.
var masterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// errHelp: -h was asked for and answered.
var errHelp = errors.New("help requested")

// parseFlags reads flags, with each flag's environment variable as its
// default: the flag wins. A bad value is one line naming the flag and what it
// allows.
func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c config
	var jobDelay, reportEvery string
	var profile, lock, drain, level, trusted, sentinels, wait, redisPassword, cache, cacheBytes, cacheInv, keys, memoryMax, liveMax, dbMaxConns, clientLimit string
	var uploadsTo, s3Endpoint string
	fs.StringVar(&profile, "profile", env("SHOP_PROFILE", ""), "a preset for where every kind of state lives: "+profileNames()+"; explicit flags win (SHOP_PROFILE)")
	fs.StringVar(&c.addr, "addr", env("SHOP_ADDR", ":8080"), "listen address (SHOP_ADDR)")
	fs.StringVar(&c.replica, "replica", env("SHOP_REPLICA", host), "this replica's name, shown everywhere (SHOP_REPLICA)")
	fs.StringVar(&c.sessionStore, "session-store", env("SHOP_SESSION_STORE", session.Memory), "memory (stateful), redis (stateless replicas, shared store) or cookie (the session sealed in the browser) (SHOP_SESSION_STORE)")
	fs.StringVar(&keys, "session-keys", env("SHOP_SESSION_KEYS", ""), "cookie sessions: comma-separated secrets of at least 32 characters; the first seals, all open (SHOP_SESSION_KEYS)")
	fs.StringVar(&c.redisAddr, "redis-addr", env("SHOP_REDIS_ADDR", "127.0.0.1:6379"), "Redis for redis sessions and the shared services (with cookie sessions only when set): host:port or redis://[:password@]host:port (SHOP_REDIS_ADDR)")
	fs.StringVar(&redisPassword, "redis-password", env("SHOP_REDIS_PASSWORD", ""), "password for a Redis with requirepass; wins over one in -redis-addr (SHOP_REDIS_PASSWORD)")
	fs.StringVar(&sentinels, "redis-sentinels", env("SHOP_REDIS_SENTINELS", ""), "comma-separated host:port of Redis sentinels: find the primary through them; -redis-addr is then unused (SHOP_REDIS_SENTINELS)")
	fs.StringVar(&c.redisMaster, "redis-master", env("SHOP_REDIS_MASTER", redisclient.DefaultMaster), "the name the sentinels monitor the primary under (SHOP_REDIS_MASTER)")
	fs.StringVar(&wait, "redis-wait-replicas", env("SHOP_REDIS_WAIT_REPLICAS", "0"), "acknowledge a session write only once this many Redis replicas confirm it (WAIT), else 503 (SHOP_REDIS_WAIT_REPLICAS)")
	fs.StringVar(&c.db, "db", env("SHOP_DB", "shop.db"), "database of catalog, stock, orders, accounts: a SQLite file, or a postgres:// URL shared by replicas on several hosts (SHOP_DB)")
	fs.StringVar(&dbMaxConns, "db-max-conns", env("SHOP_DB_MAX_CONNS", "0"), "connections to the database at most: PostgreSQL's whole pool, SQLite's readers; 0 is the default, which grows with the cores (2 x GOMAXPROCS for PostgreSQL), so set it where replicas x this must stay under the server's max_connections (SHOP_DB_MAX_CONNS)")
	fs.StringVar(&memoryMax, "memory-sessions", env("SHOP_MEMORY_SESSIONS", strconv.Itoa(session.DefaultMaxMemorySessions)), "memory store: at most this many sessions; past it the least recently used are evicted (SHOP_MEMORY_SESSIONS)")
	fs.StringVar(&clientLimit, "login-client-limit", env("SHOP_LOGIN_CLIENT_LIMIT", strconv.Itoa(redisclient.DefaultPerClient)), "failed logins (and registrations of a taken email) one client address may make across all accounts in 5 minutes; then 429 (SHOP_LOGIN_CLIENT_LIMIT)")
	fs.StringVar(&uploadsTo, "uploads", env("SHOP_UPLOADS", ""), "review photos: a directory of this replica's disk (stateful; default uploads, beside the -db file) or s3://BUCKET in an object store (SHOP_UPLOADS)")
	fs.StringVar(&s3Endpoint, "s3-endpoint", env("SHOP_S3_ENDPOINT", ""), "with -uploads s3://BUCKET: the object store's URL, e.g. http://127.0.0.1:7070 (SHOP_S3_ENDPOINT)")
	fs.StringVar(&c.s3.AccessKey, "s3-access-key", env("SHOP_S3_ACCESS_KEY", ""), "with -uploads s3://BUCKET: the object store's access key (SHOP_S3_ACCESS_KEY)")
	fs.StringVar(&c.s3.SecretKey, "s3-secret-key", env("SHOP_S3_SECRET_KEY", ""), "with -uploads s3://BUCKET: the object store's secret key (SHOP_S3_SECRET_KEY)")
	fs.StringVar(&c.s3.Region, "s3-region", env("SHOP_S3_REGION", "us-east-1"), "with -uploads s3://BUCKET: the bucket's region (SHOP_S3_REGION)")
	fs.StringVar(&lock, "session-lock", env("SHOP_SESSION_LOCK", "on"), "on or off: serialize writes to one session across replicas (SHOP_SESSION_LOCK)")
	fs.StringVar(&cache, "session-cache", env("SHOP_SESSION_CACHE", "off"), "on or off: a near-cache of redis sessions in this replica, invalidated by Redis (SHOP_SESSION_CACHE)")
	fs.StringVar(&cacheBytes, "session-cache-bytes", env("SHOP_SESSION_CACHE_BYTES", "8MiB"), "the near-cache's bound, e.g. 8MiB, 512KiB or bytes (SHOP_SESSION_CACHE_BYTES)")
	fs.StringVar(&cacheInv, "session-cache-invalidation", env("SHOP_SESSION_CACHE_INVALIDATION", "on"), "on or off; off is for teaching only: the near-cache then serves stale sessions (SHOP_SESSION_CACHE_INVALIDATION)")
	fs.StringVar(&c.jobs, "jobs", env("SHOP_JOBS", jobs.Memory), "memory (receipt jobs in this process) or queue (durable in the database, River) (SHOP_JOBS)")
	fs.StringVar(&jobDelay, "job-delay", env("SHOP_JOB_DELAY", "0s"), "every background job takes at least this long, so a kill can land mid-job (teaching) (SHOP_JOB_DELAY)")
	fs.StringVar(&c.schedule, "schedule", env("SHOP_SCHEDULE", jobs.Local), "local (every replica sends the periodic report) or shared (one per period across replicas) (SHOP_SCHEDULE)")
	fs.StringVar(&reportEvery, "report-every", env("SHOP_REPORT_EVERY", "1h"), "the low-stock report's period, e.g. 1h or 5s (SHOP_REPORT_EVERY)")
	fs.StringVar(&c.live, "live", env("SHOP_LIVE", ""), "local (events reach this replica's browsers only) or redis (every replica's, resumable anywhere); default redis when the replicas share a Redis, else local (SHOP_LIVE)")
	fs.StringVar(&liveMax, "live-max-streams", env("SHOP_LIVE_MAX_STREAMS", strconv.Itoa(live.DefaultMaxStreams)), "open event streams (GET /events) this replica holds at most; past it 503 (SHOP_LIVE_MAX_STREAMS)")
	fs.StringVar(&drain, "drain", env("SHOP_DRAIN", "2s"), "how long to keep serving after SIGTERM while not ready (SHOP_DRAIN)")
	fs.StringVar(&level, "log-level", env("SHOP_LOG_LEVEL", "info"), "debug, info, warn or error (SHOP_LOG_LEVEL)")
	fs.StringVar(&trusted, "trusted-proxies", env("SHOP_TRUSTED_PROXIES", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"), "comma-separated CIDRs whose X-Forwarded-For/-Proto are believed, and the only clients shown /metrics and addresses (SHOP_TRUSTED_PROXIES)")
	var peers string
	fs.StringVar(&peers, "peers", env("SHOP_PEERS", ""), "the cluster's replicas as name=host:port,...: without a shared Redis, /metrics/live asks each for its own counters (SHOP_PEERS)")
	fs.BoolVar(&c.healthcheck, "healthcheck", false, "probe this replica's /readyz at -addr and exit 0 when ready (for container health checks)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return c, errHelp
		}
		return c, fmt.Errorf("shop: %v", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("shop: unexpected argument %q; every setting is a flag (see -h)", fs.Arg(0))
	}
	peerList, err := parsePeers(peers)
	if err != nil {
		return c, err
	}
	c.peers = peerList
	if err := applyProfile(fs, profile, getenv); err != nil {
		return c, err
	}
	fs.Visit(func(f *flag.Flag) { c.redisSet = c.redisSet || f.Name == "redis-addr" || f.Name == "redis-sentinels" })
	c.redisSet = c.redisSet || getenv("SHOP_REDIS_ADDR") != "" || getenv("SHOP_REDIS_SENTINELS") != ""
	if c.live == "" {
		// -live follows the sessions: redis where the replicas share a
		// Redis. Set on the flag, so that the profile match sees it.
		def := live.Local
		if c.sharesRedis() {
			def = live.Redis
		}
		fs.Set("live", def)
	}
	c.profile = matchProfile(fs)

	if err := session.CheckKind(c.sessionStore); err != nil {
		return c, fmt.Errorf("shop: -session-store %q: %v", c.sessionStore, err)
	}
	if k, _ := session.Lookup(c.sessionStore); k.Traits.NeedsKeys {
		var err error
		if c.sessionKeys, err = session.ParseKeys(keys); err != nil {
			return c, fmt.Errorf("shop: -session-keys (SHOP_SESSION_KEYS): %v; required with -session-store %s", err, c.sessionStore)
		}
	}
	if err := checkAddr(c.addr); err != nil {
		return c, fmt.Errorf("shop: -addr %q: %v; want host:port, e.g. :8080 or 127.0.0.1:8081", c.addr, err)
	}
	rcfg, err := redisclient.ParseAddr(c.redisAddr)
	if err != nil {
		return c, fmt.Errorf("shop: -redis-addr %q: %v; want host:port or redis://[:password@]host:port, e.g. 127.0.0.1:6379", redactRedis(c.redisAddr), err)
	}
	c.redisAddr, c.redisUser, c.redisPass = rcfg.Addr, rcfg.Username, rcfg.Password
	if redisPassword != "" {
		c.redisPass = redisPassword
	}
	for _, a := range strings.Split(sentinels, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if err := checkAddr(a); err != nil || strings.HasPrefix(a, ":") {
			return c, fmt.Errorf("shop: -redis-sentinels %q: want comma-separated host:port, e.g. 127.0.0.1:26379,127.0.0.1:26380", sentinels)
		}
		c.sentinels = append(c.sentinels, a)
	}
	if !masterName.MatchString(c.redisMaster) {
		return c, fmt.Errorf("shop: -redis-master %q: want a name of letters, digits, '.', '-' or '_', e.g. shop", c.redisMaster)
	}
	n, err := strconv.Atoi(wait)
	if err != nil || n < 0 || n > 16 {
		return c, fmt.Errorf("shop: -redis-wait-replicas %q: want a number of replicas from 0 to 16", wait)
	}
	c.waitReplicas = n
	if c.memoryMax, err = strconv.Atoi(memoryMax); err != nil || c.memoryMax < 1 || c.memoryMax > 100_000_000 {
		return c, fmt.Errorf("shop: -memory-sessions %q: want a number of sessions from 1 to 100000000, e.g. %d", memoryMax, session.DefaultMaxMemorySessions)
	}
	if c.clientLimit, err = strconv.Atoi(clientLimit); err != nil || c.clientLimit < 1 || c.clientLimit > 1_000_000 {
		return c, fmt.Errorf("shop: -login-client-limit %q: want a number of attempts from 1 to 1000000, e.g. %d", clientLimit, redisclient.DefaultPerClient)
	}
	if c.dbMaxConns, err = strconv.Atoi(dbMaxConns); err != nil || c.dbMaxConns < 0 || c.dbMaxConns > 1000 {
		return c, fmt.Errorf("shop: -db-max-conns %q: want a number of connections from 1 to 1000, or 0 for the default that grows with the cores", dbMaxConns)
	}
	switch lock {
	case "on":
		c.sessionLock = true
	case "off":
	default:
		return c, fmt.Errorf("shop: -session-lock %q: allowed values are on and off", lock)
	}
	cc, err := parseCache(cache, cacheBytes, cacheInv, c.sessionStore)
	if err != nil {
		return c, err
	}
	c.cache = cc
	if err := jobs.CheckKind(c.jobs); err != nil {
		return c, fmt.Errorf("shop: -jobs %q: %v", c.jobs, err)
	}
	if c.jobDelay, err = time.ParseDuration(jobDelay); err != nil || c.jobDelay < 0 || c.jobDelay > 10*time.Second {
		return c, fmt.Errorf("shop: -job-delay %q: want a duration from 0s to 10s, e.g. 3s", jobDelay)
	}
	if err := jobs.CheckSchedule(c.schedule); err != nil {
		return c, fmt.Errorf("shop: -schedule %q: %v", c.schedule, err)
	}
	if c.reportEvery, err = time.ParseDuration(reportEvery); err != nil || c.reportEvery < time.Second || c.reportEvery > 7*24*time.Hour {
		return c, fmt.Errorf("shop: -report-every %q: want a duration from 1s to 168h, e.g. 1h", reportEvery)
	}
	if err := live.CheckKind(c.live); err != nil {
		return c, fmt.Errorf("shop: -live %q: %v", c.live, err)
	}
	if c.liveMax, err = strconv.Atoi(liveMax); err != nil || c.liveMax < 1 || c.liveMax > 1_000_000 {
		return c, fmt.Errorf("shop: -live-max-streams %q: want a number of streams from 1 to 1000000, e.g. %d", liveMax, live.DefaultMaxStreams)
	}
	d, err := time.ParseDuration(drain)
	if err != nil || d < 0 || d > time.Minute {
		return c, fmt.Errorf("shop: -drain %q: want a duration from 0s to 1m, e.g. 2s", drain)
	}
	c.drain = d
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("shop: -log-level %q: allowed values are debug, info, warn and error", level)
	}
	if strings.TrimSpace(c.replica) == "" || len(c.replica) > 64 {
		return c, fmt.Errorf("shop: -replica %q: want a name of 1 to 64 characters", c.replica)
	}
	c.trusted = []netip.Prefix{} // empty, not nil: "" trusts no proxy
	for _, p := range strings.Split(trusted, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return c, fmt.Errorf("shop: -trusted-proxies %q: want comma-separated CIDRs, e.g. 127.0.0.0/8,10.0.0.0/8", trusted)
		}
		c.trusted = append(c.trusted, prefix)
	}
	if c.db == "" {
		return c, errors.New("shop: -db: want a SQLite file path (e.g. shop.db) or a postgres:// URL")
	}
	if profile == "stateless" && inObjectStore(uploadsTo) && (s3Endpoint == "" || c.s3.AccessKey == "" || c.s3.SecretKey == "") {
		// The profile put the photos in an object store; the object
		// store's address and keys are the one thing it cannot preset.
		return c, errors.New("shop: -profile stateless keeps review photos in an object store: set -s3-endpoint, -s3-access-key and -s3-secret-key (SHOP_S3_ENDPOINT, SHOP_S3_ACCESS_KEY, SHOP_S3_SECRET_KEY)")
	}
	if err := c.parseUploads(uploadsTo, s3Endpoint); err != nil {
		return c, err
	}
	return c, nil
}

// s3Region is what a region name may be.
var s3Region = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// parseUploads reads -uploads and, for s3://BUCKET, the -s3-* settings.
// Without -uploads photos go to the folder "uploads" beside the SQLite
// file (in the working directory with PostgreSQL).
func (c *config) parseUploads(to, endpoint string) error {
	if to == "" {
		dir := "."
		if !store.IsPostgresURL(c.db) {
			dir = filepath.Dir(c.db)
		}
		c.uploads = uploads.Target{Dir: filepath.Join(dir, "uploads")}
		return nil
	}
	t, err := uploads.ParseTarget(to)
	if err != nil {
		return fmt.Errorf("shop: -uploads %q: %v; want a directory (e.g. uploads) or s3://BUCKET", to, err)
	}
	c.uploads = t
	if t.Kind() != uploads.KindS3 {
		return nil
	}
	if endpoint == "" {
		return errors.New("shop: -s3-endpoint (SHOP_S3_ENDPOINT): required with -uploads s3://BUCKET; e.g. http://127.0.0.1:7070")
	}
	if c.s3.Endpoint, err = uploads.ParseEndpoint(endpoint); err != nil {
		return fmt.Errorf("shop: -s3-endpoint %q: %v; e.g. http://127.0.0.1:7070", endpoint, err)
	}
	if c.s3.AccessKey == "" || c.s3.SecretKey == "" {
		return errors.New("shop: -s3-access-key and -s3-secret-key (SHOP_S3_ACCESS_KEY, SHOP_S3_SECRET_KEY): both required with -uploads s3://BUCKET")
	}
	if !s3Region.MatchString(c.s3.Region) {
		return fmt.Errorf("shop: -s3-region %q: want a region name like us-east-1", c.s3.Region)
	}
	c.s3.Bucket = t.Bucket
	return nil
}

// sharesRedis reports whether this replica uses a Redis for what is not a
// session (login limits, presence, live metrics): always with redis
// sessions, with cookie sessions when a Redis was configured, never with
// memory sessions, whose replicas share nothing by design.
func (c config) sharesRedis() bool {
	k, _ := session.Lookup(c.sessionStore)
	return k.Traits.NeedsRedis || (c.redisSet && !k.Traits.SharesNothing)
}

// newRedis is a client for the configured Redis.
func (c config) newRedis() *redisclient.Client {
	return redisclient.New(redisclient.Config{Addr: c.redisAddr, Username: c.redisUser, Password: c.redisPass, Sentinels: c.sentinels, Master: c.redisMaster})
}

// redactRedis hides the password of a redis:// address, for messages.
func redactRedis(addr string) string {
	if !strings.Contains(addr, "@") {
		return addr
	}
	if u, err := url.Parse(addr); err == nil {
		return u.Redacted()
	}
	return "redis://(unparsable, not shown)"
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("missing port")
	}
	_, err = net.LookupPort("tcp", port)
	return err
}

// run is the whole program: main only turns its error into an exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.healthcheck {
		return probeReady(ctx, cfg.addr)
	}

	log := newLogger(stderr, cfg)
	db, err := store.Open(ctx, cfg.db)
	if err != nil {
		return fmt.Errorf("shop: open database %s: %w", store.Redact(cfg.db), err)
	}
	defer db.Close()
	db.SetMaxConns(cfg.dbMaxConns)

	// Redis as a shared service (login limiter, presence, live metrics) is
	// main's to hand out, apart from Redis as a session store: memory
	// replicas share nothing, redis replicas share this one client, and
	// cookie replicas share it when one is configured, else nothing.
	var rc *redisclient.Client
	if cfg.sharesRedis() {
		rc = cfg.newRedis()
		defer rc.Close()
		if err := rc.Ping(ctx); err != nil {
			// Not fatal: the replica starts not-ready and recovers with Redis.
			log.Warn("redis not answering at start; not ready until it does", "err", err)
		}
		// With Sentinel, follow failovers for the life of the replica;
		// without, Watch returns at once.
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { defer close(watched); rc.Watch(watchCtx) }()
		defer func() { stopWatch(); <-watched }()
	}
	metrics := web.NewMetrics(cfg.replica, cfg.sessionStore)
	opts := session.Options{Lock: cfg.sessionLock, WaitReplicas: cfg.waitReplicas, Observer: metrics, MaxMemorySessions: cfg.memoryMax}
	// Each store takes what it uses of these; the database keeps each
	// account's session epoch, which sealed sessions are revoked by.
	deps := session.Deps{Options: opts, Redis: rc, Cookie: session.CookieOptions{Keys: cfg.sessionKeys, Epochs: db}}
	if cfg.cache.on {
		deps.Cache = &session.CacheOptions{MaxBytes: cfg.cache.maxBytes, NoInvalidation: !cfg.cache.invalidation}
	}
	kind, _ := session.Lookup(cfg.sessionStore) // parseFlags checked it
	sessions, err := kind.Open(deps)
	if err != nil {
		return fmt.Errorf("shop: -session-store %s: %w", cfg.sessionStore, err)
	}
	defer sessions.Close()

	photos, err := openPhotos(ctx, cfg, log)
	if err != nil {
		return err
	}

	// Live events through Redis need a Redis even where nothing else is
	// shared (memory sessions with -live redis): a client of their own
	// then, which web's other services do not get.
	var events interface {
		web.Live
		Close()
	}
	switch cfg.live {
	case live.Redis:
		lrc := rc
		if lrc == nil {
			lrc = cfg.newRedis()
			defer lrc.Close()
		}
		events = live.NewRedis(lrc, live.Options{MaxStreams: cfg.liveMax}, log)
	default:
		events = live.NewLocal(live.Options{MaxStreams: cfg.liveMax})
	}
	defer events.Close()

	// Receipt jobs: goroutines with results in this process (memory), or
	// River's queue in the database beside the shop's tables (queue).
	// A receipt made or failed is the order's live event to its owner,
	// from whichever replica ran the job.
	jobOpts := jobs.Options{Replica: cfg.replica, Delay: cfg.jobDelay, Render: web.RenderReceipt, Logger: log,
		Notify: func(o store.Order, st string) {
			ev := live.OrderChanged(live.Order{ID: o.ID, AccountID: o.AccountID, SessionID: o.SessionID, Status: "receipt " + st})
			if err := events.Publish(context.Background(), ev); err != nil {
				log.Warn("receipt: live event delayed", "order", o.ID, "err", err)
			}
		}}
	var receipts interface {
		web.Receipts
		web.StateHolder
		Close() error
	}
	if cfg.jobs == jobs.Queue {
		q, err := jobs.OpenQueue(ctx, db, jobOpts)
		if err != nil {
			return fmt.Errorf("shop: -jobs queue: %w", err)
		}
		receipts = q
	} else {
		receipts = jobs.NewMemory(jobOpts)
	}
	defer receipts.Close()

	// The low-stock report: every replica runs the timer; -schedule
	// decides whether each sends its own report or one is sent per period.
	schedule := jobs.NewSchedule(cfg.schedule, cfg.reportEvery, cfg.replica, db, log)
	scheduleCtx, stopSchedule := context.WithCancel(ctx)
	scheduled := make(chan struct{})
	go func() { defer close(scheduled); schedule.Run(scheduleCtx) }()
	defer func() { stopSchedule(); <-scheduled }()

	// The services the replicas may share, each handed over on its own: in
	// Redis when there is one to share, else in this replica alone.
	wcfg := web.Config{Replica: cfg.replica, Logger: log, Metrics: metrics, TrustedProxies: cfg.trusted, Profile: cfg.profile, Peers: cfg.peers,
		Receipts: receipts, Schedule: cfg.schedule, ReportEvery: cfg.reportEvery, Price: measuredPrice(log),
		State: []web.StateHolder{sessionsState(cfg, sessions), receipts, schedule, events, nearCacheState(sessions), configurationState(cfg)}}
	limits := redisclient.Limits{PerClient: cfg.clientLimit}
	if rc != nil {
		wcfg.Limiter = redisclient.NewSharedLimiter(rc, limits, log)
		wcfg.Presence = redisclient.NewPresence(rc)
		wcfg.Board = redisclient.NewBoard(rc)
		if rc.Sentinel() {
			wcfg.Sentinel = rc
		}
		metrics.WatchRedisPool(rc.ActiveConns)
	} else {
		wcfg.Limiter = redisclient.NewLocalLimiter(limits)
		wcfg.Presence = redisclient.NewLocalPresence()
		wcfg.Board = redisclient.NewLocalBoard()
	}
	srv := web.NewServer(wcfg, db, sessions, events, photos)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("shop: -addr %s: %w", cfg.addr, err)
	}
	conns := newConnWatch()
	var stopping atomic.Bool
	httpSrv := &http.Server{
		Handler:           closeWhenStopping(&stopping, srv),
		ConnState:         conns.track,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "%s listening on http://%s (sessions: %s, lock: %v, jobs: %s, schedule: %s, photos: %s)\n", cfg.replica, ln.Addr(), cfg.sessionStore, cfg.sessionLock, cfg.jobs, cfg.schedule, photos.Where())
	log.Info("listening", "addr", ln.Addr().String(), "session_store", cfg.sessionStore, "session_lock", cfg.sessionLock, "live", cfg.live, "db", store.Redact(cfg.db), "jobs", cfg.jobs, "schedule", cfg.schedule, "uploads", cfg.uploads.Kind())

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	// With a shared Redis the replica announces itself to the others'
	// /cluster page until ctx ends; waiting for it on the way out keeps the
	// Redis client (closed by a defer above) open for its last withdrawal.
	announceCtx, stopAnnounce := context.WithCancel(ctx)
	announced := make(chan struct{})
	go func() { defer close(announced); srv.Announce(announceCtx, ln.Addr().String()) }()
	defer func() { stopAnnounce(); <-announced }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("shop: serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: stop being ready at once, but keep serving for a while so the
	// load balancer notices and moves away before the listener closes.
	srv.Drain()
	log.Info("draining", "for", cfg.drain.String())
	select {
	case <-time.After(cfg.drain):
	case err := <-serveErr:
		return fmt.Errorf("shop: serve: %w", err)
	}
	// Then stop without failing a request nginx is sending us: refuse new
	// connections, let nginx close the ones it holds, and shut down once it
	// has stopped using them. Why in this order: see drain.go.
	stopping.Store(true)
	ln.Close()
	if err := <-serveErr; !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("shop: serve: %w", err)
	}
	conns.waitQuiet()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shop: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// openPhotos opens the review photo store -uploads names. An object store
// that does not answer at start is not fatal, and does not make the replica
// not-ready either: only reviews with a photo need it (they answer 503
// until it answers, and the first one then creates a missing bucket), while
// taking every replica out of the load balancer would take the whole shop
// down with it.
func openPhotos(ctx context.Context, cfg config, log *slog.Logger) (web.Photos, error) {
	if cfg.uploads.Kind() == uploads.KindDisk {
		d, err := uploads.NewDisk(cfg.uploads.Dir, cfg.replica)
		if err != nil {
			return nil, fmt.Errorf("shop: -uploads %s: %w", cfg.uploads.Dir, err)
		}
		return d, nil
	}
	s3, err := uploads.NewS3(cfg.s3)
	if err != nil {
		return nil, fmt.Errorf("shop: -s3-endpoint: %w", err)
	}
	if err := s3.EnsureBucket(ctx); err != nil {
		log.Warn("object store not answering at start; reviews with a photo answer 503 until it does", "err", err)
	}
	return s3, nil
}

// newLogger logs JSON unless stderr is a terminal, every line with the replica.
func newLogger(w io.Writer, cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			h = slog.NewTextHandler(w, opts)
		}
	}
	return slog.New(web.NewLogHandler(h)).With("replica", cfg.replica)
}

// probeReady is -healthcheck: it asks this replica's /readyz, so a container
// health check needs neither a shell nor curl.
func probeReady(ctx context.Context, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("shop: healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("shop: healthcheck: /readyz answered %s", resp.Status)
	}
	return nil
}
