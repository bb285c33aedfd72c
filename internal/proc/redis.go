package proc

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
)

// redisStopTimeout bounds Stop and Close: Redis fsyncs its append-only file
// on SIGTERM, which takes a moment with a big one.
const redisStopTimeout = 10 * time.Second

// errNotStarted is returned for a server whose process never ran.
var errNotStarted = errors.New("not started")

// Redis is a redis-server on a free loopback port with its own data
// directory and append-only persistence, so that Stop and Start keep the
// data while Kill may lose the last second of writes, and Pause stalls it.
// It runs from a configuration file in its directory (redis.conf), which
// Sentinel rewrites when it turns a server into a replica, as in production.
type Redis struct {
	dir  string
	port int
	bin  string
	out  *Mux
	name string   // process name in logs: "redis", "redis-a"
	conf []string // directives added to redis.conf

	mu sync.Mutex
	p  *Process // the current or last run
}

// RedisOptions are StartRedis's optional settings.
type RedisOptions struct {
	// Name names the server in logs and errors; "redis" when empty.
	Name string
	// Out gets a copy of the server's output, prefixed with Name.
	Out *Mux
	// Conf returns directives added to redis.conf, which may depend on the
	// port the server got.
	Conf func(port int) []string
}

// StartRedis starts redis-server with its data and its log (redis.log) in
// dir on a free loopback port, and returns once it answers PING. A port
// taken meanwhile by someone else is replaced by another.
func StartRedis(ctx context.Context, dir string, o RedisOptions) (*Redis, error) {
	if o.Name == "" {
		o.Name = "redis"
	}
	bin, err := LookBinary("redis-server")
	if err != nil {
		return nil, fmt.Errorf("proc: %s: %w", o.Name, err)
	}
	dir, err = filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("proc: %s: %w", o.Name, err)
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r := &Redis{dir: dir, port: port, bin: bin, out: o.Out, name: o.Name}
		if o.Conf != nil {
			r.conf = o.Conf(port)
		}
		if err := r.writeConf(); err != nil {
			ReleasePort(port)
			return nil, err
		}
		err = r.Start(ctx)
		if err == nil {
			return r, nil
		}
		r.Close() // releases the port
		if !errors.Is(err, ErrAddrInUse) || attempt == 3 {
			return nil, err
		}
	}
}

// Addr is Redis's host:port.
func (r *Redis) Addr() string { return Loopback(r.Port()) }

// Port is Redis's port.
func (r *Redis) Port() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.port
}

// Dir is Redis's data directory.
func (r *Redis) Dir() string { return r.dir }

// Name is the server's name in logs and reports ("redis", "redis-a").
func (r *Redis) Name() string { return r.name }

// ConfPath is redis.conf in the data directory. A directive appended to it
// wins over an earlier one at the next Start.
func (r *Redis) ConfPath() string { return filepath.Join(r.dir, "redis.conf") }

// LogPath is the file Redis logs to; restarts append to it.
func (r *Redis) LogPath() string { return filepath.Join(r.dir, "redis.log") }

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
	if err := os.WriteFile(r.ConfPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("proc: %s: %w", r.name, err)
	}
	return nil
}

// Process is the current or last run, nil before the first Start.
func (r *Redis) Process() *Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// Running reports whether the redis-server process is alive.
func (r *Redis) Running() bool {
	p := r.Process()
	return p != nil && p.Running()
}

// Start (re)starts redis-server on the same port with the same data
// directory, which restores what the append-only file holds, and returns
// once it answers PING (not while it still loads).
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.p != nil && r.p.Running() {
		r.mu.Unlock()
		return fmt.Errorf("proc: %s %s is already running", r.name, r.Addr())
	}
	p, err := Start(Spec{
		Name:    r.name,
		Path:    r.bin,
		Args:    []string{r.ConfPath()},
		Dir:     r.dir,
		LogPath: r.LogPath(),
		Out:     r.out,
	})
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.p = p
	r.mu.Unlock()
	return p.WaitUntil(ctx, "it answers PING on "+r.Addr(), func(ctx context.Context) error {
		reply, err := RedisCommand(ctx, r.Addr(), "PING")
		if err != nil {
			return err
		}
		if reply != "PONG" {
			return fmt.Errorf("PING: %q", reply)
		}
		return r.isOurs(ctx, p)
	})
}

