//go:build !withprom

package web

// A stand-in for metrics_prom.go while go.sum lacks go.yaml.in/yaml/v2, the
// one module the Prometheus client needs that is not yet summed: the shop
// still builds for everyone, counts for /metrics/live, and /metrics says
// why it is empty. Delete this file once go.sum has the module.

import (
	"net/http"
	"time"

	"github.com/gomodule/redigo/redis"
)

type metrics struct {
	live liveCounter
}

func newMetrics(replica, storeKind string) *metrics { return &metrics{} }

func (m *metrics) observeRequest(route string, status int, d time.Duration) {
	m.live.add(time.Now(), status >= 500)
}

func (m *metrics) observeStore(op string, d time.Duration, err error) {}
func (m *metrics) observeLockWait(d time.Duration, timedOut bool)     {}
func (m *metrics) orderPlaced()                                       {}
func (m *metrics) watchPool(pool *redis.Pool)                         {}

func (s *Server) handleMetrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "metrics: this binary was built without the Prometheus client (build with -tags withprom)", http.StatusNotImplemented)
	})
}
