package proc

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
	"time"
)

// VersitygwInstall is the command that installs versitygw (make deps runs
// it): it is a Go program, not a Debian package.
const VersitygwInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// objectStoreStopTimeout bounds Stop and Close.
const objectStoreStopTimeout = 5 * time.Second

// The root credentials of every ObjectStore: test values, never secrets.
const (
	ObjectStoreAccessKey = "statelab"
	ObjectStoreSecretKey = "statelab-secret-key"
)

// LookVersitygw finds the versitygw binary: on PATH, then where go install
// puts it ($GOBIN, each $GOPATH's bin, ~/go/bin, go env GOPATH), which
// PATH often lacks.
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
// directory (its posix backend: a bucket is a directory, an object a file)
// on a free loopback port. Stop and Start keep the objects; Pause stalls it.
type ObjectStore struct {
	bin     string
	dir     string
	logPath string
	port    int
	out     *Mux

	mu sync.Mutex
	p  *Process // the current or last run
}

// StartObjectStore starts versitygw keeping its objects in dir (created if
// missing) and logging to logPath, and returns once it answers HTTP. out,
// when not nil, gets a copy of its output. The caller Closes it.
func StartObjectStore(ctx context.Context, dir, logPath string, out *Mux) (*ObjectStore, error) {
	bin, err := LookVersitygw()
	if err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	if dir, err = filepath.Abs(dir); err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("proc: versitygw: %w", err)
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s := &ObjectStore{bin: bin, dir: dir, logPath: logPath, port: port, out: out}
		err = s.Start(ctx)
		if err == nil {
			return s, nil
		}
		s.Close() // releases the port
		if !errors.Is(err, ErrAddrInUse) || attempt == 3 {
			return nil, err
		}
	}
}

// Endpoint is the store's URL: http://127.0.0.1:PORT.
func (s *ObjectStore) Endpoint() string { return "http://" + Loopback(s.port) }

// Dir is the directory the objects are kept in: BUCKET/KEY.
func (s *ObjectStore) Dir() string { return s.dir }

// LogPath is the file the store logs to; restarts append to it.
func (s *ObjectStore) LogPath() string { return s.logPath }

// Env is what a shop replica needs to keep its photos in bucket:
// SHOP_UPLOADS and the SHOP_S3_* settings.
func (s *ObjectStore) Env(bucket string) []string {
	return []string{
		"SHOP_UPLOADS=s3://" + bucket,
		"SHOP_S3_ENDPOINT=" + s.Endpoint(),
		"SHOP_S3_ACCESS_KEY=" + ObjectStoreAccessKey,
		"SHOP_S3_SECRET_KEY=" + ObjectStoreSecretKey,
	}
}

// Process is the current or last run, nil before the first Start.
func (s *ObjectStore) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Start (re)starts versitygw on the same port and directory and returns
// once it answers HTTP (a 403 to an unsigned request is an answer).
func (s *ObjectStore) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.p != nil && s.p.Running() {
		s.mu.Unlock()
		return fmt.Errorf("proc: versitygw %s is already running", s.Endpoint())
	}
	p, err := Start(Spec{
		Name:    "versitygw",
		Path:    s.bin,
		Args:    []string{"--port", Loopback(s.port), "posix", s.dir},
		Env:     append(os.Environ(), "ROOT_ACCESS_KEY="+ObjectStoreAccessKey, "ROOT_SECRET_KEY="+ObjectStoreSecretKey),
		Dir:     s.dir,
		LogPath: s.logPath,
		Out:     s.out,
	})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.p = p
	s.mu.Unlock()
	client := &http.Client{Timeout: time.Second}
	return p.WaitUntil(ctx, "it answers HTTP on "+s.Endpoint(), func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused) and waits for the
// exit and for the port to refuse connections; SIGKILL after 5 s is an
// error. Stopping a stopped store does nothing.
func (s *ObjectStore) Stop() error {
	p := s.Process()
	if p == nil || !p.Running() {
		return nil
	}
	if err := p.Stop(objectStoreStopTimeout); err != nil {
		return err
	}
	return WaitRefused(Loopback(s.port))
}

// Kill sends SIGKILL to the store's process group and waits for the exit.
func (s *ObjectStore) Kill() error {
	p := s.Process()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Pause freezes the store with SIGSTOP and returns once it is stopped: its
// kernel still accepts connections, nothing answers. Resume undoes it.
func (s *ObjectStore) Pause() error {
	p := s.Process()
	if p == nil {
		return fmt.Errorf("proc: pause versitygw: %w", errNotStarted)
	}
	return p.Pause()
}

// Resume continues a paused store with SIGCONT.
func (s *ObjectStore) Resume() error {
	p := s.Process()
	if p == nil {
		return fmt.Errorf("proc: resume versitygw: %w", errNotStarted)
	}
	return p.Resume()
}

// Close stops the store and releases its port. It may be called more than
// once.
func (s *ObjectStore) Close() error {
	defer ReleasePort(s.port)
	p := s.Process()
	if p == nil {
		return nil
	}
	return p.Stop(objectStoreStopTimeout)
}
