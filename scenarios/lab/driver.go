package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// Driver is how a scenario reaches a cluster: it brings one up (or finds the
// running one) and does what the fault steps ask. A driver that cannot do a
// fault answers an error wrapping errors.ErrUnsupported.
type Driver interface {
	// Start makes a cluster serve as the setup says and returns the URL
	// shoppers use (the load balancer).
	Start(ctx context.Context, s Setup) (string, error)
	// Fault does one thing to one part of the cluster and returns when it
	// is done: a stopped process has exited, a started one is ready.
	Fault(ctx context.Context, f Fault) error
	// LiveReplicas is how many replicas serve now, 0 when unknown.
	LiveReplicas() int
	Close() error
}

// Setup is what "start N replicas" asks of a driver.
type Setup struct {
	Replicas int
	Config   Config
	// Drains are the drains the script's stop steps ask for, by replica
	// name: a replica's drain is fixed when it starts.
	Drains map[string]time.Duration
	// Needs is what the script's steps declare they need: a proxy between
	// the replicas and Redis when a step cuts or slows that link.
	Needs Needs
}

// Fault is one thing done to one part of the cluster: the verb of a step
// form (steps.go) and its target.
type Fault struct {
	Do     string        // "kill", "stop", "start", "pause", "resume", "replace", "add", "remove", "partition", "heal", "delay"
	Target string        // a replica name ("shop2"), "redis" or "redis primary"
	Drain  Drain         // for stop: the drain the step asked for
	Delay  time.Duration // for delay: added to every exchange with Redis; 0 takes it away
	Keys   []string      // for rekey: names of the session keys, the sealing one first
}

// String is "stop shop2 with drain 2s", "delay redis 2ms".
func (f Fault) String() string {
	s := strings.TrimSpace(f.Do + " " + f.Target)
	if f.Drain.Set {
		s += " " + f.Drain.String()
	}
	if f.Do == "delay" {
		if f.Delay == 0 {
			s += " off"
		} else {
			s += " " + f.Delay.String()
		}
	}
	return s
}

// FaultChecker is what a driver may also offer: say before the run whether
// it can do a fault at all, so a script it cannot run fails before any
// load starts. Target is "" when only the run will know it ("replica of
// alice"); the answer wraps errors.ErrUnsupported when it cannot.
type FaultChecker interface {
	CheckFault(f Fault) error
}

// EventTeller is what a driver may also offer: it tells what the cluster
// did by itself (nginx dropping a replica that turned not-ready), for the
// story and the timeline.
type EventTeller interface {
	TellEvents(func(text string))
}

// unsupported is the error of a driver that cannot do a fault.
func unsupported(driver string, f Fault, why string) error {
	if why != "" {
		why = ": " + why
	}
	return fmt.Errorf("the %s driver cannot %s%s: %w", driver, f, why, errors.ErrUnsupported)
}

// LocalDriver runs the cluster as local processes with the cluster harness:
// the project's real shop binary, nginx and Redis on free ports. It does
// every fault the step table has a Local for.
type LocalDriver struct {
	Binary string    // the shop binary; "" builds cmd/shop
	Dir    string    // working directory; "" is a temp dir removed on Close
	Env    []string  // extra KEY=value for every replica (tests use it to break a cluster on purpose)
	AddEnv []string  // extra KEY=value for replicas added by "add replica"
	Stdout io.Writer // optional copy of every process's output
	// Database is the replicas' database: "sqlite" (default) or
	// "postgres" (cluster.Options.Database).
	Database string

	c      *cluster.Cluster
	drains map[string]time.Duration
	tell   func(string)
	// watchers are goroutines that wait for the cluster to do something by
	// itself (a Sentinel promotion); Close ends them first.
	watchers  sync.WaitGroup
	stopWatch context.CancelFunc
	watchCtx  context.Context
	// keySalt makes this run's session key secrets: a key name the script
	// uses ("old", "new") is the same secret throughout one run only.
	keySalt string
}

// sessionKeys is SHOP_SESSION_KEYS for key names: a secret per name.
func (d *LocalDriver) sessionKeys(names ...string) string {
	secrets := make([]string, len(names))
	for i, n := range names {
		secrets[i] = n + "-" + d.keySalt
	}
	return strings.Join(secrets, ",")
}

