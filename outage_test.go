package m2m

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutageSpacesFetches: with no token and an endpoint answering 503,
// many callers make at most one token request per backoff step; callers in
// between get the last failure at once, typed, saying when the next try is.
func TestOutageSpacesFetches(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, _ *http.Request) bool {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return true
		}
	})
	// rand 0.5: the waits between fetches grow 150 ms, 200 ms, 300 ms, …
	c, fc := newTestClientRand(t, ts, func() float64 { return 0.5 }, func(cfg *Config) { cfg.MaxRetries = -1 })
	src := mustSource(t, c, eventAudience)

	var backoffs int
	steps := 0
	for elapsed := time.Duration(0); elapsed < 10*time.Second; elapsed += 10 * time.Millisecond {
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = src.TokenContext(context.Background()) }()
		}
		wg.Wait()
		for _, err := range errs {
			require.Error(t, err)
			var te *TokenError
			require.ErrorAs(t, err, &te, "every caller sees the server's answer")
			assert.Equal(t, http.StatusServiceUnavailable, te.StatusCode)
			var be *BackoffError
			if errors.As(err, &be) {
				backoffs++
				assert.True(t, be.Next.After(fc.Now()), "the next try is in the future")
				assert.Contains(t, be.Error(), "until the next try at")
			}
		}
		fc.Advance(10 * time.Millisecond)
		steps++
	}
	// 10 s of waits growing from 150 ms and capped at 10 s: 8 steps.
	hits := ts.hits.Load()
	assert.LessOrEqual(t, hits, int64(9), "one token request per backoff step, not per caller")
	assert.GreaterOrEqual(t, hits, int64(6), "fetches go on, spaced")
	assert.Greater(t, backoffs, steps*40, "callers between fetches get the failure at once")
}

// TestRetryAfterSpacesFetches: a Retry-After counts across fetches, not
// only between the retries inside one.
func TestRetryAfterSpacesFetches(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
	})
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.MaxRetries = -1 })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.Error(t, err)
	for at := time.Second; at < 5*time.Second; at += time.Second {
		fc.Set(epoch.Add(at))
		_, err := src.TokenContext(context.Background())
		var be *BackoffError
		require.ErrorAs(t, err, &be, "at %v", at)
		assert.True(t, be.Next.Equal(epoch.Add(5*time.Second)), "next try at %v", be.Next)
	}
	assert.EqualValues(t, 1, ts.hits.Load())
	fc.Set(epoch.Add(5 * time.Second))
	_, err = src.TokenContext(context.Background())
	require.Error(t, err)
	assert.EqualValues(t, 2, ts.hits.Load())
}

// TestCachedErrorIsReleased: a non-retryable error (and its body) is kept
// only until the next fetch may start.
func TestCachedErrorIsReleased(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.ClientSecret = "wrong" })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.Error(t, err)
	e := src.full.Load()
	require.NotNil(t, e.lastErr.Load())
	fc.Advance(DefaultErrorCacheTTL)
	assert.Nil(t, e.lastErr.Load(), "the failure and its body are released when the wait ends")
}

// TestCalleeRejectingEveryTokenPausesEvictions: a callee that rejects
// every token (a misconfigured audience, say) costs one refetch, not one
// per request, until the pause ends.
func TestCalleeRejectingEveryTokenPausesEvictions(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	rec := &recorder{}
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.Observer = rec })
	src := mustSource(t, c, Audience{Name: "event", URL: api.URL})
	hc := &http.Client{Transport: NewTransport(nil, src)}
	for range 30 {
		resp, err := hc.Get(api.URL + "/events")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	assert.EqualValues(t, 2, ts.hits.Load(), "the first token and one refetch")
	assert.Len(t, rec.of(EventEvictionsPaused), 1)
	assert.Len(t, rec.of(EventReplay), 1)

	fc.Advance(DefaultErrorCacheTTL) // the pause ends: one more try
	resp, err := hc.Get(api.URL + "/events")
	require.NoError(t, err)
	resp.Body.Close()
	assert.EqualValues(t, 3, ts.hits.Load())
}

// TestNilResponseBodyDoesNotPanic: a base RoundTripper that answers 401
// with a nil Body (against its contract) does not crash the Transport.
func TestNilResponseBodyDoesNotPanic(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, Audience{Name: "event", URL: "https://calendar.test"})
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusUnauthorized}, nil
	})
	tr := NewTransport(base, src)
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, "https://calendar.test/x", nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
}

// TestTokenRequestsNeverFollowRedirects: even with a caller's HTTPClient
// that follows redirects, the credentials never reach a redirect target.
func TestTokenRequestsNeverFollowRedirects(t *testing.T) {
	t.Parallel()
	elsewhere := newTokenServer(t)
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, elsewhere.URL+"/token", http.StatusTemporaryRedirect)
			return true
		}
	})
	c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.HTTPClient = &http.Client{} })
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, http.StatusTemporaryRedirect, te.StatusCode)
	assert.True(t, strings.Contains(te.Hint, "redirects"), te.Hint)
	assert.Zero(t, elsewhere.hits.Load(), "the redirect target got nothing")
}

// TestEvict: what Transport does for a 401, for callers of other
// protocols. Concurrent refusals of one token evict it once and cause one
// fetch; a pause keeps the refused token; a scope set's token is evicted
// alone.
func TestEvict(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	rec := &recorder{}
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.Observer = rec })
	src := mustSource(t, c, Audience{Name: "event", Scopes: []string{"event.view", "event.create"}})
	ctx := context.Background()
	narrow := WithScopes(ctx, "event.view")

	first, err := src.TokenContext(ctx)
	require.NoError(t, err)
	view, err := src.TokenContext(narrow)
	require.NoError(t, err)
	require.EqualValues(t, 2, ts.hits.Load())

	var wg sync.WaitGroup
	var retry atomic.Int32
	for range 50 {
		wg.Go(func() {
			if src.Evict(ctx, first) {
				retry.Add(1)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 50, retry.Load(), "every caller may retry: the token is gone")
	assert.Len(t, rec.of(EventEviction), 1, "one token, one eviction")
	second, err := src.TokenContext(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, first.AccessToken, second.AccessToken)
	assert.EqualValues(t, 3, ts.hits.Load(), "one fetch for all of them")
	got, err := src.TokenContext(narrow)
	require.NoError(t, err)
	assert.Equal(t, view.AccessToken, got.AccessToken, "the other scope set keeps its token")

	assert.True(t, src.Evict(ctx, first), "an old token: a newer one is there already")
	assert.Len(t, rec.of(EventEviction), 1)
	assert.False(t, src.Evict(ctx, nil))

	src.PauseEvictions(ctx)
	assert.Len(t, rec.of(EventEvictionsPaused), 1)
	assert.False(t, src.Evict(ctx, second), "paused: the token stays")
	got, err = src.TokenContext(ctx)
	require.NoError(t, err)
	assert.Equal(t, second.AccessToken, got.AccessToken)
	assert.True(t, src.Evict(narrow, view), "the pause is the key's alone")

	fc.Advance(DefaultErrorCacheTTL)
	assert.True(t, src.Evict(ctx, second), "the pause has ended")
	assert.Len(t, rec.of(EventEviction), 3)
	c.Close()
	assert.False(t, src.Evict(ctx, second), "a closed Client evicts nothing")
}
