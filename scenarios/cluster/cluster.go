// Package cluster runs a real local shop cluster for tests, the scenario lab
// and the benchmark: redis-server, replicas of the shop binary and nginx in
// front, each on a free loopback port, with faults to inject (kill, SIGTERM,
// restart, scale out and in). It runs the binary built from cmd/shop and
// talks to it only through the outside contract (docs/CONTRACT.md).
//
// Every process runs in its own process group and, on Linux, dies with the
// process that started it; Close stops them all.
package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statelab/shop/deploy"
	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
)

// Options describe a cluster. The zero value is three replicas with Redis
// sessions behind round-robin nginx.
type Options struct {
	Replicas int // number of replicas; default 3
	// Profile is every replica's -profile (SHOP_PROFILE): "stateful",
	// "stateless" or "" for none. It also picks Store, Uploads and LB
	// where they are left unsaid (profiles), so that the cluster has what
	// the profile needs (Redis, an object store) and a stateful one sits
	// behind sticky routing; the replicas take the rest of the profile
	// (jobs, schedule, live) from -profile itself.
	Profile string
	Store   string // session store: "memory", "redis" (default) or "cookie"
	// SessionKeys is SHOP_SESSION_KEYS of every replica with the cookie
	// store; "" generates one key for this cluster (SessionKeys tells it).
	SessionKeys string
	LB          string        // nginx policy: "roundrobin" (default) or "sticky"
	Lock        string        // session lock: "on" (default) or "off"
	Drain       time.Duration // SHOP_DRAIN; default 300ms to keep tests fast, negative for none
	Binary      string        // the shop binary; "" builds cmd/shop once per process
	Dir         string        // logs, database and nginx prefix; "" is a temp dir that Close removes
	Env         []string      // extra KEY=value for every replica, after (so overriding) the harness's own
	// Sentinel runs Redis as a primary and a replica under three sentinels
	// (RedisHA) and points the replicas at the sentinels; it implies
	// RedisProxy.
	Sentinel bool
	// RedisProxy puts a TCP proxy between the replicas and Redis, for
	// PartitionRedis and DelayRedis.
	RedisProxy bool
	// Database is where the replicas keep catalog, stock, orders and
	// accounts: "sqlite" (default), one file in Dir shared by every
	// replica, or "postgres", one PostgreSQL server the cluster starts
	// (Debian's postgresql package; its log is Dir/postgres.log).
	Database string
	// Uploads is where the replicas keep review photos: "disk" (default),
	// a directory of each replica's own (Dir/NAME-uploads: its disk), or
	// "s3", one bucket of a versitygw the cluster starts (its objects in
	// Dir/objects, its log Dir/versitygw.log).
	Uploads string
	Stdout  io.Writer // optional copy of every process's output, each line prefixed with its name

	// ReplicaEnv, when set, gives extra KEY=value for one replica by name,
	// after Env (the lab gives each replica the drain its script asks for).
	ReplicaEnv func(name string) []string

	// NoRetry renders nginx without retries on another replica (an L4
	// balancer, kube-proxy) and makes the cluster follow readiness: every
	// ReadinessPeriod it reloads nginx with only the replicas whose /readyz
	// answers 200 (endpoints.go).
	NoRetry bool
	// Notify, when set, hears what the cluster does by itself: "nginx
	// routes to shop1, shop3 (not ready: shop2)".
	Notify func(event string)
}

// The databases a cluster can run on.
const (
	DatabaseSQLite   = "sqlite"
	DatabasePostgres = "postgres"
)

// defaultDrain keeps SIGTERM, RemoveReplica and Close quick in tests.
const defaultDrain = 300 * time.Millisecond

// noRedisAddr is SHOP_REDIS_ADDR in memory mode: the cluster has no Redis,
// and a replica must not find one that happens to run on the default port.
// Port 1 is never served on loopback.
const noRedisAddr = "127.0.0.1:1"

// profiles are what Options.Profile picks for the cluster around the
// replicas: the shop's own presets are in cmd/shop/profile.go.
var profiles = map[string]struct{ store, uploads, lb string }{
	"stateful":  {session.Memory, UploadsDisk, deploy.PolicySticky},
	"stateless": {session.Redis, UploadsS3, deploy.PolicyRoundRobin},
}

