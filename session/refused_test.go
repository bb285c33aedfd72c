package session_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
)

// TestRefusedWrites: a write Redis refuses (out of memory, read-only,
// wanting a password) is ErrUnavailable, whichever path it takes: a
// session's first write, which holds no lock yet, and every write with the
// lock off. Redis pipelines return such refusals among their replies with
// no error; a store that did not look at each reply answered a refused
// write as saved (issue 22, item 2).
func TestRefusedWrites(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := func(password string, args ...any) {
		t.Helper()
		var opts []redis.DialOption
		if password != "" {
			opts = append(opts, redis.DialPassword(password))
		}
		conn, err := redis.Dial("tcp", r.Addr(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Do(args[0].(string), args[1:]...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	noPrimary, err := testenv.FreePort() // nothing listens: the replica never syncs
	if err != nil {
		t.Fatal(err)
	}
	faults := []struct {
		name    string
		on, off func()
		want    error
	}{
		{"out of memory",
			func() {
				admin("", "CONFIG", "SET", "maxmemory-policy", "noeviction")
				admin("", "CONFIG", "SET", "maxmemory", "1")
			},
			func() { admin("", "CONFIG", "SET", "maxmemory", "0") },
			redisclient.ErrOutOfMemory},
		{"read-only",
			func() { admin("", "REPLICAOF", "127.0.0.1", strconv.Itoa(noPrimary)) },
			func() { admin("", "REPLICAOF", "NO", "ONE") },
			nil},
		{"password required",
			func() { admin("", "CONFIG", "SET", "requirepass", "s3cret") },
			func() { admin("s3cret", "CONFIG", "SET", "requirepass", "") },
			redisclient.ErrAuth},
	}
	stores := []struct {
		name     string
		o        session.Options
		existing bool // write to a session saved before the fault
	}{
		{"first write, lock on", session.Options{Lock: true}, false},
		{"first write, lock off", session.Options{}, false},
		{"write, lock off", session.Options{}, true},
	}
	for _, f := range faults {
		for _, st := range stores {
			t.Run(f.name+"/"+st.name, func(t *testing.T) {
				cookie := ""
				if st.existing {
					before := redisclient.New(redisclient.Config{Addr: r.Addr()})
					defer before.Close()
					cookie = save(t, session.NewRedis(before, st.o), "shop1")
				}
				// A client of its own: no connection that logged in before
				// the fault.
				rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
				defer rc.Close()
				store := session.NewRedis(rc, st.o)
				defer store.Close()
				f.on()
				defer f.off()
				s, err := store.Load(t.Context(), cookie, true)
				if err != nil {
					if st.existing && errors.Is(err, session.ErrUnavailable) {
						return // refused at the read already: nothing was acknowledged
					}
					t.Fatal(err)
				}
				defer s.Release()
				s.Touch("shop2")
				s.SetCart([]byte(`{"v":1,"rev":9,"items":[{"product_id":3,"quantity":1}]}`))
				_, _, err = store.Save(t.Context(), s)
				if !errors.Is(err, session.ErrUnavailable) || (f.want != nil && !errors.Is(err, f.want)) {
					t.Fatalf("Save with Redis refusing writes (%s): %v, want ErrUnavailable (%v)", f.name, err, f.want)
				}
			})
		}
	}
}
