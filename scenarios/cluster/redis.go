package cluster

import (
	"context"

	"github.com/statelab/shop/internal/proc"
)

// Redis is a redis-server on a free loopback port with its own data
// directory and append-only persistence (proc.Redis), so that Stop and
// Start keep the data while Kill may lose the last second of writes. It runs
// from a configuration file in its directory (redis.conf), which Sentinel
// rewrites when it turns a server into a replica, as in production.
type Redis struct {
	*proc.Redis
}

// StartRedis starts redis-server with its data and its log (redis.log) in
// dir and returns once it answers PING.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	return startRedis(ctx, dir, nil, "redis", nil)
}

// startRedis starts a redis-server named name, with conf(port) added to its
// configuration: directives that may depend on the port it got.
func startRedis(ctx context.Context, dir string, out *proc.Mux, name string, conf func(port int) []string) (*Redis, error) {
	r, err := proc.StartRedis(ctx, dir, proc.RedisOptions{Name: name, Out: out, Conf: conf})
	if err != nil {
		return nil, err
	}
	return &Redis{r}, nil
}
