package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/statelab/shop/internal/testenv"
)

// redisStopTimeout bounds Stop: Redis fsyncs its append-only file on SIGTERM,
// which takes a moment with a big one.
const redisStopTimeout = 10 * time.Second

// Redis is a redis-server on a free loopback port with its own data
// directory and append-only persistence, so that Stop and Start keep the
// data while Kill may lose the last second of writes. It runs from a
// configuration file in its directory (redis.conf), which Sentinel rewrites
// when it turns a server into a replica, as in production.
type Redis struct {
	dir  string
	port int
	bin  string
	out  *sharedWriter
	name string   // process name in logs: "redis", "redis-a"
	conf []string // directives added to redis.conf

	mu sync.Mutex
	p  *proc // the current or last run
}

// StartRedis starts redis-server with its data and its log (redis.log) in
// dir and returns once it answers PING.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	return startRedis(ctx, dir, nil, "redis", nil)
}

// startRedis starts a redis-server named name, with conf(port) added to its
// configuration: directives that may depend on the port it got.
func startRedis(ctx context.Context, dir string, out *sharedWriter, name string, conf func(port int) []string) (*Redis, error) {
	bin, err := testenv.LookBinary("redis-server")
	if err != nil {
		return nil, fmt.Errorf("cluster: redis: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: redis: %w", err)
	}
	for attempt := 1; ; attempt++ {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		r := &Redis{dir: dir, port: port, bin: bin, out: out, name: name}
		if conf != nil {
			r.conf = conf(port)
		}
		if err := r.writeConf(); err != nil {
			return nil, err
		}
		err = r.Start(ctx)
		if err == nil {
			return r, nil
		}
		r.Close() // releases the port
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			return nil, err
		}
	}
}

// Addr is Redis's host:port.
func (r *Redis) Addr() string { return testenv.Loopback(r.port) }

// Dir is Redis's data directory.
func (r *Redis) Dir() string { return r.dir }

// Name is the server's name in logs and reports ("redis", "redis-a").
func (r *Redis) Name() string { return r.name }

// confPath is redis.conf in the data directory.
func (r *Redis) confPath() string { return filepath.Join(r.dir, "redis.conf") }

// writeConf writes redis.conf for a new server; restarts reuse it with
// whatever Sentinel rewrote in it.
func (r *Redis) writeConf() error {
	lines := append([]string{
		"port " + strconv.Itoa(r.port),
		"bind 127.0.0.1",
		"dir " + strconv.Quote(r.dir),
		"appendonly yes",
		"appendfsync everysec",
		`save ""`,
		"daemonize no",
		"protected-mode no",
		`logfile ""`,
	}, r.conf...)
	if err := os.WriteFile(r.confPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("cluster: %s: %w", r.name, err)
	}
	return nil
}

// LogPath is the file Redis logs to; restarts append to it.
func (r *Redis) LogPath() string { return filepath.Join(r.dir, "redis.log") }

// Running reports whether the redis-server process is alive.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p != nil && r.p.running()
}

// Start (re)starts redis-server on the same port with the same data
// directory, which restores what the append-only file holds, and returns
// once it answers PING (not while it still loads).
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.p != nil && r.p.running() {
		r.mu.Unlock()
		return fmt.Errorf("cluster: %s %s is already running", r.name, r.Addr())
	}
	p, err := startProc(procSpec{
		name:    r.name,
		path:    r.bin,
		args:    []string{r.confPath()},
		dir:     r.dir,
		logPath: r.LogPath(),
		out:     r.out,
	})
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.p = p
	r.mu.Unlock()
	return waitFor(ctx, p, "it answers PING on "+r.Addr(), func(ctx context.Context) error {
		reply, err := redisDo(ctx, r.Addr(), "PING")
		if err != nil {
			return err
		}
		if reply != "PONG" {
			return fmt.Errorf("PING: %q", reply)
		}
		return nil
	})
}

// Stop sends SIGTERM, which makes Redis fsync its append-only file, waits
// for the exit and for the port to refuse connections. Stopping a stopped
// Redis does nothing.
func (r *Redis) Stop() error {
	p := r.current()
	if p == nil {
		return nil
	}
	if err := p.stop(redisStopTimeout); err != nil {
		return err
	}
	return waitRefused(r.Addr())
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (r *Redis) Kill() error {
	p := r.current()
	if p == nil {
		return nil
	}
	return p.kill()
}

// Pause freezes redis-server with SIGSTOP, a stalled Redis: the kernel still
// accepts connections (up to the listen backlog) but no command is
// answered. Resume undoes it; Stop, Kill and Close work on a paused Redis
// too.
func (r *Redis) Pause() error {
	p := r.current()
	if p == nil {
		return fmt.Errorf("cluster: pause redis: %w", errNotStarted)
	}
	return p.pause()
}

// Resume continues a paused Redis with SIGCONT.
func (r *Redis) Resume() error {
	p := r.current()
	if p == nil {
		return fmt.Errorf("cluster: resume redis: %w", errNotStarted)
	}
	return p.signal(syscall.SIGCONT)
}

// Close stops Redis: SIGTERM, then SIGKILL after a few seconds. It may be
// called more than once.
func (r *Redis) Close() error {
	defer testenv.ReleasePort(r.port)
	p := r.current()
	if p == nil {
		return nil
	}
	return p.stop(closeGrace)
}

func (r *Redis) current() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// waitRefused waits until nothing accepts connections on addr: the kernel
// closes a dead process's sockets, but a child it forked may hold them.
func waitRefused(addr string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s still accepts connections after the process exited", addr)
		}
		time.Sleep(pollInterval)
	}
}

// redisDo sends one command over a fresh connection and returns a simple,
// integer or bulk reply as a string; an error reply is an error. It is all
// the harness needs of the protocol: PING for readiness, and tests that set
// and get a key.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)

	var cmd strings.Builder
	fmt.Fprintf(&cmd, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&cmd, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(cmd.String())); err != nil {
		return "", err
	}

	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redis: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redis: bad bulk length %q", line)
		}
		if n < 0 {
			return "", errRedisNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("redis: unsupported reply %q", line)
	}
}

// errRedisNil is redisDo's answer for a missing key.
var errRedisNil = errors.New("redis: nil")
