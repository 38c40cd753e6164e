package m2m

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSchedule(t *testing.T) {
	t.Parallel()
	at := epoch
	tests := []struct {
		name         string
		life         time.Duration
		r            float64
		refresh, exp time.Duration // offsets from at
		fraction     float64       // 0: 0.8
	}{
		{"one minute at 0.99: the one-second floor", time.Minute, 0, 53 * time.Second, 54 * time.Second, 0.99},
		{"two seconds at 0.99: a fifth of the lifetime", 2 * time.Second, 0, 1400 * time.Millisecond, 1800 * time.Millisecond, 0.99},
		{"one hour at 0.9999: the one-second floor", time.Hour, 0, time.Hour - 11*time.Second, time.Hour - 10*time.Second, 0.9999},
		{"one hour: five minutes of cover", time.Hour, 0, time.Hour - 10*time.Second - 5*time.Minute, time.Hour - 10*time.Second, 0},
		{"one hour, full jitter: 5% more cover", time.Hour, 1, time.Hour - 10*time.Second - 5*time.Minute - 15*time.Second, time.Hour - 10*time.Second, 0},
		{"one day: five minutes of cover", 24 * time.Hour, 0, 24*time.Hour - 10*time.Second - 5*time.Minute, 24*time.Hour - 10*time.Second, 0},
		{"two seconds: 80%", 2 * time.Second, 0, 1400 * time.Millisecond, 1800 * time.Millisecond, 0},
		{"one second: 80%", time.Second, 0, 700 * time.Millisecond, 900 * time.Millisecond, 0},
		{"ten seconds: 80%", 10 * time.Second, 0, 7 * time.Second, 9 * time.Second, 0},
		{"five minutes: 80%", 5 * time.Minute, 0, 5*time.Minute - 10*time.Second - time.Minute, 5*time.Minute - 10*time.Second, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fraction := DefaultRefreshFraction
			if tc.fraction != 0 {
				fraction = tc.fraction
			}
			refresh, exp := schedule(at, tc.life, fraction, DefaultRefreshJitter, DefaultMaxRefreshAhead, tc.r)
			assert.Equal(t, tc.refresh, refresh.Sub(at))
			assert.Equal(t, tc.exp, exp.Sub(at))
			assert.False(t, refresh.After(exp))
		})
	}
}

func TestColdBurstOneRequest(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	hold := make(chan struct{})
	ts.set(func(ts *tokenServer) { ts.hold = hold })
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)

	const n = 1000
	var wg sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := src.TokenContext(context.Background())
			errs[i] = err
			if tok != nil {
				toks[i] = tok.AccessToken
			}
		}()
	}
	require.Eventually(t, func() bool { return ts.hits.Load() == 1 }, 30*time.Second, time.Millisecond)
	close(hold)
	wg.Wait()
	assert.EqualValues(t, 1, ts.hits.Load())
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, toks[0], toks[i])
	}
}

func TestWaiterCancelDoesNotFailSharedFetch(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	hold := make(chan struct{})
	ts.set(func(ts *tokenServer) { ts.hold = hold })
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { _, err := src.TokenContext(ctx); cancelled <- err }()
	patient := make(chan error, 1)
	go func() { _, err := src.TokenContext(context.Background()); patient <- err }()
	require.Eventually(t, func() bool { return ts.hits.Load() == 1 }, 30*time.Second, time.Millisecond)

	cancel()
	assert.ErrorIs(t, <-cancelled, context.Canceled) // returns while the fetch still hangs
	select {
	case err := <-patient:
		t.Fatalf("patient waiter returned early: %v", err)
	default:
	}
	close(hold)
	require.NoError(t, <-patient)
	assert.EqualValues(t, 1, ts.hits.Load())
}

func TestStaleServedDuringSlowRefresh(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 })
	c, fc := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	ctx := context.Background()

	first, err := src.TokenContext(ctx)
	require.NoError(t, err)
	fc.Advance(69 * time.Second) // still fresh (refresh at 70 s: 100 s less a 10 s skew and a 20 s window)
	again, err := src.TokenContext(ctx)
	require.NoError(t, err)
	assert.Same(t, first, again)
	assert.EqualValues(t, 1, ts.hits.Load())

	hold, arrived := make(chan struct{}), make(chan struct{}, 1)
	ts.set(func(ts *tokenServer) { ts.hold, ts.arrived = hold, arrived })
	fc.Advance(2 * time.Second) // stale
	for range 50 {
		tok, err := src.TokenContext(ctx)
		require.NoError(t, err)
		assert.Same(t, first, tok, "the stale token is served while the refresh runs")
	}
	<-arrived
	assert.EqualValues(t, 2, ts.hits.Load(), "exactly one background refresh")

	close(hold)
	require.Eventually(t, func() bool {
		tok, err := src.TokenContext(ctx)
		return err == nil && tok != first
	}, 30*time.Second, time.Millisecond)
	assert.EqualValues(t, 2, ts.hits.Load())
}

func TestExpiredTokenIsFetchedAgain(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 60 })
	c, fc := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	first, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	fc.Advance(55 * time.Second) // past expiry less its 6 s skew
	second, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, first.AccessToken, second.AccessToken)
	assert.EqualValues(t, 2, ts.hits.Load())
	assert.Equal(t, epoch.Add(55*time.Second+time.Minute), second.Expiry)
}

// An expiry timer that a busy machine runs late does not let a stale
// token be served past its expiry: the stale path reads the clock.
func TestLateExpiryTimerServesNoExpiredToken(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 60 })
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.DisableKeepWarm = true })
	src := mustSource(t, c, eventAudience)
	first, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	st := src.full.Load().state.Load()
	st.disarm() // its timers have not run yet...
	fc.Advance(55 * time.Second)
	st.advance(stale) // ...but for the first: past its expiry, it is only stale
	second, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, first.AccessToken, second.AccessToken, "an expired token is never handed out")
	assert.EqualValues(t, 2, ts.hits.Load())
}

