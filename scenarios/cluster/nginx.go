package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/statelab/shop/deploy"
	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// nginx is the load balancer in front of the replicas. Its prefix directory
// holds the configuration, error.log, access.log and the temp directories.
type nginx struct {
	dir  string
	bin  string
	out  *proc.Mux
	port int
	cfg  deploy.NginxConfig // what the running master has loaded
	p    *proc.Process
}

func startNginx(ctx context.Context, dir, policy string, noRetry bool, replicas []deploy.Replica, out *proc.Mux) (*nginx, error) {
	bin, err := testenv.LookBinary("nginx")
	if err != nil {
		return nil, fmt.Errorf("cluster: nginx: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: nginx: %w", err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx would switch its workers to "nobody", who may not
		// read the prefix directory.
		user = "root"
	}
	for attempt := 1; ; attempt++ {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		n := &nginx{dir: dir, bin: bin, out: out, port: port, cfg: deploy.NginxConfig{
			Listen:   testenv.Loopback(port),
			Policy:   policy,
			Replicas: replicas,
			User:     user,
			NoRetry:  noRetry,
		}}
		err = n.start(ctx)
		if err == nil {
			return n, nil
		}
		if n.p != nil {
			n.p.Kill()
		}
		testenv.ReleasePort(port)
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == 3 {
			return nil, err
		}
	}
}

func (n *nginx) url() string      { return "http://" + n.cfg.Listen }
func (n *nginx) errorLog() string { return filepath.Join(n.dir, "error.log") }

// args are the command-line arguments that every nginx invocation shares.
func (n *nginx) args() []string {
	return []string{"-p", n.dir, "-c", filepath.Join(n.dir, "nginx.conf"), "-e", n.errorLog(), "-g", "daemon off;"}
}

func (n *nginx) start(ctx context.Context) error {
	if _, err := deploy.WriteNginx(n.dir, n.cfg); err != nil {
		return fmt.Errorf("cluster: nginx: %w", err)
	}
	// stdout and stderr go to the error log too: one file tells the story.
	p, err := proc.Start(proc.Spec{Name: "nginx", Path: n.bin, Args: n.args(), Dir: n.dir, LogPath: n.errorLog(), Out: n.out, Guard: true})
	if err != nil {
		return err
	}
	n.p = p
	return n.waitHealthy(ctx)
}

// waitHealthy waits for nginx's own health location, which involves no
// replica.
func (n *nginx) waitHealthy(ctx context.Context) error {
	u := n.url() + "/nginx-health"
	return n.p.WaitUntil(ctx, "it answers "+u, httpOK(newProbeClient(), u))
}

// reload rewrites the configuration for replicas, checks it with nginx -t,
// sends SIGHUP to the master and waits until every worker of the old
// configuration has exited: from then on no request can reach a replica
// that the old configuration named and the new one does not.
func (n *nginx) reload(ctx context.Context, replicas []deploy.Replica) error {
	cfg := n.cfg
	cfg.Replicas = replicas
	if _, err := deploy.WriteNginx(n.dir, cfg); err != nil {
		return fmt.Errorf("cluster: nginx reload: %w", err)
	}
	test := exec.CommandContext(ctx, n.bin, append([]string{"-t", "-q"}, n.args()...)...)
	if out, err := test.CombinedOutput(); err != nil {
		// Put back what the running master has, so the files tell the truth.
		_, _ = deploy.WriteNginx(n.dir, n.cfg)
		return fmt.Errorf("cluster: nginx -t refused the new configuration: %v\n%s", err, bytes.TrimSpace(out))
	}

	old, err := proc.Children(n.p.Pid())
	if err != nil {
		return fmt.Errorf("cluster: nginx reload: %w", err)
	}
	if err := n.p.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	err = n.p.WaitUntil(ctx, "its workers run the new configuration", func(context.Context) error {
		kids, err := proc.Children(n.p.Pid())
		if err != nil {
			return err
		}
		if len(kids) == 0 {
			return errors.New("no worker yet")
		}
		for pid := range kids {
			if old[pid] {
				return fmt.Errorf("worker %d of the old configuration still runs", pid)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.cfg = cfg
	return n.waitHealthy(ctx)
}

// stop makes nginx exit at once (SIGTERM is nginx's fast shutdown).
func (n *nginx) stop() error { return n.p.Stop(closeGrace) }
