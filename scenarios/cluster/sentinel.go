package cluster

// The stateful tier made available: a Redis primary and a replica watched
// by three sentinels, each Redis server behind its own proxy (netproxy.go).
//
// The servers announce their proxy's address (replica-announce-ip/port) and
// the sentinels monitor the primary at its proxy's address, so every address
// Sentinel hands out, to the shop or to a server it reconfigures, is a proxy:
// whoever follows Sentinel goes through the link the harness controls. The
// sentinels themselves are reached directly.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/deploy"
	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// sentinelCount is how many sentinels watch the primary: three, so that two
// agree on a failure and a majority survives the loss of one.
const sentinelCount = 3

// Sentinel is one redis-server --sentinel on a free loopback port.
type Sentinel struct {
	name string
	port int
	dir  string
	bin  string
	out  *proc.Mux

	mu sync.Mutex
	p  *proc.Process
}

// Addr is the sentinel's host:port.
func (s *Sentinel) Addr() string { return testenv.Loopback(s.port) }

// LogPath is the sentinel's log file.
func (s *Sentinel) LogPath() string { return filepath.Join(s.dir, s.name+".log") }

func (s *Sentinel) confPath() string { return filepath.Join(s.dir, s.name+".conf") }

// start starts the sentinel from its configuration file, which Sentinel
// rewrites as it learns, and waits until it answers PING.
func (s *Sentinel) start(ctx context.Context) error {
	s.mu.Lock()
	p, err := proc.Start(proc.Spec{
		Name:    s.name,
		Path:    s.bin,
		Args:    []string{s.confPath(), "--sentinel"},
		Dir:     s.dir,
		LogPath: s.LogPath(),
		Out:     s.out,
	})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.p = p
	s.mu.Unlock()
	return p.WaitUntil(ctx, "it answers PING on "+s.Addr(), func(ctx context.Context) error {
		_, err := proc.RedisCommand(ctx, s.Addr(), "PING")
		return err
	})
}

func (s *Sentinel) close() error {
	defer testenv.ReleasePort(s.port)
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(closeGrace)
}

// RedisHA is a Redis primary and replica under three sentinels, each server
// behind a proxy of the harness's.
type RedisHA struct {
	master    string
	net       *redisNet
	servers   []*Redis
	proxies   []string // proxy address of servers[i]
	sentinels []*Sentinel
}

// StartRedisHA starts the tier in dir (each process's data and log in its
// own folder) and returns once a failover can happen. Close stops it.
func StartRedisHA(ctx context.Context, dir string) (*RedisHA, error) {
	return startRedisHA(ctx, dir, nil)
}