func (o Options) withDefaults() (Options, error) {
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Replicas < 0 {
		return o, fmt.Errorf("cluster: Replicas %d: want at least 1", o.Replicas)
	}
	if o.Profile != "" {
		p, ok := profiles[o.Profile]
		if !ok {
			return o, fmt.Errorf("cluster: Profile %q: want stateful or stateless", o.Profile)
		}
		o.Store = cmp.Or(o.Store, p.store)
		o.Uploads = cmp.Or(o.Uploads, p.uploads)
		o.LB = cmp.Or(o.LB, p.lb)
	}
	if o.Store == "" {
		o.Store = "redis"
	}
	if err := session.CheckKind(o.Store); err != nil {
		return o, fmt.Errorf("cluster: Store %q: %v", o.Store, err)
	}
	if o.LB == "" {
		o.LB = deploy.PolicyRoundRobin
	}
	if o.LB != deploy.PolicyRoundRobin && o.LB != deploy.PolicySticky {
		return o, fmt.Errorf("cluster: LB %q: want %s or %s", o.LB, deploy.PolicyRoundRobin, deploy.PolicySticky)
	}
	if o.Sentinel {
		o.RedisProxy = true
	}
	if o.Store == session.Cookie && o.SessionKeys == "" {
		b := make([]byte, 32)
		rand.Read(b)
		o.SessionKeys = hex.EncodeToString(b)
	}
	if o.Store == "memory" && o.RedisProxy {
		return o, errors.New("cluster: Sentinel and RedisProxy need Redis; Store is memory")
	}
	if o.Database == "" {
		o.Database = DatabaseSQLite
	}
	if o.Database != DatabaseSQLite && o.Database != DatabasePostgres {
		return o, fmt.Errorf("cluster: Database %q: want %s or %s", o.Database, DatabaseSQLite, DatabasePostgres)
	}
	if o.Uploads == "" {
		o.Uploads = UploadsDisk
	}
	if o.Uploads != UploadsDisk && o.Uploads != UploadsS3 {
		return o, fmt.Errorf("cluster: Uploads %q: want %s or %s", o.Uploads, UploadsDisk, UploadsS3)
	}
	if o.Lock == "" {
		o.Lock = "on"
	}
	if o.Lock != "on" && o.Lock != "off" {
		return o, fmt.Errorf("cluster: Lock %q: want on or off", o.Lock)
	}
	switch {
	case o.Drain == 0:
		o.Drain = defaultDrain
	case o.Drain < 0:
		o.Drain = 0
	}
	return o, nil
}

// Cluster is Redis (in redis mode), the replicas and nginx, running.
type Cluster struct {
	o      Options // with defaults
	dir    string
	ownDir bool // dir is a temp dir that Close removes
	bin    string
	out    *proc.Mux
	redis  *Redis    // the single Redis; nil with Sentinel or in memory mode
	ha     *RedisHA  // with Sentinel
	net    *redisNet // the proxies between replicas and Redis, with RedisProxy
	nginx  *nginx
	pg     *testenv.Postgres    // with Options.Database postgres
	db     string               // SHOP_DB of every replica
	s3     *testenv.ObjectStore // with Options.Uploads s3

	redisProxyPort int // the single Redis's proxy, with RedisProxy

	ops sync.Mutex // serializes AddReplica, RemoveReplica and Close

	mu       sync.Mutex
	replicas []*Replica // what nginx routes to, in order
	all      []*Replica // every replica ever started, removed ones too, for Close
	next     int        // number of the next new replica: names are never reused
	closed   bool
	closeErr error

	// stopFollow ends followReadiness (NoRetry); followed is closed when
	// it has.
	stopFollow context.CancelFunc
	followed   chan struct{}
}

