package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// redisReadyTimeout bounds the wait for a started Redis to answer PING.
	redisReadyTimeout = 10 * time.Second
	// redisStopTimeout bounds Stop: Redis fsyncs its append-only file on
	// SIGTERM, which takes a moment with a big one.
	redisStopTimeout = 10 * time.Second
)

// Redis is a redis-server that a test started on a free loopback port, with
// its own data directory and append-only persistence: Stop and Start keep
// the data, Kill may lose the last second of writes, Pause stalls it.
type Redis struct {
	tb   testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
}

// StartRedis starts a redis-server for the test and stops it when the test
// ends. It skips (or fails) like Require when redis-server is missing; on a
// failed test it logs the end of Redis's log.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	Require(tb, "redis-server")
	bin, _ := LookBinary("redis-server")
	dir := tb.TempDir()
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			tb.Fatal(err)
		}
		r := &Redis{tb: tb, bin: bin, dir: dir, port: port}
		err = r.Start(tb.Context())
		if err == nil {
			tb.Cleanup(func() {
				if tb.Failed() {
					tb.Logf("--- %s ---\n%s", r.LogPath(), tail(r.LogPath()))
				}
				if err := r.Stop(); err != nil {
					tb.Errorf("stop redis: %v", err)
				}
				ReleasePort(port)
			})
			return r
		}
		r.Kill()
		ReleasePort(port)
		if attempt == 3 || !bytes.Contains(tail(r.LogPath()), []byte("Address already in use")) {
			tb.Fatalf("start redis: %v\n%s", err, tail(r.LogPath()))
		}
	}
}

// Addr is Redis's host:port.
func (r *Redis) Addr() string { return Loopback(r.port) }

// LogPath is the file Redis logs to; restarts append to it.
func (r *Redis) LogPath() string { return filepath.Join(r.dir, "redis.log") }

// Start (re)starts redis-server on the same port with the same data
// directory, which restores what the append-only file holds, and returns
// once it answers PING.
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.running() {
		r.mu.Unlock()
		return fmt.Errorf("testenv: redis %s is already running", r.Addr())
	}
	log, err := os.OpenFile(r.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("testenv: redis: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--appendonly", "yes",
		"--appendfsync", "everysec",
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "",
	)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("testenv: start redis: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, redisReadyTimeout)
	defer cancel()
	for {
		if err := ping(ctx, r.Addr()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("testenv: redis exited before answering PING on %s", r.Addr())
		case <-ctx.Done():
			return fmt.Errorf("testenv: redis does not answer PING on %s: %w", r.Addr(), ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused), which makes Redis
// fsync its append-only file, and waits for the exit; SIGKILL after
// redisStopTimeout is an error. Stopping a stopped Redis does nothing.
func (r *Redis) Stop() error {
	cmd, done := r.current()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
		return nil
	case <-time.After(redisStopTimeout):
		r.Kill()
		return fmt.Errorf("testenv: redis did not exit within %s of SIGTERM; killed", redisStopTimeout)
	}
}

// Kill sends SIGKILL to Redis's process group, as a crash would, and waits
// for the exit.
func (r *Redis) Kill() error {
	cmd, done := r.current()
	if cmd == nil {
		return nil
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return nil
}

// Pause freezes redis-server with SIGSTOP and returns once it is stopped: a
// stalled Redis whose kernel still accepts connections (up to the listen
// backlog) but which answers no command. Resume undoes it.
func (r *Redis) Pause() error {
	cmd, _ := r.current()
	if cmd == nil {
		return errors.New("testenv: pause redis: not running")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("testenv: pause redis: %w", err)
	}
	// kill(2) only queues the signal: without the wait a request sent right
	// after Pause may still be answered.
	deadline := time.Now().Add(2 * time.Second)
	for !ProcessStopped(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			return errors.New("testenv: pause redis: not stopped 2 s after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Resume continues a paused Redis with SIGCONT.
func (r *Redis) Resume() error {
	cmd, _ := r.current()
	if cmd == nil {
		return errors.New("testenv: resume redis: not running")
	}
	return cmd.Process.Signal(syscall.SIGCONT)
}

// current returns the running process, or nil.
func (r *Redis) current() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running() {
		return nil, nil
	}
	return r.cmd, r.done
}

// running reports whether the last started process is alive; r.mu held.
func (r *Redis) running() bool {
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// ping sends PING over a fresh connection and wants +PONG.
func ping(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", buf[:n])
	}
	return nil
}

// tail returns the last few KB of a log file.
func tail(path string) []byte {
	b, _ := os.ReadFile(path)
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return b
}
