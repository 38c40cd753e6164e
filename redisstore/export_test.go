package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// NewExampleClient returns a client of the redis-server TestMain started,
// on a database of the examples' own, emptied first: the examples show
// their output however often they run.
func NewExampleClient() *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: 15, ContextTimeoutEnabled: true})
	rdb.FlushDB(context.Background())
	return rdb
}