// startRedisHA starts redis-a (the primary) and redis-b (its replica), each
// behind a proxy, then three sentinels, and returns once every sentinel
// knows the replica and the two other sentinels: from then on a failover
// can happen.
func startRedisHA(ctx context.Context, dir string, out *proc.Mux) (ha *RedisHA, err error) {
	bin, err := testenv.LookBinary("redis-server")
	if err != nil {
		return nil, fmt.Errorf("cluster: sentinel: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: sentinel: %w", err)
	}
	ha = &RedisHA{master: deploy.SentinelMaster, net: newRedisNet()}
	defer func() {
		if err != nil {
			err = errors.Join(err, ha.Close())
		}
	}()

	for i, name := range []string{"redis-a", "redis-b"} {
		var primaryProxy string
		if i > 0 {
			primaryProxy = ha.proxies[0]
		}
		// The proxy starts with the server: the server announces the
		// proxy's port, the proxy forwards to the server's.
		var proxyPort int
		var proxyErr error
		server, err := startRedis(ctx, filepath.Join(dir, name), out, name, func(port int) []string {
			if proxyPort == 0 {
				proxyPort, proxyErr = ha.net.add(name, testenv.Loopback(port))
			} else {
				proxyErr = ha.net.retarget(proxyPort, testenv.Loopback(port))
			}
			conf := []string{
				"replica-announce-ip 127.0.0.1",
				"replica-announce-port " + strconv.Itoa(proxyPort),
				// A full sync starts at once instead of after 5 s spent
				// waiting for more replicas: the lab's replica is in sync
				// before the next fault.
				"repl-diskless-sync-delay 0",
			}
			if primaryProxy != "" {
				host, port, _ := strings.Cut(primaryProxy, ":")
				conf = append(conf, "replicaof "+host+" "+port)
			}
			return conf
		})
		if err == nil {
			err = proxyErr
		}
		if server != nil {
			ha.servers = append(ha.servers, server)
		}
		if err != nil {
			return nil, err
		}
		ha.proxies = append(ha.proxies, testenv.Loopback(proxyPort))
	}
	if err := ha.waitReplicating(ctx, ha.servers[1]); err != nil {
		return nil, err
	}

	host, port, _ := strings.Cut(ha.proxies[0], ":")
	primaryPort, _ := strconv.Atoi(port)
	for i := 1; i <= sentinelCount; i++ {
		sp, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		s := &Sentinel{name: "sentinel" + strconv.Itoa(i), port: sp, dir: filepath.Join(dir, "sentinel"), bin: bin, out: out}
		conf, err := deploy.RenderSentinel(deploy.SentinelConfig{
			Port:        sp,
			Bind:        "127.0.0.1",
			Master:      ha.master,
			PrimaryHost: host,
			PrimaryPort: primaryPort,
		})
		if err == nil {
			err = os.MkdirAll(s.dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(s.confPath(), conf, 0o644)
		}
		if err != nil {
			testenv.ReleasePort(sp)
			return nil, fmt.Errorf("cluster: %s: %w", s.name, err)
		}
		ha.sentinels = append(ha.sentinels, s)
		if err := s.start(ctx); err != nil {
			return nil, err
		}
	}
	for _, s := range ha.sentinels {
		if err := ha.waitAware(ctx, s); err != nil {
			return nil, err
		}
	}
	return ha, nil
}

// waitAware waits until s knows the replica (up) and both other sentinels.
func (ha *RedisHA) waitAware(ctx context.Context, s *Sentinel) error {
	return s.p.WaitUntil(ctx, s.name+" knows the replica and the other sentinels", func(ctx context.Context) error {
		replicas, err := sentinelTable(ctx, s.Addr(), "REPLICAS", ha.master)
		if err != nil {
			return err
		}
		if len(replicas) != 1 || strings.Contains(replicas[0]["flags"], "down") || strings.Contains(replicas[0]["flags"], "disconnected") {
			return fmt.Errorf("replicas %v", replicas)
		}
		others, err := sentinelTable(ctx, s.Addr(), "SENTINELS", ha.master)
		if err != nil {
			return err
		}
		if len(others) != sentinelCount-1 {
			return fmt.Errorf("knows %d other sentinels", len(others))
		}
		return nil
	})
}

// waitReplicating waits until r is a replica whose link to its primary is up.
func (ha *RedisHA) waitReplicating(ctx context.Context, r *Redis) error {
	return r.Process().WaitUntil(ctx, r.Name()+" replicates its primary", func(ctx context.Context) error {
		info, err := proc.RedisCommand(ctx, r.Addr(), "INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			return errors.New("not a connected replica")
		}
		return nil
	})
}

// MasterName is the name the sentinels monitor the primary under
// (SHOP_REDIS_MASTER).
func (ha *RedisHA) MasterName() string { return ha.master }

// SentinelAddrs are the sentinels' host:port (SHOP_REDIS_SENTINELS).
func (ha *RedisHA) SentinelAddrs() []string {
	var addrs []string
	for _, s := range ha.sentinels {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// Servers are the Redis servers, redis-a (the first primary) and redis-b.
func (ha *RedisHA) Servers() []*Redis { return slices.Clone(ha.servers) }

// ProxyAddr is the address through which everyone reaches r: what Sentinel
// announces for it.
func (ha *RedisHA) ProxyAddr(r *Redis) string {
	if i := slices.Index(ha.servers, r); i >= 0 {
		return ha.proxies[i]
	}
	return ""
}

// Primary asks the sentinels which server is the primary now.
func (ha *RedisHA) Primary(ctx context.Context) (*Redis, error) {
	var errs []error
	for _, s := range ha.sentinels {
		addr, err := sentinelMaster(ctx, s.Addr(), ha.master)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i := slices.Index(ha.proxies, addr); i >= 0 {
			return ha.servers[i], nil
		}
		return nil, fmt.Errorf("cluster: %s names primary %s, which is none of ours", s.name, addr)
	}
	return nil, fmt.Errorf("cluster: no sentinel answered: %w", errors.Join(errs...))
}

// KillPrimary sends SIGKILL to the server the sentinels call primary, as a
// crash would, and returns it.
func (ha *RedisHA) KillPrimary(ctx context.Context) (*Redis, error) {
	p, err := ha.Primary(ctx)
	if err != nil {
		return nil, err
	}
	return p, p.Kill()
}

// WaitFailover waits until every sentinel names a primary other than old and
// that server answers ROLE as a master: the failover is over.
func (ha *RedisHA) WaitFailover(ctx context.Context, old *Redis) (*Redis, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		p, err := ha.agreedPrimary(ctx)
		if err == nil && p != old {
			role, rerr := redisRole(ctx, p.Addr())
			if rerr == nil && role == "master" {
				return p, nil
			}
			err = fmt.Errorf("%s answers ROLE %q (%v)", p.Name(), role, rerr)
		} else if err == nil {
			err = fmt.Errorf("the sentinels still name %s", old.Name())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: no failover: %w", err)
		case <-time.After(proc.PollInterval):
		}
	}
}

// agreedPrimary is the primary when every sentinel names the same one.
func (ha *RedisHA) agreedPrimary(ctx context.Context) (*Redis, error) {
	var first string
	for _, s := range ha.sentinels {
		addr, err := sentinelMaster(ctx, s.Addr(), ha.master)
		if err != nil {
			return nil, err
		}
		if first == "" {
			first = addr
		} else if addr != first {
			return nil, fmt.Errorf("sentinels disagree: %s and %s", first, addr)
		}
	}
	i := slices.Index(ha.proxies, first)
	if i < 0 {
		return nil, fmt.Errorf("primary %s is none of ours", first)
	}
	return ha.servers[i], nil
}

// WaitReplica waits until r (typically a demoted primary, restarted) is a
// replica again with its link to the primary up.
func (ha *RedisHA) WaitReplica(ctx context.Context, r *Redis) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error // why the last complete poll said no
	for {
		info, err := proc.RedisCommand(ctx, r.Addr(), "INFO", "replication")
		switch {
		case err != nil:
		case !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") || !strings.Contains(info, "master_sync_in_progress:0"):
			err = fmt.Errorf("it reports %s", replicationFields(info))
		default:
			// The replica's side is up; WAIT counts it only once the
			// primary has it online, which after a diskless sync waits for
			// the replica's first ACK (up to a second later).
			if err = ha.onlineAtPrimary(ctx, r); err == nil {
				return nil
			}
		}
		if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			// The poll that met the deadline says only that: report the
			// one before it, and what everyone reports now, so that a
			// failure explains itself.
			return fmt.Errorf("cluster: %s is not a replica after 30s: %v; now %s", r.Name(), last, ha.replicationReport(r))
		case <-time.After(proc.PollInterval):
		}
	}
}

