package m2m

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitIdle waits until e runs no fetch; a fetch that never ends fails the
// test instead of hanging it.
func waitIdle(t *testing.T, e *entry) {
	t.Helper()
	require.Eventually(t, func() bool { return e.inflight.Load() == nil }, 30*time.Second, time.Millisecond,
		"a fetch did not end")
}

func TestKeepWarmRefreshesUsedKeysOnly(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 }) // stale at 70 s, expired at 90 s
	c, fc := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	e := src.full.Load()
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	fc.Advance(70 * time.Second) // the refresh point, nobody asking
	waitIdle(t, e)
	require.EqualValues(t, 2, ts.hits.Load(), "a used token is renewed in the background")
	tok, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.Equal(t, epoch.Add(170*time.Second), tok.Expiry, "callers get the renewed token at once")

	fc.Advance(70 * time.Second) // the renewed token's refresh point
	waitIdle(t, e)
	require.EqualValues(t, 3, ts.hits.Load(), "it was used: renewed again")
	fc.Advance(70 * time.Second) // this one was never handed out
	waitIdle(t, e)
	assert.EqualValues(t, 3, ts.hits.Load(), "a token nobody used is not renewed")
}

func TestKeepWarmCanBeDisabled(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 })
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.DisableKeepWarm = true })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	fc.Advance(80 * time.Second)
	waitIdle(t, src.full.Load())
	assert.EqualValues(t, 1, ts.hits.Load())
}

func TestIdleKeysArePruned(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 60 })
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.DisableKeepWarm = true })
	const tenants = 50
	sources := make([]*TokenSource, tenants)
	for i := range sources {
		sources[i] = mustSource(t, c, Audience{Name: fmt.Sprintf("tenant-%d", i)})
		_, err := sources[i].TokenContext(context.Background())
		require.NoError(t, err)
	}
	entries := func() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.entries) }
	require.Equal(t, tenants, entries())

	// Tenant 0 keeps working; the others go quiet. Tokens expire after a
	// minute; an entry idle at two looks in a row (every 10 min) goes.
	for range 3 {
		fc.Advance(pruneEvery)
		_, err := sources[0].TokenContext(context.Background())
		require.NoError(t, err)
	}
	assert.Equal(t, 1, entries(), "only the key in use is kept")

	// A source whose entry was pruned gets a new one on its next use.
	tok, err := sources[7].TokenContext(context.Background())
	require.NoError(t, err)
	assert.Contains(t, tok.AccessToken, "tenant-7")
	assert.Equal(t, 2, entries())
}
