package m2m

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/backoff"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// Refresh timing bounds (see schedule).
const (
	// minRefreshAhead is the least time before expiry a refresh begins
	// (for tokens living at least five times this), whatever
	// RefreshFraction says: time for the fetch to finish.
	minRefreshAhead = time.Second
	// maxExpirySkew is the most a token's use ends before its real
	// expiry, so it does not arrive expired at the callee.
	maxExpirySkew = 10 * time.Second
)

// Phases of a cached token.
const (
	fresh int32 = iota
	stale
	expired
)

// tokenState is one cached token. A new fetch stores a new one. All its
// fields are immutable but phase, which timers move from fresh to stale at
// refreshAt and to expired at expireAt: the hot path reads one atomic
// instead of the clock (time.Now costs more than the rest of it). Like any
// monotonic time in Go, the timers do not count time a machine spends
// suspended; a server is not suspended, and the callee's exp check stays
// the last word.
type tokenState struct {
	tok       *oauth2.Token
	auth      []string // the Authorization header value, built once
	obtained  time.Time
	refreshAt time.Time // fresh before, stale after
	expireAt  time.Time // expired from here on (expiry less a skew)
	from      wire.LifetimeSource

	phase atomic.Int32
	stops [2]func() bool // the phase timers
}

// leaveTimeFor moves the refresh point earlier, if need be, so that a
// refresh taking d still ends before the token is taken as expired: with
// short tokens and a slow endpoint, a fixed fraction of the lifetime is
// not enough. It never moves it before the token was obtained.
func (st *tokenState) leaveTimeFor(d time.Duration) {
	if latest := st.expireAt.Add(-d); latest.Before(st.refreshAt) {
		st.refreshAt = latest
		if st.refreshAt.Before(st.obtained) {
			st.refreshAt = st.obtained
		}
	}
}

// arm starts the phase timers of st, or sets its phase at once when a
// point is already past.
func (st *tokenState) arm(clk clock.Clock, now time.Time) {
	for i, p := range []struct {
		at    time.Time
		phase int32
	}{{st.refreshAt, stale}, {st.expireAt, expired}} {
		if d := p.at.Sub(now); d > 0 {
			phase := p.phase
			st.stops[i] = clk.AfterFunc(d, func() { st.advance(phase) })
		} else {
			st.advance(p.phase)
		}
	}
}

// advance moves st forward to phase, never back.
func (st *tokenState) advance(phase int32) {
	for {
		cur := st.phase.Load()
		if cur >= phase || st.phase.CompareAndSwap(cur, phase) {
			return
		}
	}
}

// disarm stops st's phase timers.
func (st *tokenState) disarm() {
	for _, stop := range st.stops {
		if stop != nil {
			stop()
		}
	}
}

// schedule returns when a token obtained at obtained and living life turns
// stale and when it is taken as expired.
//
// The refresh window (the time before expiry a refresh begins) is
// (1-fraction) of the lifetime, at most maxAhead so long tokens are not
// renewed hours early, and at least min(1 s, life/5) so the fetch has time
// to finish even when RefreshFraction is close to 1. Jitter widens the window by up to jitter×window,
// at random, so a fleet started together spreads its refreshes.
func schedule(obtained time.Time, life time.Duration, fraction, jitter float64, maxAhead time.Duration, r float64) (refreshAt, expireAt time.Time) {
	ahead := time.Duration(float64(life) * (1 - fraction)).Round(time.Millisecond)
	ahead = min(ahead, maxAhead)
	ahead = max(ahead, min(minRefreshAhead, life/5))
	ahead += time.Duration(float64(ahead) * jitter * r)
	ahead = ahead.Round(time.Millisecond)
	skew := min(maxExpirySkew, life/10)
	expireAt = obtained.Add(life - skew)
	refreshAt = obtained.Add(life - ahead)
	if refreshAt.Before(obtained) {
		refreshAt = obtained
	}
	if refreshAt.After(expireAt) {
		refreshAt = expireAt
	}
	return refreshAt, expireAt
}

// entry caches the token of one (audience, scope set). It is shared by all
// sources of that key and is safe for concurrent use.
//
// Reads are lock-free: state is an atomic pointer to an immutable
// tokenState. At most one fetch runs at a time: it is recorded in inflight
// under mu before it starts (the pattern of go-oidc's remote key set), so
// every caller that finds no usable token joins the same call and waits on
// its own context. Why not singleflight: the stale path must learn "is a
// refresh running" without allocating, and Close must wait for the fetch
// goroutine, which singleflight.DoChan starts out of our sight.
type entry struct {
	c        *Client
	audience string
	scopes   []string // sorted
	scopeKey string   // scopes joined by " "

	state    atomic.Pointer[tokenState]
	inflight atomic.Pointer[call]        // set under mu
	retryAt  atomic.Int64                // unix ns: no stale refresh before this
	failures atomic.Int32                // consecutive failed fetches
	hard     atomic.Pointer[hardFailure] // a recent non-retryable failure
	mu       sync.Mutex
}