// replicationFields picks from an INFO replication reply what says whether
// a server replicates: its role and, for a replica, its primary and link.
func replicationFields(info string) string {
	var fields []string
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "role", "master_host", "master_port", "master_link_status", "master_sync_in_progress",
			"master_link_down_since_seconds", "connected_slaves":
			fields = append(fields, k+":"+v)
		default:
			if strings.HasPrefix(k, "slave") && k != "slave_read_only" && !strings.HasPrefix(k, "slave_repl") && k != "slave_priority" {
				fields = append(fields, k+":"+v)
			}
		}
	}
	return strings.Join(fields, " ")
}

// replicationReport says what every party reports about replication now:
// each server's INFO replication, each sentinel's primary and its flags for
// r, and the end of r's log. It is for an error after a wait ran out, so it
// has a context of its own.
func (ha *RedisHA) replicationReport(r *Redis) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var b strings.Builder
	for i, s := range ha.servers {
		fmt.Fprintf(&b, "\n  %s (%s, proxy %s, running %t): ", s.Name(), s.Addr(), ha.proxies[i], s.Running())
		if info, err := proc.RedisCommand(ctx, s.Addr(), "INFO", "replication"); err != nil {
			fmt.Fprintf(&b, "INFO: %v", err)
		} else {
			b.WriteString(replicationFields(info))
		}
	}
	for _, s := range ha.sentinels {
		fmt.Fprintf(&b, "\n  %s: ", s.name)
		addr, err := sentinelMaster(ctx, s.Addr(), ha.master)
		if err != nil {
			fmt.Fprintf(&b, "primary: %v", err)
			continue
		}
		fmt.Fprintf(&b, "primary %s", addr)
		if i := slices.Index(ha.proxies, addr); i >= 0 {
			fmt.Fprintf(&b, " (%s)", ha.servers[i].Name())
		}
		replicas, err := sentinelTable(ctx, s.Addr(), "REPLICAS", ha.master)
		if err != nil {
			fmt.Fprintf(&b, ", replicas: %v", err)
			continue
		}
		flags := "not listed"
		for _, m := range replicas {
			if m["ip"]+":"+m["port"] == ha.ProxyAddr(r) {
				flags = fmt.Sprintf("flags %q, link %s", m["flags"], m["master-link-status"])
			}
		}
		fmt.Fprintf(&b, ", %s %s", r.Name(), flags)
	}
	b.WriteString(proc.FormatTail(r.LogPath()))
	return b.String()
}

