package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/statelab/shop/scenarios/cluster"
)

// newShopperFrom is a browser whose connections to nginx come from ip (a
// loopback address such as 127.0.0.2): to the replicas, behind nginx's
// X-Forwarded-For, another client.
func newShopperFrom(t *testing.T, base, ip string) *shopper {
	t.Helper()
	s := newShopper(t, base)
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	s.client.Transport.(*http.Transport).DialContext = d.DialContext
	return s
}

func loginForm(email, password string) url.Values {
	return url.Values{"email": {email}, "password": {password}}
}

// TestClientLimitAcrossAccounts: one client's failed logins are limited
// across accounts, shared by the replicas: 20 wrong passwords for 20
// different emails spread round robin over three replicas are checked (422),
// and everything after is 429, registration included (which would say
// whether an address has an account); another client is not affected, and
// the attempts leave at most the client's allowance of keys in Redis, not
// one per attempt. Issue 22, items 4 and 5 (the keys).
func TestClientLimitAcrossAccounts(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{})
	owner := newShopperFrom(t, c.URL(), "127.0.0.5")
	if r, err := owner.do(http.MethodPost, "/register", loginForm("owner@example.com", "the owner's password")); err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("register: %d %v", r.status, err)
	}

	attacker := newShopperFrom(t, c.URL(), "127.0.0.2")
	attacker.client.Jar = nil // cookieless, as a script sends them
	servedBy := map[string]int{}
	for i := range 20 {
		r, err := attacker.do(http.MethodPost, "/login", loginForm(fmt.Sprintf("guess%d@example.com", i), "a wrong password"))
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("wrong login %d of 20 for a different email each: %d from %s, want 422 (checked)", i+1, r.status, r.servedBy)
		}
		servedBy[r.servedBy]++
	}
	if len(servedBy) < 2 {
		t.Errorf("the attempts reached only %v: round robin should spread them", servedBy)
	}
	// 40 more, at once: every one refused by the client's limit, on every
	// replica, before any password is checked.
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		statuses = map[int]int{}
		refusals = map[string]bool{}
	)
	for i := range 40 {
		wg.Go(func() {
			r, err := attacker.do(http.MethodPost, "/login", loginForm(fmt.Sprintf("more%d@example.com", i), "a wrong password"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			statuses[r.status]++
			if r.status == http.StatusTooManyRequests {
				refusals[r.servedBy] = true
				if r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "across accounts") {
					t.Errorf("429 from %s: Retry-After %q, body without 'across accounts'", r.servedBy, r.header.Get("Retry-After"))
				}
			}
		})
	}
	wg.Wait()
	if statuses[http.StatusTooManyRequests] != 40 {
		t.Errorf("attempts 21 to 60 across accounts: %v; want all 40 refused with 429", statuses)
	}
	if len(refusals) < 2 {
		t.Errorf("only %v refused: the limit must hold on every replica", refusals)
	}

	// Registration says whether an address has an account: limited too,
	// whatever the address (a new one's success would be the answer).
	for _, email := range []string{"owner@example.com", "brand-new@example.com"} {
		if r, err := attacker.do(http.MethodPost, "/register", loginForm(email, "a long enough password")); err != nil || r.status != http.StatusTooManyRequests {
			t.Errorf("register %s past the client's limit: %d %v, want 429", email, r.status, err)
		}
	}
	// Another client is its own.
	other := newShopperFrom(t, c.URL(), "127.0.0.3")
	if r, err := other.do(http.MethodPost, "/login", loginForm("guess0@example.com", "a wrong password")); err != nil || r.status != http.StatusUnprocessableEntity {
		t.Errorf("another client's wrong login: %d %v, want 422", r.status, err)
	}
	if r, err := owner.do(http.MethodPost, "/login", loginForm("owner@example.com", "the owner's password")); err != nil || r.status != http.StatusSeeOther {
		t.Errorf("the owner's login from its own address: %d %v, want 303", r.status, err)
	}

	conn, err := redis.Dial("tcp", c.Redis().Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", "ratelimit:*"))
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's client key and 20 account keys; the other client's
	// two; the owner's client key.
	if len(keys) > 24 {
		t.Errorf("61 login attempts left %d rate-limit keys in Redis; want at most 24", len(keys))
	}
}

// TestHashingFairShare: one client's flood of logins cannot keep another
// client's logins out of the password hashers, and an attempt refused
// because every hasher was busy is never counted against the account's 5.
// One replica with one hasher (GOMAXPROCS=1) behind nginx; the client
// limit is lifted so that the flood lasts. Issue 22, item 5.
func TestHashingFairShare(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Replicas: 1, Env: []string{"GOMAXPROCS=1", "SHOP_LOGIN_CLIENT_LIMIT=1000000"}})
	ada := newShopperFrom(t, c.URL(), "127.0.0.7")
	grace := newShopperFrom(t, c.URL(), "127.0.0.8")
	for _, s := range []struct {
		who   *shopper
		email string
	}{{ada, "ada@example.com"}, {grace, "grace@example.com"}} {
		if r, err := s.who.do(http.MethodPost, "/register", loginForm(s.email, "the right password")); err != nil || r.status != http.StatusSeeOther {
			t.Fatalf("register %s: %d %v", s.email, r.status, err)
		}
		s.who.do(http.MethodPost, "/logout", nil)
	}

	// flood sends wrong logins from each of ips, each for a new email,
	// until stop; it returns once one of them was refused as busy (the
	// hashers are saturated) and a func that stops it.
	flood := func(ips []string) (stop func()) {
		t.Helper()
		done := make(chan struct{})
		var busy atomic.Int64
		var wg sync.WaitGroup
		for i, ip := range ips {
			s := newShopperFrom(t, c.URL(), ip)
			s.client.Jar = nil
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-done:
						return
					default:
					}
					r, err := s.do(http.MethodPost, "/login", loginForm(fmt.Sprintf("flood%d-%d@example.com", i, n), "a wrong password"))
					if err == nil && r.status == http.StatusServiceUnavailable {
						busy.Add(1)
						time.Sleep(10 * time.Millisecond) // refused at once: do not spin
					}
				}
			})
		}
		stop = func() { close(done); wg.Wait() }
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for busy.Load() == 0 {
			if ctx.Err() != nil {
				stop()
				t.Fatal("30 s into the flood, no login was refused as busy: the hashers are not saturated")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return stop
	}

	// One client floods with eight logins at a time: ada's are still
	// checked, each in its turn.
	stop := flood([]string{"127.0.0.66", "127.0.0.66", "127.0.0.66", "127.0.0.66", "127.0.0.66", "127.0.0.66", "127.0.0.66", "127.0.0.66"})
	for i := range 3 {
		if r, err := ada.do(http.MethodPost, "/login", loginForm("ada@example.com", "a wrong guess")); err != nil || r.status != http.StatusUnprocessableEntity {
			t.Errorf("ada's wrong password %d during one client's flood: %d %v, want 422 (checked in her turn)", i+1, r.status, err)
		}
	}
	if r, err := ada.do(http.MethodPost, "/login", loginForm("ada@example.com", "the right password")); err != nil || r.status != http.StatusSeeOther {
		t.Errorf("ada's right password during one client's flood: %d %v, want 303", r.status, err)
	}
	stop()

	// Twelve clients flood at once: the queue is full, and grace is turned
	// away (503) before her password is checked. Those attempts must not
	// count: after the flood her right password logs her in.
	var ips []string
	for i := range 12 {
		ips = append(ips, fmt.Sprintf("127.0.1.%d", i+1))
	}
	stop = flood(ips)
	busy, checked := 0, 0
tries:
	for try := 0; busy < 6 && try < 100; try++ {
		r, err := grace.do(http.MethodPost, "/login", loginForm("grace@example.com", "a wrong guess"))
		if err != nil {
			t.Fatal(err)
		}
		switch r.status {
		case http.StatusServiceUnavailable:
			busy++
		case http.StatusUnprocessableEntity:
			checked++
		default:
			t.Errorf("grace's wrong password %d during the flood (%d refused as busy and %d checked before): %d, want 503 or 422",
				try+1, busy, checked, r.status)
			break tries
		}
	}
	stop()
	if t.Failed() {
		return
	}
	if busy < 6 || checked >= 5 {
		t.Fatalf("during the flood grace's attempts were %d refused as busy and %d checked: the flood did not keep the hashers busy enough for this test", busy, checked)
	}
	if r, err := grace.do(http.MethodPost, "/login", loginForm("grace@example.com", "the right password")); err != nil || r.status != http.StatusSeeOther {
		t.Errorf("grace's right password after %d attempts refused as busy and %d checked: %d %v, want 303 (a refused attempt counts against no one)", busy, checked, r.status, err)
	}
}
