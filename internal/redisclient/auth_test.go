package redisclient_test

import (
	"errors"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
)

// TestPassword: against a Redis with requirepass, a client without the
// password or with a wrong one fails with ErrAuth (an outage too), named in
// its error; with the password, the pool and a connection of its own
// (Dial, as the near-cache's subscription uses) both work.
func TestPassword(t *testing.T) {
	rs := testenv.StartRedis(t)
	conn, err := redis.Dial("tcp", rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Do("CONFIG", "SET", "requirepass", "s3cret"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Do("CONFIG", "SET", "requirepass", ""); conn.Close() })

	for name, password := range map[string]string{"no password": "", "wrong password": "guess"} {
		rc := redisclient.New(redisclient.Config{Addr: rs.Addr(), Password: password})
		err := rc.Ping(t.Context())
		if !errors.Is(err, redisclient.ErrAuth) || !errors.Is(err, redisclient.ErrUnavailable) {
			t.Errorf("%s: Ping = %v, want ErrAuth and ErrUnavailable", name, err)
		}
		if _, err := rc.Dial(t.Context()); password != "" && !errors.Is(err, redisclient.ErrAuth) {
			t.Errorf("%s: Dial = %v, want ErrAuth", name, err)
		}
		rc.Close()
	}

	cfg, err := redisclient.ParseAddr("redis://:s3cret@" + rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rc := redisclient.New(cfg)
	defer rc.Close()
	if err := rc.Writable(t.Context()); err != nil {
		t.Errorf("with the password from a redis:// address: %v", err)
	}
	own, err := rc.Dial(t.Context())
	if err != nil {
		t.Fatalf("Dial with the password: %v", err)
	}
	defer own.Close()
	if _, err := own.Do("PING"); err != nil {
		t.Errorf("a connection of its own is not logged in: %v", err)
	}
}
