package testenv

// PostgreSQL for tests and the harness: Debian's server binaries (not on
// PATH, under /usr/lib/postgresql/<version>/bin), a throwaway cluster made by
// initdb, one server on a free loopback port. PostgreSQL refuses to run as
// root, so as root both initdb and postgres run as the postgres user, with a
// data directory that user owns.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/statelab/shop/internal/proc"
)

const (
	// postgresReadyTimeout bounds the wait for a started server to accept
	// connections (crash recovery after Kill included).
	postgresReadyTimeout = 30 * time.Second
	// postgresStopTimeout bounds Stop's fast shutdown.
	postgresStopTimeout = 10 * time.Second
)

// postgresInstall is what Debian needs to provide the server binaries.
const postgresInstall = "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on PATH; install with: sudo apt-get install -y postgresql"

// PostgresBinDir returns the directory holding initdb and postgres: the
// newest /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else
// the directory of initdb on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: compare the version directory as a number.
	version := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && isExecutable(filepath.Join(filepath.Dir(p), "postgres")) {
		return filepath.Dir(p), nil
	}
	return "", errors.New(postgresInstall)
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// RequirePostgres skips the test when the PostgreSQL server binaries are
// missing, or fails it under SHOP_TEST_REQUIRE=all.
func RequirePostgres(tb testing.TB) {
	tb.Helper()
	if _, err := PostgresBinDir(); err != nil {
		Missing(tb, postgresInstall)
	}
}

// Postgres is a PostgreSQL server on a free loopback port with a data
// directory of its own, made by initdb when it is created. Stop and Start
// keep the data; Kill is a crash (the next Start recovers from the WAL).
type Postgres struct {
	bin     string
	dataDir string
	logPath string
	port    int
	owner   *syscall.Credential // nil: run as ourselves
	durable bool

	mu sync.Mutex
	p  *proc.Process // the current or last run

	databases atomic.Int64 // numbers NewDatabase's names
}

// NewPostgres creates a cluster with initdb and starts its server, logging
// to logPath. The data directory is made in the system's temporary directory
// (as root, owned by the postgres user, which could not enter a test's own
// temporary directory) and removed by Close. durable keeps fsync on, for
// measurements; tests leave it off.
func NewPostgres(ctx context.Context, logPath string, durable bool) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	owner, err := postgresOwner()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "statelab-pg-")
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres: %w", err)
	}
	p := &Postgres{bin: bin, dataDir: dataDir, logPath: logPath, owner: owner, durable: durable}
	if owner != nil {
		if err := os.Chown(dataDir, int(owner.Uid), int(owner.Gid)); err != nil {
			p.Close()
			return nil, fmt.Errorf("testenv: postgres: %w", err)
		}
	}
	initdb, err := proc.Start(p.spec("initdb", filepath.Join(bin, "initdb"),
		"--pgdata", dataDir, "--username", "postgres", "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if code, err := initdb.Wait(ctx); err != nil || code != 0 {
		initdb.Kill()
		p.Close()
		return nil, fmt.Errorf("testenv: initdb exited with status %d (%v)%s", code, err, initdb.Tail())
	}
	for attempt := 1; ; attempt++ {
		if p.port, err = FreePort(); err != nil {
			p.Close()
			return nil, err
		}
		err = p.Start(ctx)
		if err == nil {
			return p, nil
		}
		p.Kill()
		ReleasePort(p.port)
		if attempt == 3 || !strings.Contains(proc.FormatTail(logPath), "could not bind") {
			p.port = 0
			p.Close()
			return nil, err // it quotes the log
		}
	}
}

// postgresOwner returns the credentials to run PostgreSQL with: the postgres
// user's when we are root (the server refuses root), else nil.
func postgresOwner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres refuses to run as root and there is no postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testenv: postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// spec runs bin as the cluster's owner, logging to the server's log: the
// process itself changes user (no setpriv or su in between), so its pid is
// the server's.
func (p *Postgres) spec(name, bin string, args ...string) proc.Spec {
	return proc.Spec{
		Name: name,
		Path: bin,
		Args: args,
		Dir:  os.TempDir(),
		// The locale of the caller (say C.UTF-8 in a container) need not
		// exist for the server; the cluster's own is C.
		Env:        append(os.Environ(), "LC_ALL=C", "LANG=C"),
		LogPath:    p.logPath,
		Credential: p.owner,
	}
}

// Addr is the server's host:port.
func (p *Postgres) Addr() string { return Loopback(p.port) }

// Port is the server's port.
func (p *Postgres) Port() int { return p.port }

