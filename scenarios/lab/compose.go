package lab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ComposeDriver injects faults into a cluster that docker compose runs (the
// project's compose file: services shop1..shop3, redis, nginx) by shelling
// out to `docker compose kill|stop|start SERVICE`. It does not start the
// cluster: Start returns the URL it was given. It cannot scale.
//
// It is deliberately small and only its commands are tested: the lab's
// machine has no Docker.
type ComposeDriver struct {
	URL      string  // the running cluster's load balancer
	File     string  // compose file; "" lets docker compose find it
	Project  string  // -p; "" lets docker compose choose
	Run      runFunc // runs a command; nil runs it for real
	Replicas int     // how many replicas the compose file runs; 0 means 3
}

// runFunc runs argv and returns its combined output.
type runFunc func(ctx context.Context, argv []string) ([]byte, error)

// command is the argv for one compose verb on one service.
func (d *ComposeDriver) command(verb, service string) []string {
	argv := []string{"docker", "compose"}
	if d.File != "" {
		argv = append(argv, "-f", d.File)
	}
	if d.Project != "" {
		argv = append(argv, "-p", d.Project)
	}
	return append(argv, verb, service)
}

func (d *ComposeDriver) run(ctx context.Context, verb, service string) error {
	run := d.Run
	if run == nil {
		run = func(ctx context.Context, argv []string) ([]byte, error) {
			return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		}
	}
	argv := d.command(verb, service)
	if out, err := run(ctx, argv); err != nil {
		return fmt.Errorf("lab: %s: %v\n%s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start returns the target URL: compose runs the cluster, not the lab.
func (d *ComposeDriver) Start(ctx context.Context, n int, cfg Config) (string, error) {
	return d.URL, nil
}

// Kill is `docker compose kill SERVICE` (SIGKILL).
func (d *ComposeDriver) Kill(ctx context.Context, target string) error {
	return d.run(ctx, "kill", target)
}

// Stop is `docker compose stop SERVICE` (SIGTERM, then the exit).
func (d *ComposeDriver) Stop(ctx context.Context, target string) error {
	return d.run(ctx, "stop", target)
}

// StartAgain is `docker compose start SERVICE`.
func (d *ComposeDriver) StartAgain(ctx context.Context, target string) error {
	return d.run(ctx, "start", target)
}

var errComposeScale = errors.New("lab: the compose driver cannot scale (edit the compose file and nginx config instead)")

// AddReplica is not supported.
func (d *ComposeDriver) AddReplica(ctx context.Context) (string, error) {
	return "", errComposeScale
}

// RemoveReplica is not supported.
func (d *ComposeDriver) RemoveReplica(ctx context.Context, name string) error {
	return errComposeScale
}

// LiveReplicas is the configured replica count: compose is not asked.
func (d *ComposeDriver) LiveReplicas() int {
	if d.Replicas == 0 {
		return 3
	}
	return d.Replicas
}

// Close does nothing: the cluster belongs to compose.
func (d *ComposeDriver) Close() error { return nil }

// NoFaults is the driver for -target without a fault driver: shoppers run
// against the URL, and every fault step fails saying so.
type NoFaults struct{ URL string }

var errNoFaults = errors.New("lab: this run has no fault driver (use -driver compose with -target, or run without -target)")

// Start returns the URL.
func (d NoFaults) Start(context.Context, int, Config) (string, error) { return d.URL, nil }

// Kill fails.
func (NoFaults) Kill(context.Context, string) error { return errNoFaults }

// Stop fails.
func (NoFaults) Stop(context.Context, string) error { return errNoFaults }

// StartAgain fails.
func (NoFaults) StartAgain(context.Context, string) error { return errNoFaults }

// AddReplica fails.
func (NoFaults) AddReplica(context.Context) (string, error) { return "", errNoFaults }

// RemoveReplica fails.
func (NoFaults) RemoveReplica(context.Context, string) error { return errNoFaults }

// LiveReplicas is unknown; the judge assumes the default three.
func (NoFaults) LiveReplicas() int { return 3 }

// Close does nothing.
func (NoFaults) Close() error { return nil }
