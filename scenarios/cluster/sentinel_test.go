package cluster

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/statelab/shop/internal/testenv"
)

// StartRedisHAT is tested here without a shop: the topology itself must
// fail over, cut and delay as the lab says, or no shop test can be read.
func TestRedisHA(t *testing.T) {
	t.Parallel()
	testenv.Require(t, "redis-server")
	dir := t.TempDir()
	ctx := t.Context()
	ha, err := startRedisHA(ctx, dir, nil)
	if err != nil {
		logTails(t, dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, dir)
		}
		if err := ha.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	primary, err := ha.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if primary != ha.Servers()[0] {
		t.Fatalf("primary is %s, want redis-a", primary.Name())
	}
	through := ha.ProxyAddr(primary)
	redisMust(t, through, "SET", "statelab:ha", "kept")

	t.Run("delay", func(t *testing.T) {
		if err := ha.Delay(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		redisMust(t, through, "PING")
		if took := time.Since(start); took < 20*time.Millisecond {
			t.Errorf("PING through a 20 ms delay took %s", took)
		}
		if err := ha.Delay(0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("partition hangs, heal recovers", func(t *testing.T) {
		if err := ha.Partition(); err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialTimeout("tcp", through, time.Second)
		if err != nil {
			t.Fatalf("dial through a partition: %v; want a connection that hangs, not a refusal", err)
		}
		conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
		conn.Write([]byte("PING\r\n"))
		var buf [16]byte
		n, err := conn.Read(buf[:])
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("read through a partition: %q, %v; want a timeout", buf[:n], err)
		}
		conn.Close()
		if err := ha.Heal(); err != nil {
			t.Fatal(err)
		}
		if got := redisMust(t, through, "GET", "statelab:ha"); got != "kept" {
			t.Errorf("GET after heal = %q", got)
		}
	})

	t.Run("kill -9 of the primary fails over", func(t *testing.T) {
		// The partition above made the sentinels see both servers down:
		// let them see the servers up before killing.
		start := time.Now()
		if err := ha.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("healthy %s after heal", time.Since(start).Round(time.Millisecond))
		old, err := ha.KillPrimary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		next, err := ha.WaitFailover(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sentinels promoted %s %s after kill -9 of %s", next.Name(), time.Since(start).Round(time.Millisecond), old.Name())
		if got := redisMust(t, ha.ProxyAddr(next), "GET", "statelab:ha"); got != "kept" {
			t.Errorf("GET on the new primary = %q", got)
		}
	})
}
