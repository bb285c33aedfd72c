package cluster

// What the harness adds to the supervisor in internal/proc: HTTP readiness
// probes and the replicas' environment.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// closeGrace is how long Close lets a process stop after SIGTERM before it
// sends SIGKILL.
const closeGrace = 3 * time.Second

// newProbeClient returns a client for readiness probes: short timeouts and no
// idle connections left behind.
func newProbeClient() *http.Client {
	return &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
}

// httpOK returns a check that GETs url and wants status 200.
func httpOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := httpGet(ctx, client, url)
		return err
	}
}

// httpGet GETs url and returns the response headers when the status is 200.
func httpGet(ctx context.Context, client *http.Client, url string) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Header, nil
}

// baseEnv is the environment of this process without SHOP_* variables, so
// that a developer's shell cannot change what a replica runs with.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHOP_") {
			env = append(env, kv)
		}
	}
	return env
}
