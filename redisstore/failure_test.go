package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStoreDown: with nothing listening, every operation returns an *Error
// wrapping the network error, within its context, and none panics or
// names the token.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	require.NoError(t, err)
	// Without go-redis's own retries, the error is the dial's; with them,
	// m2m's StoreTimeout ends the call (the "deadline" cases).
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ContextTimeoutEnabled: true,
		MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	s, err := New(rdb, Options{})
	require.NoError(t, err)
	retrying := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ContextTimeoutEnabled: true})
	t.Cleanup(func() { retrying.Close() })
	sr, err := New(retrying, Options{})
	require.NoError(t, err)
	key := storeKey(t, "down", "secret")
	tok := testToken("secret-token-value", time.Hour)

	ops := map[string]func(ctx context.Context) error{
		"load": func(ctx context.Context) error {
			got, err := s.Load(ctx, key)
			assert.Nil(t, got)
			return err
		},
		"save": func(ctx context.Context) error { return s.Save(ctx, key, tok) },
		"lease": func(ctx context.Context) error {
			release, ok, err := s.TryLease(ctx, key, time.Second)
			assert.False(t, ok)
			assert.Nil(t, release)
			return err
		},
		"evict": func(ctx context.Context) error { return s.Evict(ctx, key, tok.AccessToken) },
	}
	for op, call := range ops {
		t.Run(op, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := call(ctx)
			var se *Error
			require.ErrorAs(t, err, &se)
			assert.Equal(t, op, se.Op)
			var ne net.Error
			assert.True(t, errors.As(err, &ne), "want a net.Error inside, got %v", err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: "+op+": "), err.Error())
			assert.NotContains(t, err.Error(), tok.AccessToken)
		})
	}
	deadlineOps := map[string]func(ctx context.Context) error{
		"load":  func(ctx context.Context) error { _, err := sr.Load(ctx, key); return err },
		"save":  func(ctx context.Context) error { return sr.Save(ctx, key, tok) },
		"lease": func(ctx context.Context) error { _, _, err := sr.TryLease(ctx, key, time.Second); return err },
		"evict": func(ctx context.Context) error { return sr.Evict(ctx, key, tok.AccessToken) },
	}
	for op, call := range deadlineOps {
		t.Run(op+" deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := call(ctx)
			var se *Error
			require.ErrorAs(t, err, &se)
			assert.NotContains(t, err.Error(), tok.AccessToken)
		})
	}
}

// TestSlowRedis: behind a proxy that holds all traffic for 300 ms, each
// call returns its context's error when the context is cancelled (as m2m
// cancels at StoreTimeout), not Redis's late answer; and a lease Redis
// grants after its caller gave up is released, not held by no one for
// its whole TTL.
func TestSlowRedis(t *testing.T) {
	t.Parallel()
	proxy := newSlowProxy(t, srv.Addr(), 300*time.Millisecond)
	prefix := "test:" + t.Name() + ":" + randomString()[:8] + ":"
	slowClient := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { slowClient.Close() })
	slow, err := New(slowClient, Options{Prefix: prefix})
	require.NoError(t, err)
	direct, rdb := newTestStore(t, Options{Prefix: prefix})
	key := storeKey(t, "slow", "secret")
	require.NoError(t, direct.Save(ctxT(t), key, testToken("t", time.Hour)))

	cancelSoon := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		return ctx
	}
	got, err := slow.Load(cancelSoon(), key)
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, got)
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "load", se.Op)

	_, ok, err := slow.TryLease(cancelSoon(), key, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ok)
	// A new connection's handshake and the script's EVALSHA/EVAL each
	// cost round trips through the proxy: wait generously.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leased := func() bool {
		n, err := rdb.Exists(ctx, direct.leaseKey(key)).Result()
		require.NoError(t, err)
		return n == 1
	}
	require.Eventually(t, leased, 25*time.Second, 5*time.Millisecond, "the late SET never reached Redis")
	require.Eventually(t, func() bool { return !leased() }, 25*time.Second, 5*time.Millisecond,
		"the lease taken too late is still held")
}