// Start starts a cluster and returns once it serves: Redis answers PING (in
// redis mode), every replica's /readyz answers 200 and nginx routes GET
// /healthz to them. On failure everything started is stopped again and the
// error quotes the log of the process that failed.
//
// ctx bounds starting (including the build when Options.Binary is empty),
// not the processes' lives: they run until Close.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{o: o, next: 1}
	if o.Stdout != nil {
		c.out = proc.NewMux(o.Stdout)
	}
	if o.Dir == "" {
		c.dir, err = os.MkdirTemp("", "statelab-cluster-*")
		c.ownDir = true
	} else {
		c.dir, err = filepath.Abs(o.Dir)
		if err == nil {
			err = os.MkdirAll(c.dir, 0o755)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	var err error
	if c.bin, err = c.binary(ctx); err != nil {
		return err
	}
	if err := c.startDatabase(ctx); err != nil {
		return err
	}
	if err := c.startObjectStore(ctx); err != nil {
		return err
	}
	switch {
	case c.o.Sentinel:
		if c.ha, err = startRedisHA(ctx, filepath.Join(c.dir, "redis"), c.out); err != nil {
			return err
		}
		c.net = c.ha.net
	case c.o.Store == session.Redis || c.o.Store == session.Cookie:
		// A cookie cluster keeps no session in Redis; its replicas use it
		// for the shared services (login limits, /cluster, live metrics),
		// and the lab can show that an outage costs no cart.
		if c.redis, err = startRedis(ctx, filepath.Join(c.dir, "redis"), c.out, "redis", nil); err != nil {
			return err
		}
		if c.o.RedisProxy {
			c.net = newRedisNet()
			if c.redisProxyPort, err = c.net.add("redis", c.redis.Addr()); err != nil {
				return err
			}
		}
	}

	// The first replica starts alone: it creates and seeds the shared
	// database, which the others then only open.
	first, err := c.newReplica(ctx, c.nextName(), nil)
	if err != nil {
		return err
	}
	c.replicas = append(c.replicas, first)

	rest := make([]*Replica, c.o.Replicas-1)
	errs := make([]error, len(rest))
	var wg sync.WaitGroup
	for i := range rest {
		name := c.nextName()
		wg.Go(func() { rest[i], errs[i] = c.newReplica(ctx, name, nil) })
	}
	wg.Wait()
	for _, r := range rest {
		if r != nil {
			c.replicas = append(c.replicas, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	if c.nginx, err = startNginx(ctx, filepath.Join(c.dir, "nginx"), c.o.LB, c.o.NoRetry, upstreams(c.replicas), c.out); err != nil {
		return err
	}
	u := c.URL() + "/healthz"
	if err := c.nginx.p.WaitUntil(ctx, "GET "+u+" answers 200", httpOK(newProbeClient(), u)); err != nil {
		return err
	}
	if c.o.NoRetry {
		fctx, cancel := context.WithCancel(context.Background())
		c.stopFollow, c.followed = cancel, make(chan struct{})
		go func() {
			defer close(c.followed)
			c.followReadiness(fctx)
		}()
	}
	return nil
}

// startDatabase starts PostgreSQL with an empty database for the replicas,
// or names the SQLite file they share.
func (c *Cluster) startDatabase(ctx context.Context) error {
	if c.o.Database == DatabaseSQLite {
		c.db = filepath.Join(c.dir, "shop.db")
		return nil
	}
	// Durable (fsync on), like a real server: the bench measures it.
	pg, err := testenv.NewPostgres(ctx, filepath.Join(c.dir, "postgres.log"), true)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.pg = pg
	if c.db, err = pg.CreateDatabase(ctx, "shop"); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// binary returns the absolute path of the shop binary, building it when
// Options.Binary is empty.
func (c *Cluster) binary(ctx context.Context) (string, error) {
	if c.o.Binary == "" {
		dir, err := defaultBuildDir()
		if err != nil {
			return "", err
		}
		return BuildShop(ctx, dir)
	}
	bin, err := filepath.Abs(c.o.Binary)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		return "", fmt.Errorf("cluster: shop binary: %w", err)
	}
	return bin, nil
}

func (c *Cluster) nextName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := "shop" + strconv.Itoa(c.next)
	c.next++
	return name
}

// newReplica starts a replica on a fresh port and waits until it is ready,
// picking another port when the first was taken meanwhile.
func (c *Cluster) newReplica(ctx context.Context, name string, extraEnv []string) (*Replica, error) {
	for attempt := 1; ; attempt++ {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		r := &Replica{name: name, port: port, bin: c.bin, dir: c.dir, env: c.replicaEnv(name, port, extraEnv), out: c.out}
		err = r.Start(ctx)
		if err == nil {
			c.mu.Lock()
			c.all = append(c.all, r)
			c.mu.Unlock()
			return r, nil
		}
		r.Kill() // not ready in time: nobody would own it
		testenv.ReleasePort(port)
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == 3 {
			return nil, err
		}
	}
}

func (c *Cluster) replicaEnv(name string, port int, extra []string) []string {
	redisAddr := noRedisAddr
	switch {
	case c.redisProxyPort != 0:
		redisAddr = testenv.Loopback(c.redisProxyPort)
	case c.redis != nil:
		redisAddr = c.redis.Addr()
	}
	env := baseEnv()
	if c.ha != nil {
		env = append(env,
			"SHOP_REDIS_SENTINELS="+strings.Join(c.ha.SentinelAddrs(), ","),
			"SHOP_REDIS_MASTER="+c.ha.MasterName())
	}
	env = append(env,
		"SHOP_ADDR="+testenv.Loopback(port),
		"SHOP_REPLICA="+name,
		"SHOP_SESSION_STORE="+c.o.Store,
		"SHOP_REDIS_ADDR="+redisAddr,
		"SHOP_DB="+c.db,
		"SHOP_SESSION_LOCK="+c.o.Lock,
		"SHOP_DRAIN="+c.o.Drain.String(),
	)
	if c.o.Store == session.Cookie {
		env = append(env, "SHOP_SESSION_KEYS="+c.o.SessionKeys)
	}
	if c.o.Profile != "" {
		env = append(env, "SHOP_PROFILE="+c.o.Profile)
	}
	env = append(env, c.uploadsEnv(name)...)
	// exec uses the last value of a duplicated key: these override.
	env = append(env, c.o.Env...)
	if c.o.ReplicaEnv != nil {
		env = append(env, c.o.ReplicaEnv(name)...)
	}
	return append(env, extra...)
}

func upstreams(rs []*Replica) []deploy.Replica {
	var ups []deploy.Replica
	for _, r := range rs {
		ups = append(ups, deploy.Replica{Name: r.name, Addr: r.Addr()})
	}
	return ups
}

// URL is nginx's base URL: "http://127.0.0.1:PORT".
func (c *Cluster) URL() string { return c.nginx.url() }

// SessionKeys is the replicas' SHOP_SESSION_KEYS with the cookie store, as
// the cluster started them.
func (c *Cluster) SessionKeys() string { return c.o.SessionKeys }

// Redis is the cluster's Redis, nil in memory mode and with Sentinel.
func (c *Cluster) Redis() *Redis { return c.redis }

// RedisHA is the primary, replica and sentinels with Options.Sentinel, nil
// otherwise.
func (c *Cluster) RedisHA() *RedisHA { return c.ha }

// errNoProxy is the answer of a network fault on a cluster without a proxy.
var errNoProxy = errors.New("cluster: no proxy in front of Redis (Options.RedisProxy or Sentinel)")

// PartitionRedis cuts the replicas off from Redis: their connections hang,
// new ones are accepted and never answered (see redisNet.Partition).
func (c *Cluster) PartitionRedis() error {
	if c.net == nil {
		return errNoProxy
	}
	return c.net.Partition()
}

// HealRedis ends a partition.
func (c *Cluster) HealRedis() error {
	if c.net == nil {
		return errNoProxy
	}
	return c.net.Heal()
}

// DelayRedis adds d to every exchange with Redis; 0 takes it away.
func (c *Cluster) DelayRedis(d time.Duration) error {
	if c.net == nil {
		return errNoProxy
	}
	return c.net.Delay(d)
}

// Postgres is the cluster's PostgreSQL server, for faults (Stop, Start,
// Pause), or nil on SQLite.
func (c *Cluster) Postgres() *testenv.Postgres { return c.pg }

// Database is what every replica gets as SHOP_DB: the SQLite file's path or
// the PostgreSQL database's URL.
func (c *Cluster) Database() string { return c.db }

// Dir is the cluster's working directory: shop.db, one NAME.log per
// replica, redis/ (data and redis.log) and nginx/ (nginx.conf, error.log,
// access.log).
func (c *Cluster) Dir() string { return c.dir }

// Replicas returns the replicas nginx routes to, killed ones included, in
// the order they were added.
func (c *Cluster) Replicas() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.replicas)
}

// Replica returns the replica with that name, or nil.
func (c *Cluster) Replica(name string) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replicas {
		if r.name == name {
			return r
		}
	}
	return nil
}

