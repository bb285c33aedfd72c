package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/statelab/shop/internal/redisclient"
)

// TestRedisErrorsAreNamed503s: a Redis failure outside the session store
// (a shared service: the limiter, presence, the live board, or a call added
// tomorrow that forgot to wrap its error) is a 503 that names Redis, never a
// 500 and never "your cart". Issue 18 (one error table) and issue 22,
// item 6 (the message names what is unavailable).
func TestRedisErrorsAreNamed503s(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("presence: %w", redisclient.ErrUnavailable),
		fmt.Errorf("login limit: %w: %w", redisclient.ErrUnavailable, redisclient.ErrOutOfMemory),
		fmt.Errorf("live board: %w: %w", redisclient.ErrUnavailable, redisclient.ErrAuth),
	} {
		status, heading, message := errorStatus(err)
		if status != http.StatusServiceUnavailable || !strings.Contains(message, "Redis") ||
			strings.Contains(strings.ToLower(heading+message), "cart") || strings.Contains(message, "session store") {
			t.Errorf("%v: %d %q %q; want a 503 naming Redis, not the cart or the session store", err, status, heading, message)
		}
	}
}
