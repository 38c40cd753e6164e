package m2m

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefreshCadence measures, on the fake clock, what the default refresh
// schedule costs and buys: token requests per token lifetime for a key in
// steady use, and the outage cover, the time between a token's refresh
// point and the moment it is taken as expired (during which a failing
// token endpoint is retried in the background while the token is still
// served). scripts/bench.sh prints its table into BENCHMARKS.md.
func TestRefreshCadence(t *testing.T) {
	t.Parallel()
	rows := []struct {
		life             time.Duration
		maxPerLife       float64
		minCover         time.Duration
		lifetimes, steps int // how long to run, how often callers ask per lifetime
	}{
		{time.Minute, 1.5, 10 * time.Second, 40, 120},
		{5 * time.Minute, 1.35, time.Minute, 40, 120},
		{time.Hour, 1.1, 5 * time.Minute, 40, 120},
		{24 * time.Hour, 1.01, 5 * time.Minute, 10, 600},
	}
	t.Logf("| token lifetime | token requests per lifetime | outage cover (least) |")
	t.Logf("|---|---:|---:|")
	for _, row := range rows {
		ts := newTokenServer(t)
		ts.set(func(ts *tokenServer) { ts.expiresIn = row.life.Seconds() })
		jitter := rand.New(rand.NewPCG(1, uint64(row.life)))
		c, fc := newTestClientRand(t, ts, jitter.Float64, nil)
		src := mustSource(t, c, eventAudience)
		e := src.full.Load()
		cover := time.Duration(1<<63 - 1)
		var first, last *tokenState
		fetches := 0
		// Callers ask every step; the clock also stops at every timer, so
		// a refresh happens at its refresh point, not at the next step.
		step := row.life / time.Duration(row.steps)
		for end := fc.Now().Add(time.Duration(row.lifetimes) * row.life); fc.Now().Before(end); {
			_, err := src.TokenContext(context.Background())
			require.NoError(t, err)
			d := step
			if next, ok := fc.Next(); ok && next > 0 {
				d = min(d, next)
			}
			fc.Advance(d)
			waitIdle(t, e)
			if st := e.state.Load(); st != nil && st != last {
				if first == nil {
					first = st
				}
				last = st
				fetches++
				cover = min(cover, st.expireAt.Sub(st.refreshAt))
			}
		}
		require.EqualValues(t, fetches, ts.hits.Load(), "every token request made a token")
		// Requests per lifetime: the lifetime over the mean time between
		// two token requests.
		perLife := float64(row.life) / (float64(last.obtained.Sub(first.obtained)) / float64(fetches-1))
		t.Logf("| %v | %.3f | %v |", row.life, perLife, cover.Round(time.Second))
		assert.LessOrEqual(t, perLife, row.maxPerLife, "%v tokens", row.life)
		assert.GreaterOrEqual(t, cover, row.minCover, "%v tokens", row.life)
	}
}

// TestMemoryPerKey measures what one cached key holds in memory once its
// token is fetched: the entry, the token state and its two phase timers.
// scripts/bench.sh prints the figure into BENCHMARKS.md.
func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates thousands of keys")
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"`+strings.Repeat("t", 800)+`","token_type":"bearer","expires_in":3600}`)
	}))
	defer ts.Close()
	c, err := New(Config{TokenURL: ts.URL, ClientID: testID, ClientSecret: testSecret})
	require.NoError(t, err)
	defer c.Close()
	const keys = 2000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%05d", i)
	}
	sources := make([]*TokenSource, keys)
	before := heap()
	for i := range sources {
		sources[i] = mustSource(t, c, Audience{Name: names[i], Scopes: []string{"read"}})
	}
	for _, s := range sources {
		_, err := s.TokenContext(context.Background())
		require.NoError(t, err)
	}
	after := heap()
	per := (int64(after) - int64(before)) / keys
	t.Logf("| one key (its TokenSource, cache entry and an 800-byte token) | %d bytes | 2 runtime timers, no goroutine |", per)
	assert.Less(t, per, int64(16<<10), "a key stays small")
	runtime.KeepAlive(sources)
}