// hardFailure is a non-retryable fetch error, answered to callers without
// a token until until, so a misconfigured fleet cannot hammer the server.
type hardFailure struct {
	err   error
	until time.Time
}

// call is one fetch that any number of callers wait for.
type call struct {
	done chan struct{} // closed when st/err are set
	st   *tokenState
	err  error
}

// get returns a usable token state, fetching one if needed.
func (e *entry) get(ctx context.Context) (*tokenState, error) {
	if st := e.state.Load(); st != nil {
		switch st.phase.Load() {
		case fresh:
			if e.c.cfg.Observer != nil {
				e.observe(Event{Kind: EventCacheHit})
			}
			return st, nil // the hot path: no lock, no clock, no allocation
		case stale:
			if e.inflight.Load() == nil && e.c.clock.Now().UnixNano() >= e.retryAt.Load() {
				e.start()
			}
			if e.c.cfg.Observer != nil {
				e.observe(Event{Kind: EventStaleServe})
			}
			return st, nil // served while one refresh runs
		}
	}
	if f := e.hard.Load(); f != nil && e.c.clock.Now().Before(f.until) {
		return nil, f.err
	}
	c := e.start()
	select {
	case <-c.done:
		return c.st, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start returns the running fetch, starting one if none runs.
func (e *entry) start() *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.inflight.Load(); c != nil {
		return c
	}
	c := &call{done: make(chan struct{})}
	if !e.c.track() {
		c.err = ErrClosed
		close(c.done)
		return c
	}
	e.inflight.Store(c)
	go e.run(c)
	return c
}

// run performs one fetch under the Client's context (never a caller's) and
// the fetch timeout, then publishes the result.
func (e *entry) run(c *call) {
	defer e.c.wg.Done()
	ctx, cancel := context.WithTimeout(e.c.ctx, e.c.cfg.FetchTimeout)
	began := e.c.clock.Now()
	st, attempts, err := e.c.fetch(ctx, e)
	cancel()
	now := e.c.clock.Now()
	took := now.Sub(began)
	if err != nil && e.c.closed.Load() {
		err = ErrClosed
	}
	if err == nil {
		// The next refresh should take about as long as this fetch: leave
		// it twice that before the token expires.
		st.leaveTimeFor(2 * took)
		st.arm(e.c.clock, now)
		if old := e.state.Swap(st); old != nil {
			old.disarm()
		}
		e.failures.Store(0)
		e.retryAt.Store(0)
		e.hard.Store(nil)
		e.observe(Event{Kind: EventFetch, Duration: took, Attempts: attempts})
		e.log(slog.LevelDebug, "m2m: token fetched",
			slog.Duration("lifetime", st.tok.Expiry.Sub(st.obtained)),
			slog.String("lifetime_from", string(st.from)),
			slog.Int("attempts", attempts),
			slog.Duration("took", took))
	} else {
		e.failed(now, err, attempts, took)
	}
	c.st, c.err = st, err
	e.inflight.Store(nil)
	close(c.done)
}

// failed records a failed fetch: the next background refresh waits a
// growing, jittered delay, and a non-retryable error is cached for
// ErrorCacheTTL so callers without a token get it without a request.
func (e *entry) failed(now time.Time, err error, attempts int, took time.Duration) {
	n := e.failures.Add(1)
	cfg := &e.c.cfg
	wait := cfg.RetryBaseDelay + backoff.Delay(int(n)-1, cfg.RetryBaseDelay, cfg.RetryMaxDelay, cfg.rand())
	if !retryable(err) && cfg.ErrorCacheTTL > 0 {
		until := now.Add(cfg.ErrorCacheTTL)
		e.hard.Store(&hardFailure{err: err, until: until})
		wait = max(wait, cfg.ErrorCacheTTL)
	}
	e.retryAt.Store(now.Add(wait).UnixNano())
	kind := FailureKind(err)
	e.observe(Event{Kind: EventFailure, Duration: took, Attempts: attempts, Err: err, Failure: kind})
	msg := "m2m: token fetch failed"
	if st := e.state.Load(); st != nil && st.phase.Load() != expired {
		msg = "m2m: token refresh failed; serving the current token until it expires"
	}
	e.log(slog.LevelWarn, msg, slog.String("failure", kind), slog.Int("attempts", attempts),
		slog.Duration("next_try_in", wait), slog.Duration("took", took), slog.String("error", err.Error()))
}

// evict drops st if it is still the cached token (a callee answered 401
// to it), so the next caller fetches a new one. Concurrent evictions of
// the same token drop it once.
func (e *entry) evict(st *tokenState) bool {
	if !e.state.CompareAndSwap(st, nil) {
		return false
	}
	st.disarm()
	e.observe(Event{Kind: EventEviction})
	e.log(slog.LevelInfo, "m2m: token rejected by a callee (401), evicted")
	return true
}