// LogPath is the file the server logs to; restarts append to it.
func (p *Postgres) LogPath() string { return p.logPath }

// URL is the postgres:// URL of database on this server, as the superuser
// (trust authentication, no password).
func (p *Postgres) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr(), database)
}

// Start (re)starts the server on the same port and data directory, and
// returns once it accepts connections.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.p != nil && p.p.Running() {
		p.mu.Unlock()
		return fmt.Errorf("testenv: postgres %s is already running", p.Addr())
	}
	args := []string{
		"-D", p.dataDir,
		"-p", strconv.Itoa(p.port),
		"-h", "127.0.0.1",
		"-k", "", // no Unix socket: its default directory may not be writable
		"-c", "max_connections=200",
		// Like SQLite's synchronous=NORMAL in WAL mode: a crash of the
		// machine may lose the last commits, never consistency.
		"-c", "synchronous_commit=off",
	}
	if !p.durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	server, err := proc.Start(p.spec("postgres", filepath.Join(p.bin, "postgres"), args...))
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("testenv: %w", err)
	}
	p.p = server
	p.mu.Unlock()

	// Crash recovery after Kill may take longer than proc's usual wait.
	ctx, cancel := context.WithTimeout(ctx, postgresReadyTimeout)
	defer cancel()
	for {
		err := server.WaitUntil(ctx, "it accepts connections on "+p.Addr(), func(ctx context.Context) error {
			attempt, stop := context.WithTimeout(ctx, time.Second)
			defer stop()
			conn, err := pgconn.Connect(attempt, p.URL("postgres"))
			if err != nil {
				return err
			}
			return conn.Close(ctx)
		})
		if err == nil || !server.Running() || ctx.Err() != nil {
			return err
		}
	}
}

// Stop shuts the server down (fast shutdown: SIGINT, which rolls back open
// transactions and closes connections) and waits for the exit; SIGKILL
// after postgresStopTimeout is an error. Stopping a stopped server does
// nothing.
func (p *Postgres) Stop() error {
	server := p.current()
	if server == nil {
		return nil
	}
	server.Signal(syscall.SIGINT)
	signalServer(server.Pid(), syscall.SIGCONT) // in case it is paused
	select {
	case <-server.Done():
		return nil
	case <-time.After(postgresStopTimeout):
		p.Kill()
		return fmt.Errorf("testenv: postgres did not exit within %s of SIGINT; killed", postgresStopTimeout)
	}
}

// Kill sends SIGKILL to the server and its backends, as a crash would, and
// waits for the exit.
func (p *Postgres) Kill() error {
	server := p.current()
	if server == nil {
		return nil
	}
	signalServer(server.Pid(), syscall.SIGKILL)
	return server.Kill()
}

// signalServer sends sig to the postmaster first (so that it forks no
// more), then to its children: each backend calls setsid(), so a signal to
// the postmaster's process group does not reach them.
func signalServer(pid int, sig syscall.Signal) {
	syscall.Kill(pid, sig)
	kids, _ := proc.Children(pid)
	for child := range kids {
		syscall.Kill(child, sig)
	}
}

// Close stops the server and removes its data directory.
func (p *Postgres) Close() error {
	err := p.Stop()
	if p.port != 0 {
		ReleasePort(p.port)
	}
	return errors.Join(err, os.RemoveAll(p.dataDir))
}

// CreateDatabase creates an empty database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgconn.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	// Identifiers cannot be parameters; name is quoted.
	quoted := `"` + string(bytes.ReplaceAll([]byte(name), []byte(`"`), []byte(`""`))) + `"`
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoted).ReadAll(); err != nil {
		return "", fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	return p.URL(name), nil
}

// NewDatabase creates a database of its own for the test and returns its
// URL. Databases are cheap (a copy of template1); the server's Close
// removes them all.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d", p.databases.Add(1))
	url, err := p.CreateDatabase(tb.Context(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return url
}

// current returns the running server, or nil.
func (p *Postgres) current() *proc.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil || !p.p.Running() {
		return nil
	}
	return p.p
}

// StartPostgres starts a server of the test's own and closes it when the
// test ends; it skips (or fails) like Require when PostgreSQL is missing. For
// the many tests of one package that each need a database, SharedPostgres
// starts one server for all of them.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	RequirePostgres(tb)
	logPath := filepath.Join(tb.TempDir(), "postgres.log")
	p, err := NewPostgres(tb.Context(), logPath, false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(proc.FormatTail(logPath))
		}
		if err := p.Close(); err != nil {
			tb.Errorf("close postgres: %v", err)
		}
	})
	return p
}

