package redisclient

import (
	"context"
	"fmt"

	"github.com/gomodule/redigo/redis"
)

// Dial opens a connection of the caller's own, outside the pool, for one
// that holds it for long (the near-cache's invalidation subscription). It
// reaches Redis the way the pool does, through Sentinel when configured,
// with the same timeouts; the caller closes it.
func (c *Client) Dial(ctx context.Context) (redis.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, named(err))
	}
	return conn, nil
}
