package cluster

// Following readiness, as Kubernetes does with a Service's endpoints: with
// Options.NoRetry nginx never tries another replica, like an L4 balancer
// or kube-proxy, so the cluster itself must take a replica out of nginx
// before it stops. Every ReadinessPeriod it asks each replica's /readyz and
// reloads nginx with the ready ones. A replica that turns not-ready at
// SIGTERM and keeps serving for its drain is out of nginx before it closes
// its listener; one stopped without a drain refuses connections until the
// next look, and each refused request is a failed request.

import (
	"context"
	"slices"
	"strings"
	"time"
)

// ReadinessPeriod is how often a NoRetry cluster asks every replica's
// /readyz: a drain shorter than this (plus a reload) fails requests.
// Kubernetes' default readiness period is 10 s; the lab's is 1 s to keep
// runs short.
const ReadinessPeriod = time.Second

// followReadiness runs until ctx ends.
func (c *Cluster) followReadiness(ctx context.Context) {
	client := newProbeClient()
	client.Timeout = ReadinessPeriod / 2
	tick := time.NewTicker(ReadinessPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		members := slices.Clone(c.replicas)
		c.mu.Unlock()
		var ready []*Replica
		var out []string
		for _, r := range members {
			if httpOK(client, "http://"+r.Addr()+"/readyz")(ctx) == nil {
				ready = append(ready, r)
			} else {
				out = append(out, r.name)
			}
		}
		if len(ready) == 0 {
			// nginx needs one upstream; with none ready, requests fail
			// either way.
			continue
		}
		c.ops.Lock()
		routed := c.nginx.cfg.Replicas
		want := upstreams(ready)
		changed := !slices.Equal(routed, want)
		var err error
		if changed && !c.isClosed() {
			err = c.nginx.reload(ctx, want)
		}
		c.ops.Unlock()
		if !changed || ctx.Err() != nil {
			continue
		}
		if c.o.Notify == nil {
			continue
		}
		var names []string
		for _, r := range ready {
			names = append(names, r.name)
		}
		msg := "nginx routes to " + strings.Join(names, ", ")
		if len(out) > 0 {
			msg += " (not ready: " + strings.Join(out, ", ") + ")"
		}
		if err != nil {
			msg = "nginx could not follow readiness: " + err.Error()
		}
		c.o.Notify(msg)
	}
}