// AddReplica scales out: it starts the next replica (shop4 after shop1..3;
// names are never reused) with env added to its environment, waits until it
// is ready, reloads nginx with it and returns once nginx has routed a
// request to it.
func (c *Cluster) AddReplica(ctx context.Context, env ...string) (*Replica, error) {
	c.ops.Lock()
	defer c.ops.Unlock()
	if c.isClosed() {
		return nil, errors.New("cluster: add replica: cluster is closed")
	}
	r, err := c.newReplica(ctx, c.nextName(), env)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	members := append(slices.Clone(c.replicas), r)
	c.mu.Unlock()
	if err := c.nginx.reload(ctx, upstreams(members)); err != nil {
		return nil, errors.Join(err, r.Kill())
	}
	c.mu.Lock()
	c.replicas = members
	c.mu.Unlock()

	u := c.URL() + "/healthz"
	client := newProbeClient()
	err = c.nginx.p.WaitUntil(ctx, "nginx routes a request to "+r.name, func(ctx context.Context) error {
		h, err := httpGet(ctx, client, u)
		if err != nil {
			return err
		}
		if by := h.Get("X-Served-By"); by != r.name {
			return fmt.Errorf("GET %s: served by %q", u, by)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("cluster: add %s: %w", r.name, err)
	}
	return r, nil
}

// RemoveReplica scales in: it reloads nginx without the replica, waits until
// no nginx worker of the old configuration is left, then sends the replica
// SIGTERM and waits for it to drain and exit with status 0.
func (c *Cluster) RemoveReplica(ctx context.Context, name string) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	if c.isClosed() {
		return errors.New("cluster: remove replica: cluster is closed")
	}
	c.mu.Lock()
	i := slices.IndexFunc(c.replicas, func(r *Replica) bool { return r.name == name })
	var r *Replica
	var rest []*Replica
	if i >= 0 {
		r = c.replicas[i]
		rest = slices.Delete(slices.Clone(c.replicas), i, i+1)
	}
	c.mu.Unlock()
	switch {
	case r == nil:
		return fmt.Errorf("cluster: remove %s: no such replica", name)
	case len(rest) == 0:
		return fmt.Errorf("cluster: remove %s: it is the last replica", name)
	}
	if err := c.nginx.reload(ctx, upstreams(rest)); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", name, err)
	}
	c.mu.Lock()
	c.replicas = rest
	c.mu.Unlock()
	return c.stopReplica(r)
}