// Start starts the cluster.
func (d *LocalDriver) Start(ctx context.Context, s Setup) (string, error) {
	if d.c != nil {
		return "", errors.New("lab: the cluster is already started")
	}
	d.drains = s.Drains
	salt := make([]byte, 24)
	rand.Read(salt)
	d.keySalt = hex.EncodeToString(salt)
	env := slices.Clone(d.Env)
	if s.Config.Wait != "" {
		env = append([]string{"SHOP_REDIS_WAIT_REPLICAS=" + s.Config.Wait}, env...)
	}
	// With a profile the replicas get -profile and only the settings
	// the configuration sets otherwise: the profile does the rest, as
	// it would in production.
	own := func(key, value string) bool {
		return value != "" && profiles[s.Config.Profile][key] != value
	}
	if own("live", s.Config.Live) {
		env = append([]string{"SHOP_LIVE=" + s.Config.Live}, env...)
	}
	switch s.Config.Cache {
	case "on":
		env = append([]string{"SHOP_SESSION_CACHE=on"}, env...)
	case "uninvalidated":
		env = append([]string{"SHOP_SESSION_CACHE=on", "SHOP_SESSION_CACHE_INVALIDATION=off"}, env...)
	}
	// Background work in a lab cluster: jobs and schedule as configured,
	// a job delay long enough for a kill to land mid-job, and a report
	// period short enough that a run sees several.
	env = append([]string{"SHOP_JOB_DELAY=" + LabJobDelay.String(), "SHOP_REPORT_EVERY=" + LabReportEvery.String()}, env...)
	if own("jobs", s.Config.Jobs) {
		env = append([]string{"SHOP_JOBS=" + s.Config.Jobs}, env...)
	}
	if own("schedule", s.Config.Schedule) {
		env = append([]string{"SHOP_SCHEDULE=" + s.Config.Schedule}, env...)
	}
	lb, noRetry := s.Config.LB, false
	if lb == "noretry" {
		lb, noRetry = "roundrobin", true
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Replicas: s.Replicas,
		Profile:  s.Config.Profile,
		Store:    s.Config.Store,
		NoRetry:  noRetry,
		Notify:   d.tell,
		// The cluster starts with the key the scripts call old.
		SessionKeys: d.sessionKeys("old"),
		LB:          lb,
		Lock:        s.Config.Lock,
		Sentinel:    s.Config.Redis == "sentinel",
		RedisProxy:  s.Needs.RedisProxy,
		Binary:      d.Binary,
		Dir:         d.Dir,
		Env:         env,
		ReplicaEnv:  d.drainEnv,
		Database:    d.Database,
		Uploads:     s.Config.Uploads,
		Stdout:      d.Stdout,
	})
	if err != nil {
		return "", err
	}
	d.c = c
	return c.URL(), nil
}

// watch runs f until it returns or the driver closes.
func (d *LocalDriver) watch(f func(ctx context.Context)) {
	if d.watchCtx == nil {
		d.watchCtx, d.stopWatch = context.WithCancel(context.Background())
	}
	d.watchers.Go(func() { f(d.watchCtx) })
}

// TellEvents makes the cluster's own events (readiness, with lb=noretry)
// reach tell.
func (d *LocalDriver) TellEvents(tell func(string)) { d.tell = tell }

// drainEnv is the environment that gives a replica the drain the script
// asks of it.
func (d *LocalDriver) drainEnv(name string) []string {
	dr, ok := d.drains[name]
	if !ok {
		return nil
	}
	return []string{"SHOP_DRAIN=" + dr.String()}
}

// Fault does f with the step table's Local for its verb.
func (d *LocalDriver) Fault(ctx context.Context, f Fault) error {
	if d.c == nil {
		return errors.New("lab: no cluster")
	}
	for _, form := range steps {
		if form.Verb == f.Do && form.Local != nil {
			return form.Local(ctx, d, f)
		}
	}
	return unsupported("local", f, "no step form does it")
}

// onTarget runs the Redis or the replica function for f's target. With
// redis=sentinel, "redis primary" is the server the sentinels name now;
// "redis" is the whole tier only for start (every server that is down).
func (d *LocalDriver) onTarget(f Fault, onRedis func(*cluster.Redis) error, onReplica func(*cluster.Replica) error) error {
	if ha := d.c.RedisHA(); ha != nil && strings.HasPrefix(f.Target, "redis") {
		if f.Target != "redis primary" {
			return fmt.Errorf(`lab: with redis=sentinel, %s needs a server: "%s redis primary"`, f.Do, f.Do)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := ha.Primary(ctx)
		if err != nil {
			return err
		}
		return onRedis(p)
	}
	if f.Target == "redis primary" {
		return errors.New("lab: only redis=sentinel has a primary: write redis")
	}
	if f.Target == "redis" {
		r := d.c.Redis()
		if r == nil {
			return errors.New("lab: this cluster has no Redis (store=memory)")
		}
		return onRedis(r)
	}
	r := d.c.Replica(f.Target)
	if r == nil {
		return fmt.Errorf("lab: no replica %s", f.Target)
	}
	return onReplica(r)
}

// stopReplica sends SIGTERM and waits for the exit: the replica drains
// first. A replica killed before is already stopped ("restart" after
// "kill -9" just starts it).
func stopReplica(ctx context.Context, r *cluster.Replica) error {
	if !r.Running() {
		return nil
	}
	if err := r.Term(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 70*time.Second) // the longest drain is 1m
	defer cancel()
	code, err := r.Wait(ctx)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("lab: %s exited with status %d after SIGTERM", r.Name(), code)
	}
	return nil
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
	if d.stopWatch != nil {
		d.stopWatch()
		d.watchers.Wait()
	}
	if d.c == nil {
		return nil
	}
	return d.c.Close()
}
