package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// TestLoginBurstAcrossReplicas: 150 wrong passwords for one account sent at
// once through nginx, spread round robin over three redis-mode replicas,
// check at most five passwords between them; the rest are 429, and so is the
// right password afterwards. The count is reserved in Redis before bcrypt
// runs (issue 10, item 1).
func TestLoginBurstAcrossReplicas(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{})
	victim := url.Values{"email": {"victim@example.com"}, "password": {"the real password!"}}
	if r, err := newShopper(t, c.URL()).do(http.MethodPost, "/register", victim); err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("register: %d %v", r.status, err)
	}

	attacker := newShopper(t, c.URL())
	attacker.client.Jar = nil // cookieless, as a script sends them
	attacker.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 200
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		statuses = map[int]int{}
		servedBy = map[string]int{}
	)
	start := make(chan struct{})
	for i := range 150 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := attacker.do(http.MethodPost, "/login", url.Values{"email": {"victim@example.com"}, "password": {fmt.Sprintf("guess %d", i)}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			statuses[r.status]++
			servedBy[r.servedBy]++
		}()
	}
	close(start)
	wg.Wait()
	// A checked password is a 422; a 503 is a reserved attempt whose
	// replica had no free password hasher.
	checked := statuses[http.StatusUnprocessableEntity] + statuses[http.StatusServiceUnavailable]
	if checked > 5 || statuses[http.StatusTooManyRequests] < 145 || checked+statuses[http.StatusTooManyRequests] != 150 {
		t.Errorf("150 parallel guesses through nginx: %v; want at most 5 reserved (422 or 503), the rest 429", statuses)
	}
	if len(servedBy) < 2 {
		t.Errorf("the burst reached only %v: round robin should spread it", servedBy)
	}
	if r, err := newShopper(t, c.URL()).do(http.MethodPost, "/login", victim); err != nil || r.status != http.StatusTooManyRequests {
		t.Errorf("the right password after the burst: %d %v, want 429", r.status, err)
	}
}

// TestThousandShoppersThroughNginx: 1000 browsers at once, each on its own
// keep-alive connection, each sending its requests back to back through the
// project's nginx config. Every request is answered: none is reset, cut off
// or refused (issue 10, item 12). The clients are raw connections, not
// net/http's, which silently retries an idempotent request when a reused
// connection turns out to be closed, and would hide exactly this failure.
func TestThousandShoppersThroughNginx(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Store: "memory", Replicas: 2})
	addr := strings.TrimPrefix(c.URL(), "http://")
	const shoppers, each = 1000, 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed = map[string]int{}
		ok     atomic.Int64
	)
	fail := func(err error) {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 { // drop the varying addresses
			msg = msg[i+2:]
		}
		mu.Lock()
		failed[msg]++
		mu.Unlock()
	}
	start := make(chan struct{})
	for range shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			conn, err := net.DialTimeout("tcp", addr, requestTimeout)
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * requestTimeout))
			br := bufio.NewReader(conn)
			for range each {
				if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
					fail(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					fail(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("status: %d", resp.StatusCode))
					return
				}
				ok.Add(1)
				if resp.Close { // nginx said it closes (keepalive_requests): reconnect, as a browser would
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d shoppers × %d requests: %d answered 200, failures: %v", shoppers, each, ok.Load(), failed)
	}
}

// TestTruncatedBodyThroughNginx: nginx reads a request's whole body before
// it passes the request on, so a body that stops short of its
// Content-Length is nginx's to refuse: it gives up after its 5 s body
// timeout (the default is 60 s) and closes the connection, logging 408, and
// no replica ever sees the request (issue 10, item 7).
func TestTruncatedBodyThroughNginx(t *testing.T) {
	t.Parallel()
	c := cluster.StartT(t, cluster.Options{Store: "memory", Replicas: 1})
	addr := strings.TrimPrefix(c.URL(), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(requestTimeout))
	fmt.Fprintf(conn, "POST /cart/items HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nquantity=1", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("POST with 10 of 100 bytes through nginx: still waiting after %v (nginx's default body timeout is 60 s)", requestTimeout)
	case err == nil:
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("POST with 10 of 100 bytes through nginx: %d, want 408 or the connection closed", resp.StatusCode)
		}
	}
	log, err := os.ReadFile(filepath.Join(c.Dir(), "nginx", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"POST /cart/items HTTP/1.1" 408`) {
		t.Errorf("nginx's access log has no 408 for the truncated POST:\n%s", log)
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "POST /cart/items") && !strings.Contains(line, "upstream=- ") {
			t.Errorf("the truncated POST reached a replica: %s", line)
		}
	}
}
