package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/stretchr/testify/require"
)

// audiences numbers the benchmarks' audiences, so that every iteration
// starts on a key no Client and no Redis key has seen.
var audiences atomic.Int64

func newAudience() m2m.Audience {
	return m2m.Audience{Name: fmt.Sprintf("bench-%d", audiences.Add(1))}
}

// BenchmarkFetchPath measures a cold key's first token through an m2m
// Client: fetched with no Store (the baseline), taken from the Store (a
// hit), fetched under the lease and saved (a miss), and taken from the
// Store after losing the lease to another process (whose token is stored
// by then: the wait is m2m's first poll, 10 ms). The token server and
// redis-server are local; a token request costs about what a Redis round
// trip does here, far less than over a network.
func BenchmarkFetchPath(b *testing.B) {
	auth := newFleetAuth(b, time.Hour)
	cfg := auth.register("bench")
	ctx := context.Background()
	newClient := func(b *testing.B, store m2m.Store) *m2m.Client {
		c, err := m2m.New(m2m.Config{TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Store: store})
		require.NoError(b, err)
		b.Cleanup(func() { c.Close() })
		return c
	}
	token := func(b *testing.B, c *m2m.Client, aud m2m.Audience) {
		src, err := c.Source(aud)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := src.TokenContext(ctx); err != nil {
			b.Fatal(err)
		}
	}
	store, _ := newTestStore(b, Options{})

	b.Run("no store", func(b *testing.B) {
		c := newClient(b, nil)
		for b.Loop() {
			token(b, c, newAudience())
		}
	})
	b.Run("store hit", func(b *testing.B) {
		c, other := newClient(b, store), newClient(b, store)
		for i := 0; i < b.N; i++ {
			aud := newAudience()
			b.StopTimer()
			token(b, other, aud) // another process fetched and saved it
			b.StartTimer()
			token(b, c, aud)
		}
	})
	b.Run("store miss, lease taken", func(b *testing.B) {
		c := newClient(b, store)
		for b.Loop() {
			token(b, c, newAudience())
		}
	})
	b.Run("lease lost", func(b *testing.B) {
		c := newClient(b, rivalStore{Store: store})
		for b.Loop() {
			token(b, c, newAudience())
		}
	})
}

// rivalStore plays another process that takes each key's lease just
// before this one tries, stores its token and releases the lease just
// after (three Redis round trips added to the measured path).
type rivalStore struct{ *Store }

func (r rivalStore) TryLease(ctx context.Context, key m2m.StoreKey, ttl time.Duration) (func(context.Context), bool, error) {
	release, ok, err := r.Store.TryLease(ctx, key, ttl)
	if err != nil || !ok {
		return nil, false, fmt.Errorf("rival: lease: ok %v, %v", ok, err)
	}
	now := time.Now()
	if err := r.Save(ctx, key, &m2m.SharedToken{AccessToken: "rival-" + randomString(), TokenType: "Bearer",
		Obtained: now, Expiry: now.Add(time.Hour)}); err != nil {
		return nil, false, err
	}
	defer release(ctx)
	return r.Store.TryLease(ctx, key, ttl)
}

// BenchmarkHotPath measures a fresh token's hand-out with and without a
// Store configured: the Store is not on this path.
func BenchmarkHotPath(b *testing.B) {
	auth := newFleetAuth(b, time.Hour)
	cfg := auth.register("hot")
	store, _ := newTestStore(b, Options{})
	for _, tc := range []struct {
		name  string
		store m2m.Store
	}{{"no store", nil}, {"store", store}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := m2m.New(m2m.Config{TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Store: tc.store})
			require.NoError(b, err)
			defer c.Close()
			src, err := c.Source(newAudience())
			require.NoError(b, err)
			ctx := context.Background()
			_, err = src.TokenContext(ctx)
			require.NoError(b, err)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
