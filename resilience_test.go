package m2m

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStaleServedThroughOutageUntilExpiry(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 })
	rec := &recorder{}
	// backoff grows: 150 ms, 200 ms, 300 ms, 500 ms, …
	c, fc := newTestClientRand(t, ts, func() float64 { return 0.5 }, func(cfg *Config) {
		cfg.MaxRetries = -1
		cfg.Observer = rec
	})
	src := mustSource(t, c, eventAudience)
	first, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
	})
	// From the refresh point (80 s) to the expiry less its skew (90 s),
	// every caller gets the current token; failed refreshes are retried
	// in the background with a growing delay, not on every call.
	for at := 81 * time.Second; at < 90*time.Second; at += 500 * time.Millisecond {
		fc.Set(epoch.Add(at))
		for range 10 {
			tok, err := src.TokenContext(context.Background())
			require.NoError(t, err, "at %v", at)
			assert.Same(t, first, tok)
		}
		require.Eventually(t, func() bool { return src.full.Load().inflight.Load() == nil }, 30*time.Second, time.Millisecond)
	}
	refreshes := ts.hits.Load() - 1
	assert.Greater(t, refreshes, int64(3), "the refresh keeps being retried")
	assert.Less(t, refreshes, int64(18), "with backoff, not on every call")
	assert.NotEmpty(t, rec.of(EventStaleServe))

	fc.Set(epoch.Add(90 * time.Second))
	_, err = src.TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te, "past expiry the caller sees the real error")
	assert.Equal(t, http.StatusServiceUnavailable, te.StatusCode)
}

func TestHardFailureIsCachedBriefly(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.ClientSecret = "wrong" })
	src := mustSource(t, c, eventAudience)
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = src.TokenContext(context.Background()) }()
	}
	wg.Wait()
	// Callers that joined the fetch get its error; callers that came
	// after it failed get a *BackoffError wrapping the very same one.
	var te *TokenError
	require.ErrorAs(t, errs[0], &te)
	assert.Equal(t, "invalid_client", te.ErrorCode)
	for _, err := range errs {
		var got *TokenError
		require.ErrorAs(t, err, &got)
		assert.Same(t, te, got, "every caller sees the same failure")
	}
	hits := ts.hits.Load()
	assert.EqualValues(t, 1, hits, "one fetch, however many callers")

	for range 100 {
		_, err := src.TokenContext(context.Background())
		require.ErrorIs(t, err, te)
	}
	assert.Equal(t, hits, ts.hits.Load(), "a hard failure is not asked again within ErrorCacheTTL")
	fc.Advance(DefaultErrorCacheTTL)
	_, err := src.TokenContext(context.Background())
	require.Error(t, err)
	assert.Equal(t, hits+1, ts.hits.Load())
}

// rejectingAPI answers 401 to the tokens in bad and records what it saw.
type rejectingAPI struct {
	*httptest.Server
	mu     sync.Mutex
	bad    map[string]bool
	bodies []string
	auths  []string
	status int // when non-zero, answered to every request
}

func newRejectingAPI(t *testing.T) *rejectingAPI {
	a := &rejectingAPI{bad: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		a.bodies = append(a.bodies, string(b))
		a.auths = append(a.auths, auth)
		bad, status := a.bad[auth], a.status
		a.mu.Unlock()
		switch {
		case status != 0:
			w.WriteHeader(status)
		case bad:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *rejectingAPI) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.auths)
}

