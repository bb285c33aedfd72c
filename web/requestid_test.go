package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// TestRequestIDFlowsFromNginx: the id nginx gives a request ($request_id,
// in its access log) reaches the replica as X-Request-ID and is on the
// replica's JSON log line for that request, with the route and status, so
// one grep follows a request through both. A client cannot choose the id:
// nginx replaces whatever X-Request-ID it sends.
func TestRequestIDFlowsFromNginx(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{Replicas: 2, Store: "memory"})
	// A path no other request has, to find its log lines by.
	path := "/products/no-such-product-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.URL()+path, nil)
	req.Header.Set("X-Request-ID", "forged-by-the-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	servedBy := resp.Header.Get("X-Served-By")

	// nginx writes its access log line once the response is sent.
	idRe := regexp.MustCompile(`"GET ` + regexp.QuoteMeta(path) + ` [^"]*".* id=([0-9a-f]{32}) `)
	var id string
	waitUntil(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(c.Dir(), "nginx", "access.log"))
		if m := idRe.FindSubmatch(b); m != nil {
			id = string(m[1])
		}
		return id != ""
	}, "nginx's access log has a line for "+path)

	var line map[string]any
	waitUntil(t, func() bool {
		line = findLogLine(t, c.Replica(servedBy).LogPath(), path)
		return line != nil
	}, servedBy+"'s log has a line for "+path)
	if line["request_id"] != id {
		t.Errorf("replica log request_id %v, nginx's id %s (line %v)", line["request_id"], id, line)
	}
	if line["replica"] != servedBy || line["route"] != "GET /products/{slug}" || line["status"] != float64(404) {
		t.Errorf("replica log line lacks replica, route or status: %v", line)
	}
}

// findLogLine returns the replica's JSON "request" line for path, or nil.
func findLogLine(t *testing.T, logPath, path string) map[string]any {
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" && m["path"] == path {
			return m
		}
	}
	return nil
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
