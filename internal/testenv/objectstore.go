package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersitygwInstall is the command that installs versitygw (make deps runs
// it): it is a Go program, not a Debian package.
const VersitygwInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// objectStoreReadyTimeout bounds the wait for a started versitygw to answer.
const objectStoreReadyTimeout = 10 * time.Second

// LookVersitygw finds the versitygw binary: on PATH, then where go install
// puts it ($GOBIN, each $GOPATH's bin, ~/go/bin), which PATH often lacks.
func LookVersitygw() (string, error) {
	if p, err := LookBinary("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range filepath.SplitList(os.Getenv("GOPATH")) {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if info, err := os.Stat(p); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found on PATH, in $GOBIN or in $GOPATH/bin; install with: %s (or make deps)", VersitygwInstall)
}

// ObjectStore is a versitygw, an S3-compatible object store, serving a
// directory of this machine (its posix backend) on a free loopback port.
// Stop and Start keep the objects; Pause stalls it.
type ObjectStore struct {
	bin     string
	dir     string // the objects; a bucket is a directory in it
	logPath string
	port    int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// The root credentials of every ObjectStore: test values, never secrets.
const (
	ObjectStoreAccessKey = "statelab"
	ObjectStoreSecretKey = "statelab-secret-key"
)

// StartObjectStore starts a versitygw for the test and stops it when the
// test ends. It skips (or fails under SHOP_TEST_REQUIRE=all) naming the
// install command when versitygw is missing; on a failed test it logs the
// end of the store's log.
func StartObjectStore(tb testing.TB) *ObjectStore {
	tb.Helper()
	if _, err := LookVersitygw(); err != nil {
		Missing(tb, err.Error())
		return nil
	}
	dir := tb.TempDir()
	s, err := NewObjectStore(tb.Context(), filepath.Join(dir, "data"), filepath.Join(dir, "versitygw.log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("--- %s ---\n%s", s.logPath, tail(s.logPath))
		}
		if err := s.Close(); err != nil {
			tb.Errorf("stop versitygw: %v", err)
		}
	})
	return s
}

// NewObjectStore starts versitygw keeping its objects in dir (created if
// missing) and logging to logPath, and returns once it answers HTTP. The
// caller Closes it. For the cluster harness and the lab, which run outside
// a test.
func NewObjectStore(ctx context.Context, dir, logPath string) (*ObjectStore, error) {
	bin, err := LookVersitygw()
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: versitygw: %w", err)
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s := &ObjectStore{bin: bin, dir: dir, logPath: logPath, port: port}
		err = s.Start(ctx)
		if err == nil {
			return s, nil
		}
		s.Kill()
		ReleasePort(port)
		if attempt == 3 || !strings.Contains(string(tail(logPath)), "address already in use") {
			return nil, fmt.Errorf("%w\n%s", err, tail(logPath))
		}
	}
}

// Endpoint is the store's URL: http://127.0.0.1:PORT.
func (s *ObjectStore) Endpoint() string { return "http://" + Loopback(s.port) }

// Dir is the directory the objects are kept in: bucket/key.
func (s *ObjectStore) Dir() string { return s.dir }

// LogPath is the file the store logs to; restarts append to it.
func (s *ObjectStore) LogPath() string { return s.logPath }

// Env is what a shop replica needs to use the store with bucket:
// SHOP_UPLOADS and the SHOP_S3_* settings.
func (s *ObjectStore) Env(bucket string) []string {
	return []string{
		"SHOP_UPLOADS=s3://" + bucket,
		"SHOP_S3_ENDPOINT=" + s.Endpoint(),
		"SHOP_S3_ACCESS_KEY=" + ObjectStoreAccessKey,
		"SHOP_S3_SECRET_KEY=" + ObjectStoreSecretKey,
	}
}

// Start (re)starts versitygw on the same port and directory and returns
// once it answers HTTP.
func (s *ObjectStore) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.running() {
		s.mu.Unlock()
		return fmt.Errorf("testenv: versitygw %s is already running", s.Endpoint())
	}
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("testenv: versitygw: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(s.bin, "--port", Loopback(s.port), "posix", s.dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+ObjectStoreAccessKey, "ROOT_SECRET_KEY="+ObjectStoreSecretKey)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("testenv: start versitygw: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, objectStoreReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		// Any HTTP answer (403 to an unsigned request) means it serves.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+"/", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("testenv: versitygw exited before answering on %s", s.Endpoint())
		case <-ctx.Done():
			return fmt.Errorf("testenv: versitygw does not answer on %s: %w", s.Endpoint(), ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused) and waits for the
// exit; SIGKILL after 5 s is an error. Stopping a stopped store does nothing.
func (s *ObjectStore) Stop() error {
	cmd, done := s.current()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		s.Kill()
		return errors.New("testenv: versitygw did not exit within 5s of SIGTERM; killed")
	}
}

// Kill sends SIGKILL to the store's process group and waits for the exit.
func (s *ObjectStore) Kill() error {
	cmd, done := s.current()
	if cmd == nil {
		return nil
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return nil
}

// Pause freezes the store with SIGSTOP and returns once it is stopped: its
// kernel still accepts connections, nothing answers. Resume undoes it.
func (s *ObjectStore) Pause() error {
	cmd, _ := s.current()
	if cmd == nil {
		return errors.New("testenv: pause versitygw: not running")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("testenv: pause versitygw: %w", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !ProcessStopped(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			return errors.New("testenv: pause versitygw: not stopped 2 s after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Resume continues a paused store with SIGCONT.
func (s *ObjectStore) Resume() error {
	cmd, _ := s.current()
	if cmd == nil {
		return errors.New("testenv: resume versitygw: not running")
	}
	return cmd.Process.Signal(syscall.SIGCONT)
}

// Close stops the store and gives its port back.
func (s *ObjectStore) Close() error {
	err := s.Stop()
	ReleasePort(s.port)
	return err
}

func (s *ObjectStore) current() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil, nil
	}
	return s.cmd, s.done
}

// running reports whether the last started process is alive; s.mu held.
func (s *ObjectStore) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}
