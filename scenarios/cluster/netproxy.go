package cluster

// The network between the replicas and Redis, as a fault: a TCP proxy in
// front of every Redis server (Shopify's toxiproxy, embedded as a library),
// where the harness cuts the link or adds latency.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/statelab/shop/internal/testenv"
)

// Toxic names: one per fault, so that a fault can be taken back.
const (
	toxicCutUp   = "partition_upstream"
	toxicCutDown = "partition_downstream"
	toxicDelay   = "delay"
)

// redisNet is the link to the Redis servers: one proxy per server. Every
// connection to a server goes through its proxy (the replicas', and with
// Sentinel also the sentinels' and replication's, since the servers
// announce their proxy address), so a partition cuts the servers off from
// everyone.
type redisNet struct {
	srv *toxiproxy.ApiServer

	mu          sync.Mutex
	proxies     []*toxiproxy.Proxy
	ports       []int
	partitioned bool
	delay       time.Duration
}

func newRedisNet() *redisNet {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	return &redisNet{srv: srv}
}

// add starts a proxy to upstream on a free loopback port and returns the
// port. The upstream need not be running yet: the proxy dials it for each
// connection it accepts.
func (n *redisNet) add(name, upstream string) (int, error) {
	for attempt := 1; ; attempt++ {
		port, err := testenv.FreePort()
		if err != nil {
			return 0, err
		}
		p := toxiproxy.NewProxy(n.srv, name, testenv.Loopback(port), upstream)
		err = p.Start()
		if err == nil {
			n.mu.Lock()
			n.proxies = append(n.proxies, p)
			n.ports = append(n.ports, port)
			n.mu.Unlock()
			return port, nil
		}
		testenv.ReleasePort(port)
		if attempt == 3 {
			return 0, fmt.Errorf("cluster: proxy %s: %w", name, err)
		}
	}
}

// retarget points the proxy on port at another upstream, for a server that
// had to start again on another port. Through Update, not by setting
// Upstream: the proxy's accept loop reads that field without a lock, so
// Update stops the loop, changes it and listens again on the same port.
// The server was down: the proxy had no connection to it to lose.
func (n *redisNet) retarget(port int, upstream string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := slices.Index(n.ports, port)
	if i < 0 {
		return fmt.Errorf("cluster: no proxy on port %d", port)
	}
	p := n.proxies[i]
	if err := p.Update(&toxiproxy.Proxy{Name: p.Name, Listen: testenv.Loopback(port), Upstream: upstream, Enabled: true}); err != nil {
		return fmt.Errorf("cluster: proxy %s to %s: %w", p.Name, upstream, err)
	}
	return nil
}

// Partition cuts every Redis server off: open connections stop carrying
// data and new ones are accepted but never answered, as on a real network
// cut (no refusal, no reset). A second Partition does nothing.
func (n *redisNet) Partition() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.partitioned {
		return nil
	}
	for _, p := range n.proxies {
		for _, t := range []struct{ name, stream string }{{toxicCutUp, "upstream"}, {toxicCutDown, "downstream"}} {
			// timeout 0: drop every byte and never close the connection.
			if err := addToxic(p, t.name, "timeout", t.stream, `{"timeout":0}`); err != nil {
				return err
			}
		}
	}
	n.partitioned = true
	return nil
}

// Heal ends a partition: the connections that lived through it are closed
// (their streams lost bytes), new ones work. Healing a healthy link does
// nothing.
func (n *redisNet) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.partitioned {
		return nil
	}
	var errs []error
	for _, p := range n.proxies {
		errs = append(errs, removeToxic(p, toxicCutUp), removeToxic(p, toxicCutDown))
	}
	n.partitioned = false
	return errors.Join(errs...)
}

// Delay adds d to every exchange with Redis (to each reply, so once per
// round trip); 0 takes the delay away. toxiproxy counts in milliseconds.
func (n *redisNet) Delay(d time.Duration) error {
	if d < 0 || (d > 0 && d < time.Millisecond) || d%time.Millisecond != 0 {
		return fmt.Errorf("cluster: delay %s: want 0 or whole milliseconds", d)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, p := range n.proxies {
		if n.delay > 0 {
			errs = append(errs, removeToxic(p, toxicDelay))
		}
		if d > 0 {
			errs = append(errs, addToxic(p, toxicDelay, "latency", "downstream", fmt.Sprintf(`{"latency":%d}`, d.Milliseconds())))
		}
	}
	n.delay = d
	return errors.Join(errs...)
}

// Partitioned reports whether the link is cut.
func (n *redisNet) Partitioned() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.partitioned
}

// close stops every proxy and frees its port.
func (n *redisNet) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, p := range n.proxies {
		p.Stop()
		testenv.ReleasePort(n.ports[i])
	}
	n.proxies, n.ports = nil, nil
}

func addToxic(p *toxiproxy.Proxy, name, typ, stream, attrs string) error {
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		return fmt.Errorf("cluster: proxy %s: add %s: %w", p.Name, name, err)
	}
	return nil
}

func removeToxic(p *toxiproxy.Proxy, name string) error {
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("cluster: proxy %s: remove %s: %w", p.Name, name, err)
	}
	return nil
}
