package session_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/internal/testenv"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
)

// fixture is one store under test, with what a test may need to look
// behind it.
type fixture struct {
	store session.Store
	redis *testenv.Redis // nil unless the store keeps sessions in Redis
	db    *store.DB      // the cookie store's epochs
}

// newStore builds a store of kind with the lock as given, observed by obs.
func newStore(t *testing.T, kind string, lock bool, obs session.Observer) fixture {
	t.Helper()
	o := session.Options{Lock: lock, Observer: obs}
	var f fixture
	switch kind {
	case session.Memory:
		f.store = session.NewMemory(o)
	case session.Redis:
		f.redis = testenv.StartRedis(t)
		rc := redisclient.New(redisclient.Config{Addr: f.redis.Addr()})
		t.Cleanup(func() { rc.Close() })
		f.store = session.NewRedis(rc, o)
	case session.Cookie:
		f.db = openDB(t)
		f.store = newCookie(t, f.db, o, key1)
	default:
		// Any other registered kind: built as main builds it.
		k, ok := session.Lookup(kind)
		if !ok {
			t.Fatalf("no store kind %q", kind)
		}
		var err error
		if f.store, err = k.Open(session.Deps{Options: o}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { f.store.Close() })
	return f
}

// forEachStore runs test against every kind of store.
func forEachStore(t *testing.T, test func(t *testing.T, kind string)) {
	for _, kind := range session.Kinds() {
		t.Run(kind, func(t *testing.T) { test(t, kind) })
	}
}

// save stores a first session with a cart and returns its cookie.
func save(t *testing.T, st session.Store, replica string) string {
	t.Helper()
	s, err := st.Load(t.Context(), "", true)
	if err != nil {
		t.Fatal(err)
	}
	s.Touch(replica)
	s.SetCart([]byte(`{"v":1,"rev":1,"items":[{"product_id":1,"quantity":2}]}`))
	cookie, expires, err := st.Save(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if cookie == "" || time.Until(expires) < session.Lifetime-time.Minute {
		t.Fatalf("save: cookie %q, expires %v", cookie, expires)
	}
	return cookie
}

// TestRoundTrip: what a write saves, the next request loads, field by
// field; no cookie, a garbage cookie and an unknown one are each a fresh,
// empty session.
func TestRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		st := newStore(t, kind, true, nil).store
		if st.Kind() != kind {
			t.Errorf("Kind() = %q", st.Kind())
		}
		cookie := save(t, st, "shop1")
		s, err := st.Load(t.Context(), cookie, false)
		if err != nil {
			t.Fatal(err)
		}
		born, at := s.Born()
		if !s.Known() || !s.Sent() || s.SID() == "" || born != "shop1" || at == "" || s.Writer() != "shop1" ||
			string(s.Cart()) != `{"v":1,"rev":1,"items":[{"product_id":1,"quantity":2}]}` || s.Modified() {
			t.Errorf("loaded session: known %v sent %v sid %q born %q %q writer %q cart %s modified %v",
				s.Known(), s.Sent(), s.SID(), born, at, s.Writer(), s.Cart(), s.Modified())
		}
		if id, _ := s.Account(); id != 0 {
			t.Errorf("anonymous session has account %d", id)
		}

		for name, c := range map[string]string{"none": "", "garbage": "<script>", "unknown": strings.Repeat("A", len(cookie))} {
			s, err := st.Load(t.Context(), c, true)
			if err != nil {
				t.Fatalf("%s cookie: %v", name, err)
			}
			if s.Known() || s.SID() != "" || s.Cart() != nil {
				t.Errorf("%s cookie: a session with sid %q cart %s", name, s.SID(), s.Cart())
			}
			s.Release()
		}
	})
}

// TestRenew: a renewed session answers to a new cookie only; what it held
// moves with it.
func TestRenew(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		st := newStore(t, kind, true, nil).store
		old := save(t, st, "shop1")
		s, err := st.Load(t.Context(), old, true)
		if err != nil {
			t.Fatal(err)
		}
		sid := s.SID()
		s.Renew("login")
		s.SetAccount(7, "ada@example.com", 0)
		renewed, _, err := st.Save(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		if renewed == old {
			t.Fatal("Renew kept the cookie")
		}
		s, _ = st.Load(t.Context(), renewed, false)
		if session.TraitsOf(st).Place == session.InBrowser {
			return // no account 7 to read the epoch of; revocation has its own test
		}
		if id, email := s.Account(); id != 7 || email != "ada@example.com" || s.SID() != sid || s.Renewed() != "login" {
			t.Errorf("renewed session: account %d %q sid %q (want %q) renewed %q", id, email, s.SID(), sid, s.Renewed())
		}
		if s, _ := st.Load(t.Context(), old, false); s.Known() {
			t.Error("the old cookie still opens the session after Renew")
		}
	})
}

