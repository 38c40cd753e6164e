package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLeaseExclusive(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	const rounds, racers = 100, 16
	for round := range rounds {
		var wins atomic.Int32
		var winner func(context.Context)
		var mu sync.Mutex
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range racers {
			wg.Go(func() {
				<-start
				release, ok, err := s.TryLease(ctx, key, time.Minute)
				assert.NoError(t, err)
				if ok {
					wins.Add(1)
					mu.Lock()
					winner = release
					mu.Unlock()
				} else {
					assert.Nil(t, release)
				}
			})
		}
		close(start)
		wg.Wait()
		require.EqualValues(t, 1, wins.Load(), "round %d: winners", round)
		if round == 0 {
			pttl, err := rdb.PTTL(ctx, s.leaseKey(key)).Result()
			require.NoError(t, err)
			assert.Positive(t, pttl)
			assert.LessOrEqual(t, pttl, time.Minute)
		}
		winner(ctx)
	}
}

func TestLeaseReleasedOnlyByOwner(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	held := func() bool {
		n, err := rdb.Exists(ctx, s.leaseKey(key)).Result()
		require.NoError(t, err)
		return n == 1
	}

	releaseA, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "B took a held lease")

	// A's lease runs out (here: removed, as its expiry would) and B takes it.
	require.NoError(t, rdb.Del(ctx, s.leaseKey(key)).Err())
	releaseB, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	releaseA(ctx) // late: must leave B's lease alone
	releaseA(ctx)
	assert.True(t, held(), "A's late release removed B's lease")
	_, ok, err = s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	assert.False(t, ok)

	releaseB(ctx)
	assert.False(t, held())
	releaseC, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	assert.True(t, ok)
	releaseC(ctx)
}

func TestLeaseExpires(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	_, ok, err := s.TryLease(ctx, key, 100*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	var release func(context.Context)
	require.Eventually(t, func() bool {
		release, ok, err = s.TryLease(ctx, key, time.Minute)
		return err == nil && ok
	}, 30*time.Second, 10*time.Millisecond, "an abandoned lease never expired")
	release(ctx)
}

func TestEvict(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)

	tests := []struct {
		name      string
		stored    []string // saved in order; the last one stays in Redis
		evict     string
		wantAfter string // "" for none
	}{
		{"the rejected token is removed", []string{"old"}, "old", ""},
		{"a newer token stays", []string{"old", "new"}, "old", "new"},
		{"an unknown token removes nothing", []string{"new"}, "other", "new"},
		{"nothing stored", nil, "old", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := storeKey(t, t.Name(), "secret")
			for _, access := range tt.stored {
				require.NoError(t, s.Save(ctx, key, testToken(access, time.Hour)))
			}
			require.NoError(t, s.Evict(ctx, key, tt.evict))
			require.NoError(t, s.Evict(ctx, key, tt.evict), "a second eviction of the same token")
			got, err := s.Load(ctx, key)
			require.NoError(t, err)
			if tt.wantAfter == "" {
				assert.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tt.wantAfter, got.AccessToken)
		})
	}

	// The step after Evict's read: a value written since (even holding the
	// same token, sealed anew) is not deleted with the bytes that were read.
	t.Run("compare-and-delete on the bytes read", func(t *testing.T) {
		key := storeKey(t, t.Name(), "secret")
		tok := testToken("same", time.Hour)
		require.NoError(t, s.Save(ctx, key, tok))
		read, err := rdb.Get(ctx, s.tokenKey(key)).Result()
		require.NoError(t, err)
		require.NoError(t, s.Save(ctx, key, tok))
		n, err := compareAndDelete.Run(ctx, rdb, []string{s.tokenKey(key)}, read).Int()
		require.NoError(t, err)
		assert.Zero(t, n)
		got, err := s.Load(ctx, key)
		require.NoError(t, err)
		assert.NotNil(t, got)
	})
}