// SharedPostgres is one server for a whole test package, started by the
// first test that asks and closed by TestMain:
//
//	var pg testenv.SharedPostgres
//
//	func TestMain(m *testing.M) { code := m.Run(); pg.Close(); os.Exit(code) }
//
// and each test takes a database of its own with pg.NewDatabase(t).
type SharedPostgres struct {
	once sync.Once
	p    *Postgres
	err  error
}

// Get returns the shared server, starting it on first use; it skips (or
// fails) like Require when PostgreSQL is missing.
func (s *SharedPostgres) Get(tb testing.TB) *Postgres {
	tb.Helper()
	RequirePostgres(tb)
	s.once.Do(func() {
		// Not the test's context: the server outlives the first test.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		logPath := filepath.Join(os.TempDir(), fmt.Sprintf("statelab-postgres-%d.log", os.Getpid()))
		s.p, s.err = NewPostgres(ctx, logPath, false)
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.p
}

// NewDatabase returns the URL of a new database on the shared server.
func (s *SharedPostgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	return s.Get(tb).NewDatabase(tb)
}

// Close stops the shared server, if one was started, and removes its data
// and log.
func (s *SharedPostgres) Close() error {
	if s.p == nil {
		return nil
	}
	return errors.Join(s.p.Close(), os.Remove(s.p.logPath))
}

// Pause freezes the server and every backend with SIGSTOP: a stalled
// database whose kernel still accepts connections but which answers
// nothing. Resume undoes it.
func (p *Postgres) Pause() error {
	server := p.current()
	if server == nil {
		return errors.New("testenv: pause postgres: not running")
	}
	signalServer(server.Pid(), syscall.SIGSTOP)
	deadline := time.Now().Add(2 * time.Second)
	pids, _ := proc.Children(server.Pid())
	if pids == nil {
		pids = make(map[int]bool)
	}
	pids[server.Pid()] = true
	for pid := range pids {
		for !proc.Stopped(pid) {
			if time.Now().After(deadline) {
				return errors.New("testenv: pause postgres: not stopped 2 s after SIGSTOP")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// Resume continues a paused server with SIGCONT on its process group.
func (p *Postgres) Resume() error {
	server := p.current()
	if server == nil {
		return errors.New("testenv: resume postgres: not running")
	}
	signalServer(server.Pid(), syscall.SIGCONT)
	return nil
}

// Exec runs statements as the superuser on database, for a test that
// changes the server under a shop (ALTER ROLE, pg_terminate_backend).
func (p *Postgres) Exec(ctx context.Context, database, statements string) error {
	u := p.URL(database)
	conn, err := pgconn.Connect(ctx, u)
	if err != nil {
		return fmt.Errorf("testenv: postgres exec: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, statements).ReadAll(); err != nil {
		return fmt.Errorf("testenv: postgres exec %q: %w", statements, err)
	}
	return nil
}

// PasswordRole creates role, which logs in with password and owns database,
// and returns the URL of database as that role. The cluster trusts every
// other login; this one's password is checked (SCRAM), so that a test can
// change it with ALTER ROLE and see what a shop holding the old one meets.
// role and password are plain words (letters, digits, underscores).
func (p *Postgres) PasswordRole(ctx context.Context, role, password, database string) (string, error) {
	for _, w := range []string{role, password, database} {
		if !plainWord(w) {
			return "", fmt.Errorf("testenv: postgres role: %q is not a plain word", w)
		}
	}
	if err := p.Exec(ctx, "postgres", fmt.Sprintf(
		"CREATE ROLE %s LOGIN PASSWORD '%s'; ALTER DATABASE %s OWNER TO %s", role, password, database, role)); err != nil {
		return "", err
	}
	// The first line that matches a connection decides it: this one goes
	// before initdb's "trust" lines.
	hba := filepath.Join(p.dataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		return "", fmt.Errorf("testenv: postgres role: %w", err)
	}
	line := fmt.Sprintf("host all %s 127.0.0.1/32 scram-sha-256\n", role)
	if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
		return "", fmt.Errorf("testenv: postgres role: %w", err)
	}
	if err := p.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		return "", err
	}
	// The postmaster rereads the file when the signal reaches it: wait
	// until a wrong password is refused.
	wrong := fmt.Sprintf("postgres://%s:not-%s@%s/%s?sslmode=disable", role, password, p.Addr(), database)
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := pgconn.Connect(ctx, wrong)
		if err != nil {
			break
		}
		conn.Close(ctx)
		if time.Now().After(deadline) {
			return "", errors.New("testenv: postgres role: pg_hba.conf not reloaded after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", role, password, p.Addr(), database), nil
}

func plainWord(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
