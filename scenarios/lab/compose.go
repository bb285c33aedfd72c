package lab

import (
	"context"
	"fmt"
	"os"
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
	// Getenv reads the environment docker compose will run in; nil is
	// os.Getenv.
	Getenv func(string) string

	profile string // the lab's -profile, from Start
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
	return append(append(argv, strings.Fields(verb)...), service)
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
func (d *ComposeDriver) Start(ctx context.Context, s Setup) (string, error) {
	d.profile = s.Config.Profile
	return d.URL, nil
}

// composeVerbs maps a fault to the docker compose command that does it.
var composeVerbs = map[string]string{
	"kill":   "kill",    // SIGKILL
	"stop":   "stop",    // SIGTERM, then the exit
	"start":  "start",   // start a stopped service
	"pause":  "pause",   // the cgroup freezer: a hung process
	"resume": "unpause", // and back
	// A new container in the old one's place, with its own empty
	// filesystem (a shop's /uploads), after a kill: the replacement.
	"replace": "up -d --wait --force-recreate --no-deps",
}

// CheckFault says whether docker compose can do f.
func (d *ComposeDriver) CheckFault(f Fault) error {
	switch {
	case composeVerbs[f.Do] == "":
		return unsupported("compose", f, "edit the compose file and nginx config to scale")
	case f.Drain.Set:
		return unsupported("compose", f, "a service's drain is SHOP_DRAIN in the compose file")
	case f.Target == "redis primary":
		return unsupported("compose", f, "ask a sentinel which service is the primary and name it")
	}
	return nil
}

// Fault runs `docker compose VERB SERVICE`.
func (d *ComposeDriver) Fault(ctx context.Context, f Fault) error {
	if err := d.CheckFault(f); err != nil {
		return err
	}
	if f.Do == "replace" {
		// docker compose up interpolates the file again from this
		// process's environment: without the variables the cluster was
		// started with, the new shop would quietly run another profile.
		getenv := d.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if got := getenv("SHOP_PROFILE"); d.profile != "" && got != d.profile {
			return fmt.Errorf("lab: replace %s: docker compose recreates it from the variables it reads now, and SHOP_PROFILE is %q here, not %s: run the lab with the variables compose was started with (docker-compose.yml's header)",
				f.Target, got, d.profile)
		}
		if err := d.run(ctx, composeVerbs["kill"], f.Target); err != nil {
			return err
		}
	}
	return d.run(ctx, composeVerbs[f.Do], f.Target)
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
// against the URL, and a script with a fault step fails before it starts.
type NoFaults struct{ URL string }

// Start returns the URL.
func (d NoFaults) Start(context.Context, Setup) (string, error) { return d.URL, nil }

// CheckFault refuses every fault.
func (NoFaults) CheckFault(f Fault) error {
	return unsupported("none", f, "with -target there is no fault driver unless you choose one: -driver goreman (make cluster) or -driver compose")
}

// Fault refuses every fault.
func (d NoFaults) Fault(_ context.Context, f Fault) error { return d.CheckFault(f) }

// LiveReplicas is unknown; the judge assumes the default three.
func (NoFaults) LiveReplicas() int { return 3 }

// Close does nothing.
func (NoFaults) Close() error { return nil }
