package redisclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/gomodule/redigo/redis"
)

// Pool is the client's connection pool, for libraries that take a redigo
// pool (scs's redisstore): they share its dial timeouts, its login and its
// checks on borrow. Their errors are not wrapped: pass them to Classify.
func (c *Client) Pool() *redis.Pool { return c.pool }

// Classify wraps an error from a command sent outside Do (through Pool) as
// Do would: ErrUnavailable for an outage or a refusal, with its name
// (ErrOutOfMemory, ErrAuth) when it has one. nil stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if why := refusal(err); why != nil {
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, why, err)
	}
	var reply redis.Error
	if errors.Is(err, redis.ErrNil) || (errors.As(err, &reply) && !outageReply(reply)) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Flush sends the commands queued on conn with Send and reads every reply.
// redigo's Do("") returns Redis's error replies (OOM, READONLY, NOAUTH)
// inside the slice with a nil error; Flush returns the first of them as
// the error, so that no pipeline can take a refusal for a success.
func Flush(ctx context.Context, conn redis.Conn) ([]any, error) {
	replies, err := redis.Values(redis.DoContext(conn, ctx, ""))
	if err != nil {
		return nil, err
	}
	for _, r := range replies {
		if e, ok := r.(redis.Error); ok {
			return replies, e
		}
	}
	return replies, nil
}
