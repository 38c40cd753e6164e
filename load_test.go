package m2m

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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

// TestLoadThroughFlakyTokenServer drives 200 goroutines through the
// Transport for a few seconds while the token server fails 30% of its
// requests and tokens live one second. It is bounded in time and talks
// only to 127.0.0.1.
func TestLoadThroughFlakyTokenServer(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		workers  = 200
		run      = 3 * time.Second
		lifetime = time.Second
	)
	var (
		mu                sync.Mutex
		issued            = map[string]time.Time{} // token → expiry, by the server's clock
		attempts, fetched atomic.Int64
		inFlight, maxIn   atomic.Int64
	)
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxIn.Load(); n > m && !maxIn.CompareAndSwap(m, n); m = maxIn.Load() {
		}
		attempts.Add(1)
		if rand.Float64() < 0.3 {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		tok := fmt.Sprintf("tok-%d", fetched.Add(1))
		mu.Lock()
		issued[tok] = time.Now().Add(lifetime)
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": lifetime.Seconds(), "token_type": "bearer"})
	}))
	defer auth.Close()

	// The promise is checked where the SDK hands a request on: the token
	// it attached had not expired, by the server's record, when the
	// request was made. (Any later check would also count how long a busy
	// machine left the goroutine waiting in between: with 200 of them on
	// two loaded cores, that can be longer than a token lives.)
	var served, expiredSent, missing atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		_, known := issued[tok]
		mu.Unlock()
		if !ok || !known {
			missing.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		served.Add(1)
	}))
	defer api.Close()

	c, err := New(Config{TokenURL: auth.URL, ClientID: testID, ClientSecret: testSecret,
		MaxRetries: 5, RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	src := mustSource(t, c, Audience{Name: "event", Scopes: []string{"event.view"}, URL: api.URL})
	base := &http.Transport{MaxIdleConnsPerHost: workers}
	defer base.CloseIdleConnections()
	checked := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		exp, known := issued[tok]
		mu.Unlock()
		if began, _ := r.Context().Value(beganKey{}).(time.Time); known && !began.Before(exp) {
			expiredSent.Add(1)
		}
		return base.RoundTrip(r)
	})
	hc := &http.Client{Transport: NewTransport(checked, src)} // the run's context bounds every request

	var unauthorized, failed atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				began := context.WithValue(ctx, beganKey{}, time.Now())
				req, _ := http.NewRequestWithContext(began, http.MethodGet, api.URL+"/events", nil)
				resp, err := hc.Do(req)
				if err != nil && ctx.Err() != nil {
					break // the run ended during this request
				}
				if err != nil {
					if failed.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					unauthorized.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	lifetimes := float64(run) / float64(lifetime)
	t.Logf("%d requests served; %d token requests, %d tokens (%.2f per lifetime); max %d concurrent token requests",
		served.Load(), attempts.Load(), fetched.Load(), float64(fetched.Load())/lifetimes, maxIn.Load())
	assert.Zero(t, expiredSent.Load(), "no request was sent with an expired token")
	assert.Zero(t, missing.Load(), "no request reached the callee without a live token")
	assert.Zero(t, unauthorized.Load(), "no 401 reached a caller")
	assert.Zero(t, failed.Load(), "no caller failed while a token could be had; the first: %v", firstErr.Load())
	assert.GreaterOrEqual(t, served.Load(), int64(workers), "every worker got through")
	assert.EqualValues(t, 1, maxIn.Load(), "one token request at a time for the key")
	// Renewal is per lifetime, not per request (the exact cadence is
	// measured by TestRefreshCadence on the fake clock, not here).
	assert.LessOrEqual(t, float64(fetched.Load())/lifetimes, 5.0, "tokens are renewed about once per lifetime, not per request")
}

// beganKey holds when a load-test request was made.
type beganKey struct{}