// isOurs checks that the server answering on r's port is p. A restart
// binds the port the server had, which is free while it is down: another
// process may take it first (this one then exits, "address already in
// use"), and a Redis there answers PING as well. Taken for ours, its
// replies would be read as this server's: a primary where a replica was
// started, someone else's data.
func (r *Redis) isOurs(ctx context.Context, p *Process) error {
	info, err := RedisCommand(ctx, r.Addr(), "INFO", "server")
	if err != nil {
		return err
	}
	pid := ""
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid = v
		}
	}
	if pid != strconv.Itoa(p.Pid()) {
		return fmt.Errorf("%s answers as another process (process_id %q), not %s (pid %d)", r.Addr(), pid, r.name, p.Pid())
	}
	return nil
}

// Move gives a stopped Redis another port for its next Start, for one whose
// port was taken while it was down (Start failed with ErrAddrInUse): a
// later "port" directive in redis.conf wins over the first, and whatever
// Sentinel rewrote there stays. Only a caller that reaches the server
// through something it can point at the new port (a proxy) should move
// it.
func (r *Redis) Move() error {
	if r.Running() {
		return fmt.Errorf("proc: move %s: it is running", r.name)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(r.ConfPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(f, "port %d\n", port)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		ReleasePort(port)
		return fmt.Errorf("proc: move %s: %w", r.name, err)
	}
	r.mu.Lock()
	old := r.port
	r.port = port
	r.mu.Unlock()
	ReleasePort(old)
	return nil
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused), which makes Redis
// fsync its append-only file, and waits for the exit and for the port to
// refuse connections; SIGKILL after 10 s is an error. Stopping a stopped
// Redis does nothing.
func (r *Redis) Stop() error {
	p := r.Process()
	if p == nil || !p.Running() {
		return nil
	}
	if err := p.Stop(redisStopTimeout); err != nil {
		return err
	}
	return WaitRefused(r.Addr())
}

// Kill sends SIGKILL to Redis's process group, as a crash would, and waits
// for the exit.
func (r *Redis) Kill() error {
	p := r.Process()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Pause freezes redis-server with SIGSTOP and returns once it is stopped: a
// stalled Redis whose kernel still accepts connections (up to the listen
// backlog) but which answers no command. Resume undoes it; Stop, Kill and
// Close work on a paused Redis too.
func (r *Redis) Pause() error {
	p := r.Process()
	if p == nil {
		return fmt.Errorf("proc: pause %s: %w", r.name, errNotStarted)
	}
	return p.Pause()
}

// Resume continues a paused Redis with SIGCONT.
func (r *Redis) Resume() error {
	p := r.Process()
	if p == nil {
		return fmt.Errorf("proc: resume %s: %w", r.name, errNotStarted)
	}
	return p.Resume()
}

// Close stops Redis (SIGTERM, SIGKILL after 10 s) and releases its port. It
// may be called more than once.
func (r *Redis) Close() error {
	defer ReleasePort(r.Port())
	p := r.Process()
	if p == nil {
		return nil
	}
	return p.Stop(redisStopTimeout)
}

// WaitRefused waits until nothing accepts connections on addr: the kernel
// closes a dead process's sockets, but a child it forked may hold them.
func WaitRefused(addr string) error {
	deadline := time.Now().Add(ReadyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proc: %s still accepts connections after the process exited", addr)
		}
		time.Sleep(PollInterval)
	}
}

// ErrRedisNil is RedisCommand's answer for a missing key.
var ErrRedisNil = errors.New("redis: nil")

// RedisCommand sends one command over a fresh connection, bounded by ctx
// and a second, and returns a simple, integer or bulk reply as a string; an
// error reply is an error. It is all a supervisor needs of the protocol:
// PING for readiness, INFO to see replication, and tests that set and get a
// key.
func RedisCommand(ctx context.Context, addr string, args ...string) (string, error) {
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
			return "", ErrRedisNil
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
