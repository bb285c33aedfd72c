package redisclient

import "github.com/gomodule/redigo/redis"

// For the external tests (sentinel_test.go), which need the cluster
// harness, which imports this package through the session store.

var (
	OutageReply = outageReply
	ErrMoved    = errMoved
)

func NewPrimaryConn(c redis.Conn, addr string) redis.Conn { return &primaryConn{Conn: c, addr: addr} }
