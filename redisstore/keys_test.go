package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/stretchr/testify/require"
)

// keyCatcher is an m2m.Store that records the key of its first Load and
// answers with a long-lived token, so a Client hands it a key without any
// token request.
type keyCatcher struct {
	mu  sync.Mutex
	key m2m.StoreKey
}

func (c *keyCatcher) Load(_ context.Context, key m2m.StoreKey) (*m2m.SharedToken, error) {
	c.mu.Lock()
	c.key = key
	c.mu.Unlock()
	now := time.Now()
	return &m2m.SharedToken{AccessToken: "caught", TokenType: "Bearer", Obtained: now, Expiry: now.Add(time.Hour)}, nil
}

func (c *keyCatcher) Save(context.Context, m2m.StoreKey, *m2m.SharedToken) error { return nil }

func (c *keyCatcher) TryLease(context.Context, m2m.StoreKey, time.Duration) (func(context.Context), bool, error) {
	return nil, false, nil
}

func (c *keyCatcher) Evict(context.Context, m2m.StoreKey, string) error { return nil }

// storeKey returns the StoreKey an m2m Client uses for audience with the
// client secret secret (same token URL and client id for every test):
// the same audience with another secret has the same ID and other key
// material.
func storeKey(t testing.TB, audience, secret string) m2m.StoreKey {
	t.Helper()
	catcher := &keyCatcher{}
	c, err := m2m.New(m2m.Config{TokenURL: "http://127.0.0.1:1/token", ClientID: "client", ClientSecret: secret, Store: catcher})
	require.NoError(t, err)
	defer c.Close()
	src, err := c.Source(m2m.Audience{Name: audience})
	require.NoError(t, err)
	tok, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	require.Equal(t, "caught", tok.AccessToken)
	catcher.mu.Lock()
	defer catcher.mu.Unlock()
	require.Len(t, catcher.key.ID(), 64)
	return catcher.key
}