func TestFailedStaleRefreshKeepsServingAndSpacesRetries(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 100 })
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.MaxRetries = -1 })
	src := mustSource(t, c, eventAudience)
	first, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	arrived := make(chan struct{}, 10)
	ts.set(func(ts *tokenServer) {
		ts.arrived = arrived
		ts.reply = func(w http.ResponseWriter, _ *http.Request) bool {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
	})
	fc.Advance(85 * time.Second)
	tok, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.Same(t, first, tok)
	<-arrived
	require.Eventually(t, func() bool { return src.full.Load().inflight.Load() == nil }, 30*time.Second, time.Millisecond)
	for range 20 { // within the retry delay: no new attempt
		tok, err = src.TokenContext(context.Background())
		require.NoError(t, err)
		assert.Same(t, first, tok)
	}
	assert.EqualValues(t, 2, ts.hits.Load())
	fc.Advance(DefaultRetryBaseDelay) // rand 0: the least wait
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	<-arrived
	assert.EqualValues(t, 3, ts.hits.Load())
}

func TestScopesNarrowedPerRequest(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	twin := mustSource(t, c, Audience{Name: "event", Scopes: []string{"event.create", "event.view", "event.view"}})

	all, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	create, err := src.TokenContext(WithScopes(context.Background(), "event.create"))
	require.NoError(t, err)
	createAgain, err := twin.TokenContext(WithScopes(context.Background(), "event.create", "event.create"))
	require.NoError(t, err)
	shared, err := twin.TokenContext(context.Background())
	require.NoError(t, err)

	assert.NotEqual(t, all.AccessToken, create.AccessToken)
	assert.Same(t, create, createAgain, "same audience and scope set share one entry")
	assert.Same(t, all, shared)
	assert.EqualValues(t, 2, ts.hits.Load())
	assert.Equal(t, "event.create event.view", ts.form(0).Get("scope"))
	assert.Equal(t, "event.create", ts.form(1).Get("scope"))
	assert.Equal(t, "event", ts.form(1).Get("audience"))
	assert.Equal(t, "event.create", create.Extra("scope"))
}

func TestUndeclaredScopeFailsBeforeNetwork(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	for _, scopes := range [][]string{{"event.delete"}, {"event.create", "file.view"}, {"Event.Create"}, {""}, {"a b"}} {
		_, err := src.TokenContext(WithScopes(context.Background(), scopes...))
		require.ErrorIs(t, err, ErrUndeclaredScope, "%q", scopes)
	}
	assert.EqualValues(t, 0, ts.hits.Load())
	got, ok := ScopesFromContext(WithScopes(context.Background(), "b", "a"))
	assert.True(t, ok)
	assert.Equal(t, []string{"a", "b"}, got)
	_, ok = ScopesFromContext(context.Background())
	assert.False(t, ok)
}

func TestFreshPathAllocatesNothing(t *testing.T) {
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	narrowed := WithScopes(context.Background(), "event.create")
	_, err := src.TokenContext(narrowed)
	require.NoError(t, err)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = src.TokenContext(context.Background()) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = src.TokenContext(narrowed) }))
}

func TestFetchHasItsOwnTimeout(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	hold, arrived := make(chan struct{}), make(chan struct{}, 1)
	defer close(hold)
	ts.set(func(ts *tokenServer) { ts.hold, ts.arrived = hold, arrived })
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.FetchTimeout = 20 * time.Second })
	src := mustSource(t, c, eventAudience)
	done := make(chan error, 1)
	go func() { _, err := src.TokenContext(context.Background()); done <- err }()
	<-arrived
	fc.Advance(20 * time.Second) // the fetch's own clock, not the caller's context
	err := <-done
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, FailureTimeout, ClassifyError(err))
}

func TestCloseEndsFetchesAndLaterCalls(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	hold := make(chan struct{})
	defer close(hold)
	ts.set(func(ts *tokenServer) { ts.hold = hold })
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, eventAudience)
	waiting := make(chan error, 1)
	go func() { _, err := src.TokenContext(context.Background()); waiting <- err }()
	require.Eventually(t, func() bool { return ts.hits.Load() == 1 }, 30*time.Second, time.Millisecond)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-waiting, ErrClosed)
	_, err := src.TokenContext(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
	_, err = c.Source(eventAudience)
	assert.ErrorIs(t, err, ErrClosed)
	require.NoError(t, c.Close(), "Close is idempotent")
}

func TestFetchErrorReachesEveryWaiter(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.ClientSecret = "wrong" })
	src := mustSource(t, c, eventAudience)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := src.TokenContext(context.Background())
			var te *TokenError
			if assert.True(t, errors.As(err, &te)) {
				assert.Equal(t, "invalid_client", te.ErrorCode)
			}
		}()
	}
	wg.Wait()
}

func TestRefreshLeavesTimeForASlowFetch(t *testing.T) {
	t.Parallel()
	st := &tokenState{obtained: epoch, refreshAt: epoch.Add(1600 * time.Millisecond), expireAt: epoch.Add(1800 * time.Millisecond)}
	st.leaveTimeFor(100 * time.Millisecond)
	assert.Equal(t, epoch.Add(1600*time.Millisecond), st.refreshAt, "enough time already")
	st.leaveTimeFor(400 * time.Millisecond)
	assert.Equal(t, epoch.Add(1400*time.Millisecond), st.refreshAt)
	st.leaveTimeFor(time.Hour)
	assert.Equal(t, epoch, st.refreshAt, "never before the token was obtained")
}