// TestLockedWrites: concurrent read-modify-write cycles under the lock lose
// nothing, and no lock outlives them; a write that changes nothing frees
// the lock by Release.
func TestLockedWrites(t *testing.T) {
	for _, kind := range []string{session.Memory, session.Redis} {
		t.Run(kind, func(t *testing.T) {
			f := newStore(t, kind, true, nil)
			st := f.store
			cookie := save(t, st, "0")
			const n = 8
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					s, err := st.Load(context.Background(), cookie, true)
					if err != nil {
						t.Error(err)
						return
					}
					defer s.Release()
					s.Touch(s.Writer() + "+")
					if _, _, err := st.Save(context.Background(), s); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			s, err := st.Load(t.Context(), cookie, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Writer(); got != "0"+strings.Repeat("+", n) {
				t.Errorf("after %d locked writes the writer is %q, want one + each", n, got)
			}
			if d := st.Describe(t.Context(), s, "shop1"); !strings.HasPrefix(d.Lock, "free") {
				t.Errorf("after the writes the lock is %q", d.Lock)
			}
			if f.redis != nil {
				conn, err := redis.Dial("tcp", f.redis.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if n, _ := redis.Int(conn.Do("EXISTS", session.LockPrefix+cookie)); n != 0 {
					t.Error("the lock key outlived the writes")
				}
				if ttl, _ := redis.Int64(conn.Do("PTTL", session.KeyPrefix+cookie)); ttl <= 0 || ttl > session.Lifetime.Milliseconds() {
					t.Errorf("session PTTL %d, want its lifetime", ttl)
				}
			}

			// A write that changes nothing: Release frees the lock.
			s, err = st.Load(t.Context(), cookie, true)
			if err != nil {
				t.Fatal(err)
			}
			s.Release()
			s.Release() // twice is harmless
			s, err = st.Load(t.Context(), cookie, true)
			if err != nil {
				t.Fatalf("the lock of a released write is still held: %v", err)
			}
			s.Release()
		})
	}
}

// TestLockTimeout: a write waits at most LockWait for a lock another write
// holds, then gives up with ErrLockTimeout, which the lock's observer sees.
func TestLockTimeout(t *testing.T) {
	for _, kind := range []string{session.Memory, session.Redis} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			obs := &recorder{}
			st := newStore(t, kind, true, obs).store
			cookie := save(t, st, "shop1")
			holder, err := st.Load(t.Context(), cookie, true)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Release()
			if d := st.Describe(t.Context(), holder, "shop1"); !strings.HasPrefix(d.Lock, "held") {
				t.Errorf("while a write holds it the lock is %q", d.Lock)
			}
			if _, err := st.Load(t.Context(), cookie, true); !errors.Is(err, session.ErrLockTimeout) {
				t.Fatalf("second writer: %v, want ErrLockTimeout", err)
			}
			if obs.timeouts() != 1 {
				t.Errorf("%d lock timeouts observed, want 1", obs.timeouts())
			}
			// A read never waits for the lock.
			if _, err := st.Load(t.Context(), cookie, false); err != nil {
				t.Errorf("a read while the lock is held: %v", err)
			}
		})
	}
}

// TestLockOff: with -session-lock off, writes do not wait for each other.
func TestLockOff(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		st := newStore(t, kind, false, nil).store
		cookie := save(t, st, "shop1")
		a, err := st.Load(t.Context(), cookie, true)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release()
		b, err := st.Load(t.Context(), cookie, true)
		if err != nil {
			t.Fatalf("a second write with the lock off: %v", err)
		}
		b.Release()
		want := "off"
		if !session.TraitsOf(st).Locks {
			want = "none" // no lock to turn off
		}
		if d := st.Describe(t.Context(), a, "shop1"); !strings.HasPrefix(d.Lock, want) {
			t.Errorf("lock off described as %q", d.Lock)
		}
	})
}

// TestObserved: every load of a named session is a find, every save a
// commit, every locked load a lock wait.
func TestObserved(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		obs := &recorder{}
		st := newStore(t, kind, true, obs).store
		cookie := save(t, st, "shop1") // no cookie: no find, no lock; one commit
		s, err := st.Load(t.Context(), cookie, true)
		if err != nil {
			t.Fatal(err)
		}
		s.Touch("shop1")
		if _, _, err := st.Save(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		st.Load(t.Context(), cookie, false)
		got := obs.snapshot()
		locks := 1
		if !session.TraitsOf(st).Locks {
			locks = 0 // nothing to lock (a cookie's opening is the find)
		}
		if got["find"] != 2 || got["commit"] != 2 || got["lock"] != locks {
			t.Errorf("observed %v, want 2 finds, 2 commits, %d lock waits", got, locks)
		}
	})
}

// TestRedisDown: a store that does not answer fails fast with
// ErrUnavailable, for reads, locked writes, saves and pings alike.
func TestRedisDown(t *testing.T) {
	f := newStore(t, session.Redis, true, nil)
	cookie := save(t, f.store, "shop1")
	s, err := f.store.Load(t.Context(), cookie, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"read":  func() error { _, err := f.store.Load(t.Context(), cookie, false); return err }(),
		"write": func() error { _, err := f.store.Load(t.Context(), cookie, true); return err }(),
		"save":  func() error { s.Touch("shop2"); _, _, err := f.store.Save(t.Context(), s); return err }(),
		"ping":  f.store.Ping(t.Context()),
	} {
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
	}
}

