package proc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// TestRedisRestartOnATakenPort: a Redis killed and started again binds the
// port it had, free while it was down. When another Redis took it
// meanwhile, ours exits ("address already in use"), and the other answers
// PING: Start used to take it for ours and return, and the harness then
// read a stranger's INFO (a primary where it had started a replica: "not a
// replica" for 30 s in redis-failover). Start must see that the answer is
// not its process and fail with ErrAddrInUse.
func TestRedisRestartOnATakenPort(t *testing.T) {
	testenv.Require(t, "redis-server")
	bin, _ := proc.LookBinary("redis-server")
	dir := t.TempDir()
	r, err := proc.StartRedis(t.Context(), filepath.Join(dir, "ours"), proc.RedisOptions{Name: "ours"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	other, err := proc.Start(proc.Spec{Name: "other", Path: bin, Dir: dir, LogPath: filepath.Join(dir, "other.log"),
		Args: []string{"--port", strconv.Itoa(r.Port()), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Stop(5 * time.Second) })
	err = other.WaitUntil(t.Context(), "it answers PING", func(ctx context.Context) error {
		_, err := proc.RedisCommand(ctx, r.Addr(), "PING")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	err = r.Start(t.Context())
	if !errors.Is(err, proc.ErrAddrInUse) {
		t.Errorf("Start on a port another Redis holds = %v, want ErrAddrInUse", err)
	}
	if r.Running() {
		t.Error("ours still runs: it cannot have bound its port")
	}
}
