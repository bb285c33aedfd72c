package web_test

// Issue 22, item 10: replica and Redis addresses, and /metrics, only for
// the shop's own networks (-trusted-proxies); the rest of /cluster for all.

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/web"
)

// getFrom is a GET with the given X-Forwarded-For ("" for none).
func getFrom(t *testing.T, c *http.Client, url, forwardedFor string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInternalsOnlyToTrustedNetworks: a replica trusting only its nginx
// (127.0.0.1) shows /metrics and the replicas' addresses to a client nginx
// forwards from inside, and to nobody else, whatever X-Forwarded-For a
// client forges; the replicas themselves are listed for everyone.
func TestInternalsOnlyToTrustedNetworks(t *testing.T) {
	shop := newShop(t, session.Redis)
	const announced = "10.9.8.7:8081"
	newReplica := func(name string, trusted ...string) string {
		p := shop.parts(session.Redis, name, true)
		srv := shop.newServer(p, shop.db, web.Config{Replica: name, TrustedProxies: mustPrefixes(trusted...)})
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Announce(ctx, announced); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return hs.URL
	}
	behindNginx := newReplica("shop7", "127.0.0.1/32")
	noLoopback := newReplica("shop8", "10.0.0.0/8")
	c := &http.Client{}
	waitUntil(t, func() bool {
		_, body := getFrom(t, c, behindNginx+"/cluster", "")
		return strings.Contains(body, announced)
	}, "shop7 announced on /cluster")

	for _, tt := range []struct {
		what, url, forwardedFor string
		trusted                 bool
	}{
		{"nginx itself (loopback, trusted)", behindNginx, "", true},
		{"a client nginx forwarded from its own network", behindNginx, "127.0.0.1", true},
		{"a client nginx forwarded from outside", behindNginx, "203.0.113.7", false},
		{"outside, with a forged inside address before nginx's", behindNginx, "127.0.0.1, 203.0.113.7", false},
		{"an untrusted peer forging an inside address", noLoopback, "10.1.2.3", false},
	} {
		status, body := getFrom(t, c, tt.url+"/metrics", tt.forwardedFor)
		if tt.trusted && (status != http.StatusOK || !strings.Contains(body, "go_info")) {
			t.Errorf("%s: /metrics %d, want 200 with go_info", tt.what, status)
		}
		if !tt.trusted && (status != http.StatusForbidden || strings.Contains(body, "go_info")) {
			t.Errorf("%s: /metrics %d, want 403 without the metrics", tt.what, status)
		}
		status, body = getFrom(t, c, tt.url+"/cluster", tt.forwardedFor)
		if status != http.StatusOK || !strings.Contains(body, `data-replica="shop7"`) {
			t.Errorf("%s: /cluster %d without shop7's row; want the replicas listed for everyone", tt.what, status)
		}
		if shown := strings.Contains(body, announced); shown != tt.trusted {
			t.Errorf("%s: /cluster shows the replica's address: %v, want %v", tt.what, shown, tt.trusted)
		}
	}
}

// TestInternalsBehindNginx: through the project's nginx, the replica sees
// the client nginx forwards, not nginx: with -trusted-proxies naming only
// 127.0.0.1, a browser on 127.0.0.2 gets a 403 for /metrics and /cluster
// without addresses, and one on 127.0.0.1 gets both.
func TestInternalsBehindNginx(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{Replicas: 1, Store: "redis", Env: []string{"SHOP_TRUSTED_PROXIES=127.0.0.1/32"}})
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
	}
	replicaAddr := c.Replica("shop1").Addr()
	waitUntil(t, func() bool {
		_, body := getFrom(t, from("127.0.0.1"), c.URL()+"/cluster", "")
		return strings.Contains(body, replicaAddr)
	}, "shop1's address on /cluster for a client on 127.0.0.1")

	if status, _ := getFrom(t, from("127.0.0.1"), c.URL()+"/metrics", ""); status != http.StatusOK {
		t.Errorf("/metrics through nginx from 127.0.0.1: %d, want 200", status)
	}
	outside := from("127.0.0.2")
	if status, _ := getFrom(t, outside, c.URL()+"/metrics", ""); status != http.StatusForbidden {
		t.Errorf("/metrics through nginx from 127.0.0.2: %d, want 403", status)
	}
	status, body := getFrom(t, outside, c.URL()+"/cluster", "")
	if status != http.StatusOK || !strings.Contains(body, `data-replica="shop1"`) || strings.Contains(body, replicaAddr) {
		t.Errorf("/cluster through nginx from 127.0.0.2: %d, listing shop1 %v, showing its address %v; want it listed without the address",
			status, strings.Contains(body, `data-replica="shop1"`), strings.Contains(body, replicaAddr))
	}
	// Straight to the replica from 127.0.0.2, with a forged inside address.
	if status, _ := getFrom(t, outside, c.Replica("shop1").URL()+"/metrics", "127.0.0.1"); status != http.StatusForbidden {
		t.Errorf("/metrics from 127.0.0.2 forging X-Forwarded-For 127.0.0.1: %d, want 403", status)
	}
}