// TestWaitReplicas: with WaitReplicas 1 and no replica, a write is refused
// (ErrUnavailable naming the replicas, so 503) within the client's timeout,
// the refused write is taken back (the key holds what it held before, with
// its expiry; a new session's first write leaves no key; a renewal's old
// key comes back), and the session's lock is released all the same; with a
// replica the cluster test (scenarios/cluster TestSentinel) sees it
// acknowledged.
func TestWaitReplicas(t *testing.T) {
	r := testenv.StartRedis(t)
	rc := redisclient.New(redisclient.Config{Addr: r.Addr()})
	defer rc.Close()
	conn, err := redis.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := session.NewRedis(rc, session.Options{Lock: true, WaitReplicas: 1})
	refuse := func(what string, st session.Store, s *session.Session) {
		t.Helper()
		start := time.Now()
		_, _, err := st.Save(t.Context(), s)
		if !errors.Is(err, session.ErrUnavailable) || !strings.Contains(err.Error(), "replicas") ||
			strings.Contains(err.Error(), "may have been applied") {
			t.Errorf("%s no replica confirmed: %v, want ErrUnavailable naming the replicas", what, err)
		}
		if took := time.Since(start); took > 2*redisclient.DefaultTimeout {
			t.Errorf("the refusal of %s took %s, want it within the client's timeout", what, took)
		}
	}
	for range 2 { // the second write finds the lock the first one released
		s, err := st.Load(t.Context(), "", true)
		if err != nil {
			t.Fatal(err)
		}
		s.Touch("shop1")
		refuse("a new session's first write", st, s)
		if keys := sessionKeys(t, conn); len(keys) != 0 {
			t.Errorf("a refused first write left %d session keys in Redis, want none", len(keys))
		}
	}

	cookie := save(t, session.NewRedis(rc, session.Options{Lock: true}), "shop1")
	key := session.KeyPrefix + cookie
	before, err := redis.Bytes(conn.Do("GET", key))
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := redis.Int64(conn.Do("PEXPIRETIME", key))
	if err != nil {
		t.Fatal(err)
	}
	unlocked := session.NewRedis(rc, session.Options{WaitReplicas: 1})
	for _, c := range []struct {
		what  string
		st    session.Store
		renew bool
	}{{"a locked write", st, false}, {"a renewal", st, true}, {"a write without the lock", unlocked, false}} {
		s, err := c.st.Load(t.Context(), cookie, true)
		if err != nil {
			t.Fatal(err)
		}
		s.Touch("shop2")
		s.SetCart([]byte(`{"v":1,"rev":2,"items":[{"product_id":1,"quantity":3}]}`))
		if c.renew {
			s.Renew("login")
		}
		refuse(c.what, c.st, s)
		keys := sessionKeys(t, conn)
		if len(keys) != 1 || string(keys[key]) != string(before) {
			t.Errorf("after %s was refused, Redis holds %q, want only %s as it was: %s", c.what, keys, key, before)
		}
		if after, err := redis.Int64(conn.Do("PEXPIRETIME", key)); err != nil || after != ttl {
			t.Errorf("after %s was refused, %s expires at %d (%v), want %d as before", c.what, key, after, err, ttl)
		}
	}
	// The lock went with the refused write's undo: the next write of the
	// same session takes it at once.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	s, err := st.Load(ctx, cookie, true)
	if err != nil {
		t.Fatalf("the next write of the session: %v; the refused write left its lock", err)
	}
	s.Release()
}

// sessionKeys returns every session key in Redis with its bytes.
func sessionKeys(t *testing.T, conn redis.Conn) map[string][]byte {
	t.Helper()
	names, err := redis.Strings(conn.Do("KEYS", session.KeyPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string][]byte, len(names))
	for _, name := range names {
		if keys[name], err = redis.Bytes(conn.Do("GET", name)); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestCheckKind: the one list of kinds is what the flag accepts.
func TestCheckKind(t *testing.T) {
	for _, kind := range session.Kinds() {
		if err := session.CheckKind(kind); err != nil {
			t.Errorf("CheckKind(%q): %v", kind, err)
		}
	}
	err := session.CheckKind("disk")
	if err == nil || !strings.Contains(err.Error(), strings.Join(session.Kinds()[:len(session.Kinds())-1], ", ")) {
		t.Errorf("CheckKind(disk) = %v, want the allowed values", err)
	}
}

// recorder is an Observer that counts.
type recorder struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *recorder) ObserveStore(op string, _ time.Duration, _ error) { r.add(op) }

func (r *recorder) ObserveLockWait(_ time.Duration, timedOut bool) {
	r.add("lock")
	if timedOut {
		r.add("timeout")
	}
}

func (r *recorder) add(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[key]++
}

func (r *recorder) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

func (r *recorder) timeouts() int { return r.snapshot()["timeout"] }