func TestReplayOn401(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	setup := func(t *testing.T) (*tokenServer, *rejectingAPI, *http.Client, *TokenSource, *recorder) {
		ts := newTokenServer(t)
		rec := &recorder{}
		c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.Observer = rec })
		api := newRejectingAPI(t)
		src := mustSource(t, c, Audience{Name: "event", Scopes: []string{"event.create"}, URL: api.URL})
		tok, err := src.TokenContext(ctx) // the token the callee will reject
		require.NoError(t, err)
		api.bad[tok.AccessToken] = true
		return ts, api, &http.Client{Transport: NewTransport(nil, src)}, src, rec
	}

	t.Run("replayable body is sent again with a new token", func(t *testing.T) {
		t.Parallel()
		ts, api, hc, _, rec := setup(t)
		resp, err := hc.Post(api.URL+"/events", "application/json", strings.NewReader(`{"title":"standup"}`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, []string{`{"title":"standup"}`, `{"title":"standup"}`}, api.bodies)
		assert.NotEqual(t, api.auths[0], api.auths[1])
		assert.EqualValues(t, 2, ts.hits.Load())
		assert.Len(t, rec.of(EventEviction), 1)
		assert.Len(t, rec.of(EventReplay), 1)
	})
	t.Run("a body that cannot be replayed gets the 401, the token is still evicted", func(t *testing.T) {
		t.Parallel()
		ts, api, hc, src, _ := setup(t)
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/events", io.NopCloser(strings.NewReader("once")))
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Equal(t, 1, api.requests())
		tok, err := src.TokenContext(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, api.auths[0], tok.AccessToken, "the next request gets a new token")
		assert.EqualValues(t, 2, ts.hits.Load())
	})
	for _, tc := range []struct {
		name          string
		status        int   // answered to every request
		requests      int   // the callee sees
		tokenRequests int64 // the token endpoint sees
		why           string
	}{
		{"401 every time: one replay, never a loop", http.StatusUnauthorized, 2, 2, "one replay, no more"},
		{"403 is not retried", http.StatusForbidden, 1, 1, "a new token would carry the same scopes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts, api, hc, _, _ := setup(t)
			api.mu.Lock()
			api.status = tc.status
			api.mu.Unlock()
			resp, err := hc.Get(api.URL + "/events")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.requests, api.requests(), tc.why)
			assert.Equal(t, tc.tokenRequests, ts.hits.Load())
		})
	}
	t.Run("concurrent 401s cause one refetch", func(t *testing.T) {
		t.Parallel()
		ts, api, _, src, rec := setup(t)
		// Every request carries the rejected token: a base that holds
		// them until all are in flight.
		var inFlight sync.WaitGroup
		inFlight.Add(20)
		gate := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if api.bad[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
				inFlight.Done()
				inFlight.Wait()
			}
			return http.DefaultTransport.RoundTrip(r)
		})
		hc := &http.Client{Transport: NewTransport(gate, src)}
		var wg sync.WaitGroup
		var ok atomic.Int32
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := hc.Get(api.URL + "/events")
				if assert.NoError(t, err) {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		assert.EqualValues(t, 20, ok.Load())
		assert.EqualValues(t, 2, ts.hits.Load(), "one refetch for twenty 401s")
		assert.Len(t, rec.of(EventEviction), 1)
		assert.Len(t, rec.of(EventReplay), 20)
	})
}

func TestObservabilityEvents(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 })
	var logs testmain.Buffer
	rec := &recorder{}
	c, fc := newTestClient(t, ts, func(cfg *Config) {
		cfg.Observer = rec
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	fc.Advance(85 * time.Second)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rec.of(EventFetch)) == 2 }, 30*time.Second, time.Millisecond)

	fetch := rec.of(EventFetch)[0]
	assert.Equal(t, "event", fetch.Audience)
	assert.Equal(t, "event.create event.view", fetch.Scopes)
	assert.Equal(t, 1, fetch.Attempts)
	assert.Len(t, rec.of(EventCacheHit), 1)
	assert.Len(t, rec.of(EventStaleServe), 1)
	assert.Contains(t, logs.String(), "level=DEBUG msg=\"m2m: token fetched\" audience=event")
	assert.NotContains(t, logs.String(), "tok-")
	for k := EventCacheHit; k <= EventReplay; k++ {
		assert.NotEqual(t, "unknown", k.String())
	}
	assert.Equal(t, "unknown", EventKind(99).String())
}

func TestClassifyError(t *testing.T) {
	t.Parallel()
	assert.Equal(t, FailureKind(""), ClassifyError(nil))
	assert.Equal(t, FailureClosed, ClassifyError(ErrClosed))
	assert.Equal(t, FailureRateLimited, ClassifyError(&TokenError{StatusCode: 429}))
	assert.Equal(t, FailureServer, ClassifyError(&TokenError{StatusCode: 503}))
	assert.Equal(t, FailureClient, ClassifyError(&TokenError{StatusCode: 400}))
	assert.Equal(t, FailureInvalidResponse, ClassifyError(ErrInvalidResponse))
	assert.Equal(t, FailureTimeout, ClassifyError(context.DeadlineExceeded))
	assert.Equal(t, FailureNetwork, ClassifyError(errors.New("connection reset")))
}