// onlineAtPrimary reports whether the primary the sentinels name lists r
// (by its announced proxy port or its own) as an online replica.
func (ha *RedisHA) onlineAtPrimary(ctx context.Context, r *Redis) error {
	p, err := ha.Primary(ctx)
	if err != nil {
		return err
	}
	info, err := proc.RedisCommand(ctx, p.Addr(), "INFO", "replication")
	if err != nil {
		return err
	}
	_, proxyPort, _ := strings.Cut(ha.ProxyAddr(r), ":")
	_, ownPort, _ := strings.Cut(r.Addr(), ":")
	for _, port := range []string{proxyPort, ownPort} {
		if strings.Contains(info, "port="+port+",state=online") {
			return nil
		}
	}
	return fmt.Errorf("%s is not an online replica of %s yet", r.Name(), p.Name())
}

// StartStopped starts every server that is not running as a replica of the
// current primary and waits until it replicates: a demoted primary brought
// back by an operator who knows the topology. (Started bare, it would come
// back still believing it is the primary until Sentinel demotes it, about
// 15 s here; redisha's tests cover that window.)
func (ha *RedisHA) StartStopped(ctx context.Context) error {
	primary, err := ha.Primary(ctx)
	if err != nil {
		return err
	}
	if !primary.Running() {
		// The sentinels still name the server that is down: the failover
		// is not over (on a loaded machine it can take longer than a
		// script's sleep). Started now it would replicate from itself, and
		// the writes the promoted replica takes meanwhile would be thrown
		// away when it is told to follow: wait for the promotion first.
		if primary, err = ha.WaitFailover(ctx, primary); err != nil {
			return err
		}
	}
	host, port, _ := strings.Cut(ha.ProxyAddr(primary), ":")
	for _, r := range ha.servers {
		if r.Running() {
			continue
		}
		// A later directive wins over one Sentinel may have rewritten.
		f, err := os.OpenFile(r.ConfPath(), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", r.Name(), err)
		}
		_, err = fmt.Fprintf(f, "replicaof %s %s\n", host, port)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", r.Name(), err)
		}
		err = r.Start(ctx)
		if errors.Is(err, proc.ErrAddrInUse) {
			err = ha.startElsewhere(ctx, r)
		}
		if err != nil {
			return err
		}
		if err := ha.WaitReplica(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// startElsewhere starts r on another port, for a server whose port another
// process took while it was down (FreePort draws from one range for every
// test binary on the machine). Everyone reaches it through its proxy, which
// is pointed at the new port: the address Sentinel knows does not change.
func (ha *RedisHA) startElsewhere(ctx context.Context, r *Redis) error {
	i := slices.Index(ha.servers, r)
	if i < 0 {
		return fmt.Errorf("cluster: %s is none of the tier's servers", r.Name())
	}
	if err := r.Move(); err != nil {
		return err
	}
	_, port, _ := strings.Cut(ha.proxies[i], ":")
	proxyPort, _ := strconv.Atoi(port)
	if err := ha.net.retarget(proxyPort, r.Addr()); err != nil {
		return err
	}
	return r.Start(ctx)
}

// WaitHealthy waits until every sentinel names the same primary and sees it
// and every other running server (as its replica) up: after a heal or a
// restart, before the next fault.
func (ha *RedisHA) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := ha.healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: sentinels do not see a healthy tier: %w", err)
		case <-time.After(proc.PollInterval):
		}
	}
}