// stopReplica sends SIGTERM to a running replica and wants exit status 0
// within its drain period and a grace period; then it kills.
func (c *Cluster) stopReplica(r *Replica) error {
	if !r.Running() {
		return nil
	}
	// Not twice: a second SIGTERM may cut a drain short, as in a terminal.
	if err := r.termOnce(); err != nil {
		return errors.Join(err, r.Kill())
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Drain+closeGrace)
	defer cancel()
	code, err := r.Wait(ctx)
	if err != nil {
		return errors.Join(fmt.Errorf("cluster: %s did not exit within %s of SIGTERM; killed%s", r.name, c.o.Drain+closeGrace, proc.FormatTail(r.LogPath())), r.Kill())
	}
	if code != 0 {
		return fmt.Errorf("cluster: %s exited with status %d after SIGTERM%s", r.name, code, proc.FormatTail(r.LogPath()))
	}
	return nil
}

func (c *Cluster) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close stops nginx, then every replica, removed ones included (SIGTERM,
// SIGKILL when one has not exited after its drain and 3 s), then Redis, and removes the working
// directory if Start created it. It reports processes that had to be killed
// or exited non-zero after SIGTERM. Calling it again returns the first
// result.
func (c *Cluster) Close() error {
	if c.stopFollow != nil {
		// Before the lock: a reload in flight holds it.
		c.stopFollow()
		<-c.followed
	}
	c.ops.Lock()
	defer c.ops.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	// Removed replicas too: a caller may have restarted one.
	replicas := slices.Clone(c.all)
	c.mu.Unlock()

	var errs []error
	if c.nginx != nil && c.nginx.p != nil {
		errs = append(errs, c.nginx.stop())
	}
	replicaErrs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() { replicaErrs[i] = c.stopReplica(r) })
	}
	wg.Wait()
	errs = append(errs, replicaErrs...)
	if c.redis != nil {
		errs = append(errs, c.redis.Close())
	}
	if c.ha != nil {
		errs = append(errs, c.ha.Close())
	} else if c.net != nil {
		c.net.close()
	}
	if c.pg != nil {
		errs = append(errs, c.pg.Close())
	}
	if c.s3 != nil {
		errs = append(errs, c.s3.Close())
	}
	for _, r := range replicas {
		testenv.ReleasePort(r.port)
	}
	if c.nginx != nil {
		testenv.ReleasePort(c.nginx.port)
	}
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	c.mu.Lock()
	c.closeErr = errors.Join(errs...)
	c.mu.Unlock()
	return c.closeErr
}
