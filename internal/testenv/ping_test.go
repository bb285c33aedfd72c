package testenv

import (
	"context"
	"fmt"

	"github.com/statelab/shop/internal/proc"
)

// ping sends PING over a fresh connection and wants PONG.
func ping(ctx context.Context, addr string) error {
	reply, err := proc.RedisCommand(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING: %q", reply)
	}
	return nil
}