func (ha *RedisHA) healthy(ctx context.Context) error {
	primary, err := ha.agreedPrimary(ctx)
	if err != nil {
		return err
	}
	for _, s := range ha.sentinels {
		m, err := redis.StringMap(redisDoValue(ctx, s.Addr(), "SENTINEL", "MASTER", ha.master))
		if err != nil {
			return err
		}
		if flags := m["flags"]; flags != "master" {
			return fmt.Errorf("%s flags the primary %s %q", s.name, primary.Name(), flags)
		}
		replicas, err := sentinelTable(ctx, s.Addr(), "REPLICAS", ha.master)
		if err != nil {
			return err
		}
		for i, r := range ha.servers {
			if r == primary || !r.Running() {
				continue
			}
			// The replica's own word first: a sentinel's view of a replica
			// may be ten seconds old.
			info, err := proc.RedisCommand(ctx, r.Addr(), "INFO", "replication")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") || !strings.Contains(info, "master_sync_in_progress:0") ||
				!strings.Contains(info, "master_port:"+strings.TrimPrefix(ha.proxies[slices.Index(ha.servers, primary)], "127.0.0.1:")) {
				return fmt.Errorf("%s is not a replica in sync with %s", r.Name(), primary.Name())
			}
			j := slices.IndexFunc(replicas, func(m map[string]string) bool { return m["ip"]+":"+m["port"] == ha.proxies[i] })
			if j < 0 {
				return fmt.Errorf("%s does not know replica %s", s.name, r.Name())
			}
			// Its flags (refreshed by a PING a second), not its link status,
			// which a sentinel reads from INFO only every ten seconds: the
			// replica's own INFO said the link is up.
			if flags := replicas[j]["flags"]; flags != "slave" {
				return fmt.Errorf("%s flags replica %s %q", s.name, r.Name(), flags)
			}
		}
	}
	return nil
}

// Partition cuts the Redis servers off from everyone (replicas, sentinels,
// each other), as a network cut would: connections hang. The sentinels stay
// reachable, see both servers down and cannot promote anything.
func (ha *RedisHA) Partition() error { return ha.net.Partition() }

// Heal ends a partition.
func (ha *RedisHA) Heal() error { return ha.net.Heal() }

// Delay adds d to every exchange with a Redis server; 0 removes it.
func (ha *RedisHA) Delay(d time.Duration) error { return ha.net.Delay(d) }

// Close stops the sentinels, then the servers, then the proxies.
func (ha *RedisHA) Close() error {
	var errs []error
	for _, s := range ha.sentinels {
		errs = append(errs, s.close())
	}
	for _, r := range ha.servers {
		errs = append(errs, r.Close())
	}
	ha.net.close()
	return errors.Join(errs...)
}

// sentinelMaster asks one sentinel for the primary's address.
func sentinelMaster(ctx context.Context, addr, master string) (string, error) {
	reply, err := redisDoValue(ctx, addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master)
	hostPort, err := redis.Strings(reply, err)
	if err != nil {
		return "", err
	}
	if len(hostPort) != 2 {
		return "", fmt.Errorf("sentinel %s: no primary known for %s", addr, master)
	}
	return hostPort[0] + ":" + hostPort[1], nil
}

// sentinelTable asks one sentinel for its REPLICAS or SENTINELS of master,
// one map of fields per entry.
func sentinelTable(ctx context.Context, addr, what, master string) ([]map[string]string, error) {
	rows, err := redis.Values(redisDoValue(ctx, addr, "SENTINEL", what, master))
	if err != nil {
		return nil, err
	}
	var table []map[string]string
	for _, row := range rows {
		m, err := redis.StringMap(row, nil)
		if err != nil {
			return nil, err
		}
		table = append(table, m)
	}
	return table, nil
}

// Role asks the server for its role: "master" or "slave".
func (r *Redis) Role(ctx context.Context) (string, error) { return redisRole(ctx, r.Addr()) }

// redisRole is the first field of ROLE: "master", "slave" or "sentinel".
func redisRole(ctx context.Context, addr string) (string, error) {
	v, err := redis.Values(redisDoValue(ctx, addr, "ROLE"))
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE reply")
	}
	return redis.String(v[0], nil)
}

// redisDoValue sends one command over a fresh connection, bounded by ctx and
// a second, and returns redigo's reply for the typed helpers.
func redisDoValue(ctx context.Context, addr string, cmd string, args ...any) (any, error) {
	c, err := redis.DialContext(ctx, "tcp", addr,
		redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return redis.DoContext(c, ctx, cmd, args...)
}
