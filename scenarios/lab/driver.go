package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// Driver is how a scenario reaches a cluster: it brings one up (or finds the
// running one) and injects the faults. Targets are replica names ("shop2")
// or "redis".
type Driver interface {
	// Start makes a cluster of n replicas under cfg serve and returns the
	// URL shoppers use (the load balancer).
	Start(ctx context.Context, n int, cfg Config) (string, error)
	Kill(ctx context.Context, target string) error       // SIGKILL, a crash
	Stop(ctx context.Context, target string) error       // SIGTERM, then wait for the exit
	StartAgain(ctx context.Context, target string) error // start a stopped target and wait until ready
	AddReplica(ctx context.Context) (string, error)      // scale out; returns the new replica's name
	RemoveReplica(ctx context.Context, name string) error
	// LiveReplicas is how many replicas serve now, 0 when unknown.
	LiveReplicas() int
	Close() error
}

// LocalDriver runs the cluster as local processes with the cluster harness:
// the project's real shop binary, nginx and Redis on free ports.
type LocalDriver struct {
	Binary string    // the shop binary; "" builds cmd/shop
	Dir    string    // working directory; "" is a temp dir removed on Close
	Env    []string  // extra KEY=value for every replica (tests use it to break a cluster on purpose)
	AddEnv []string  // extra KEY=value for replicas added by "add replica"
	Stdout io.Writer // optional copy of every process's output

	c *cluster.Cluster
}

// Start starts the cluster.
func (d *LocalDriver) Start(ctx context.Context, n int, cfg Config) (string, error) {
	if d.c != nil {
		return "", errors.New("lab: the cluster is already started")
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Replicas: n,
		Store:    cfg.Store,
		LB:       cfg.LB,
		Lock:     cfg.Lock,
		Binary:   d.Binary,
		Dir:      d.Dir,
		Env:      d.Env,
		Stdout:   d.Stdout,
	})
	if err != nil {
		return "", err
	}
	d.c = c
	return c.URL(), nil
}

func (d *LocalDriver) replica(name string) (*cluster.Replica, error) {
	if d.c == nil {
		return nil, errors.New("lab: no cluster")
	}
	r := d.c.Replica(name)
	if r == nil {
		return nil, fmt.Errorf("lab: no replica %s", name)
	}
	return r, nil
}

func (d *LocalDriver) redis() (*cluster.Redis, error) {
	if d.c == nil || d.c.Redis() == nil {
		return nil, errors.New("lab: this cluster has no Redis (store=memory)")
	}
	return d.c.Redis(), nil
}

// Kill sends SIGKILL.
func (d *LocalDriver) Kill(ctx context.Context, target string) error {
	if target == "redis" {
		r, err := d.redis()
		if err != nil {
			return err
		}
		return r.Kill()
	}
	r, err := d.replica(target)
	if err != nil {
		return err
	}
	return r.Kill()
}

// Stop sends SIGTERM and waits for the exit: a replica drains first.
func (d *LocalDriver) Stop(ctx context.Context, target string) error {
	if target == "redis" {
		r, err := d.redis()
		if err != nil {
			return err
		}
		return r.Stop()
	}
	r, err := d.replica(target)
	if err != nil {
		return err
	}
	if !r.Running() {
		return nil // killed before: "restart" after "kill -9" just starts it
	}
	if err := r.Term(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	code, err := r.Wait(ctx)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("lab: %s exited with status %d after SIGTERM", target, code)
	}
	return nil
}

// StartAgain restarts a stopped or killed target.
func (d *LocalDriver) StartAgain(ctx context.Context, target string) error {
	if target == "redis" {
		r, err := d.redis()
		if err != nil {
			return err
		}
		return r.Start(ctx)
	}
	r, err := d.replica(target)
	if err != nil {
		return err
	}
	return r.Start(ctx)
}

// AddReplica scales out by one replica.
func (d *LocalDriver) AddReplica(ctx context.Context) (string, error) {
	if d.c == nil {
		return "", errors.New("lab: no cluster")
	}
	r, err := d.c.AddReplica(ctx, d.AddEnv...)
	if err != nil {
		return "", err
	}
	return r.Name(), nil
}

// RemoveReplica scales in.
func (d *LocalDriver) RemoveReplica(ctx context.Context, name string) error {
	if d.c == nil {
		return errors.New("lab: no cluster")
	}
	return d.c.RemoveReplica(ctx, name)
}

// LiveReplicas counts the running replicas nginx routes to.
func (d *LocalDriver) LiveReplicas() int {
	if d.c == nil {
		return 0
	}
	n := 0
	for _, r := range d.c.Replicas() {
		if r.Running() {
			n++
		}
	}
	return n
}

// Close stops the cluster.
func (d *LocalDriver) Close() error {
	if d.c == nil {
		return nil
	}
	return d.c.Close()
}
