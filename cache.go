package m2m

import (
	"context"
	"errors"
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
	// minEvictionPause is the least time a key stops evicting after a
	// callee rejected a freshly fetched token too.
	minEvictionPause = time.Second
)

// Phases of a cached token.
const (
	fresh int32 = iota
	stale
	expired
)

// tokenState is one cached token. A new fetch stores a new one. All its
// fields are immutable but phase, which timers move from fresh to stale at
// refreshAt and to expired at expireAt (the hot path reads one atomic
// instead of the clock: time.Now costs more than the rest of it), and
// used, set once the token is handed out. A stale token is served only
// while the clock says it has not expired, so an expiry timer a busy
// machine runs late changes nothing; a fresh one trusts its timer, which
// would have to be late by the whole refresh window (at least 200 ms for
// a one-second token, five minutes for an hour) to matter. Like any
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
	shared    bool // loaded from the Store rather than fetched

	phase atomic.Int32
	used  atomic.Bool
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
// point is already past. onStale runs when st turns stale by its timer.
func (st *tokenState) arm(clk clock.Clock, now time.Time, onStale func()) {
	if d := st.refreshAt.Sub(now); d > 0 {
		st.stops[0] = clk.AfterFunc(d, func() {
			st.advance(stale)
			onStale()
		})
	} else {
		st.advance(stale)
	}
	if d := st.expireAt.Sub(now); d > 0 {
		st.stops[1] = clk.AfterFunc(d, func() { st.advance(expired) })
	} else {
		st.advance(expired)
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
// A token is taken as expired a skew before its expiry (10 s, or a tenth
// of a short lifetime), so it never reaches a callee expired. The refresh
// window before that point is (1-fraction) of the lifetime, at most
// maxAhead so a long token costs little more than one request per
// lifetime, and at least min(1 s, life/5) so a fetch has time to finish.
// Jitter widens the window by up to jitter×window, at random, so a fleet
// started together spreads its refreshes. With the defaults a one-hour
// token is refreshed 5 to 5.25 minutes before it is taken as expired:
// about 1.1 requests per lifetime, and five minutes of background retries
// while it is still served.
func schedule(obtained time.Time, life time.Duration, fraction, jitter float64, maxAhead time.Duration, r float64) (refreshAt, expireAt time.Time) {
	window := time.Duration(float64(life) * (1 - fraction)).Round(time.Millisecond)
	window = min(window, maxAhead)
	window = max(window, min(minRefreshAhead, life/5))
	window += time.Duration(float64(window) * jitter * r)
	window = window.Round(time.Millisecond)
	skew := min(maxExpirySkew, life/10)
	expireAt = obtained.Add(life - skew)
	refreshAt = expireAt.Add(-window)
	if refreshAt.Before(obtained) {
		refreshAt = obtained
	}
	return refreshAt, expireAt
}

// entry caches the token of one key. It is shared by all sources of that
// key and is safe for concurrent use.
//
// Reads are lock-free: state is an atomic pointer to an immutable
// tokenState. At most one fetch runs at a time: "is there a usable
// token?", "may we fetch yet?" and "register the fetch" are decided under
// mu, and a fetch publishes its result and clears inflight under mu too,
// so a caller can never start a second fetch in the instant after one
// finished. Every waiter waits on its own context. Why not singleflight:
// the stale path must learn "is a refresh running" without allocating,
// and the decision must see the token the finished fetch stored.
type entry struct {
	env    *env
	key    cacheKey
	scopes []string // the requested scope set, sorted
	req    wire.Request
	skey   StoreKey // set when env.store is

	prepared atomic.Pointer[prepared] // the request body, built on first use

	state    atomic.Pointer[tokenState] // written under mu
	inflight atomic.Pointer[call]       // written under mu
	lastErr  atomic.Pointer[failure]    // written under mu; released by a timer
	touched  atomic.Bool                // a caller took the slow path since the last prune look
	pruned   atomic.Bool                // written under mu

	retryAt atomic.Int64 // unix ns, written under mu: no fetch before this after a failure

	// Guarded by mu.
	mu           sync.Mutex
	failures     int       // consecutive failed fetches
	noEvictUntil time.Time // callees keep rejecting fresh tokens: leave them
}

// failure is the last failed fetch of a key, answered to callers without
// a token until the next fetch may start.
type failure struct {
	err   error
	until time.Time
}

// call is one fetch that any number of callers wait for.
type call struct {
	done   chan struct{} // closed when st/err are set
	st     *tokenState
	err    error
	origin context.Context // the context of the caller that started it; nil for a background refresh
}

// starter is the caller that starts a fetch and waits for it: its context
// goes with the fetch's events, for tracing. The zero starter is a refresh
// no caller waits for.
type starter struct{ ctx context.Context }

// doneCall returns a call that has already ended.
func doneCall(st *tokenState, err error) *call {
	c := &call{done: make(chan struct{}), st: st, err: err}
	close(c.done)
	return c
}

// errPruned tells a TokenSource that its entry was dropped as idle.
var errPruned = errors.New("m2m: cache entry pruned")

func newEntry(env *env, k cacheKey, spec *audienceSpec, scopes []string) *entry {
	e := &entry{env: env, key: k, scopes: scopes}
	e.req = wire.Request{
		ClientID:     env.cfg.ClientID,
		ClientSecret: env.cfg.ClientSecret,
		JSON:         env.cfg.Encoding == EncodingJSON,
		Resource:     spec.aud.Resource,
		Scopes:       mergeScopes(scopes, spec.aud.FixedScopes),
		Extra:        spec.params,
	}
	if !spec.aud.OmitAudienceParam {
		e.req.Audience = spec.aud.Name
	}
	if env.store != nil {
		e.skey = env.storeKey(k)
	}
	return e
}

// mergeScopes returns the sorted union of two sorted scope lists.
func mergeScopes(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	out, err := normalizeScopes(append(append([]string(nil), a...), b...))
	if err != nil {
		return a // both lists were checked already
	}
	return out
}

// get returns a usable token state, fetching one if needed.
func (e *entry) get(ctx context.Context) (*tokenState, error) {
	if st := e.state.Load(); st != nil {
		switch st.phase.Load() {
		case fresh:
			if !st.used.Load() {
				st.used.Store(true)
			}
			if e.env.obs != nil {
				e.observe(Event{Kind: EventCacheHit})
			}
			return st, nil // the hot path: no lock, no clock, no allocation
		case stale:
			// The clock is read here anyway; it also catches an expiry
			// timer that a busy machine runs late.
			if now := e.env.clock.Now(); now.Before(st.expireAt) {
				st.used.Store(true)
				if e.inflight.Load() == nil && now.UnixNano() >= e.retryAt.Load() {
					e.start(starter{}, st, false) // a refresh the caller does not wait for
				}
				if e.env.obs != nil {
					e.observe(Event{Kind: EventStaleServe})
				}
				return st, nil // served while one refresh runs
			}
		}
	}
	e.touched.Store(true)
	// A caller whose context can never end gains nothing from waiting on
	// another goroutine: it runs the fetch itself, sparing a goroutine
	// hand-off. Others join it as usual.
	c := e.start(starter{ctx}, nil, ctx.Done() == nil)
	select {
	case <-c.done:
		if c.st != nil {
			c.st.used.Store(true)
		}
		return c.st, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start returns the call a caller holding have (nil: no usable token; else
// a stale one it is serving) should wait for: the running fetch, the token
// a fetch just stored, the last failure while fetches are spaced, or a new
// fetch, run in a goroutine of its own or, with inline, by the caller
// before start returns.
func (e *entry) start(origin starter, have *tokenState, inline bool) *call {
	c, run := e.decide(origin, have)
	if !run {
		return c
	}
	if inline {
		defer e.env.wg.Done()
		e.run(c)
		return c
	}
	go func() {
		defer e.env.wg.Done()
		e.run(c)
	}()
	return c
}

// decide is start's critical section: under mu it picks the call to wait
// for, and reports whether it is a new fetch the caller must run (then
// registered as in flight, and with Close's wait group).
func (e *entry) decide(origin starter, have *tokenState) (c *call, run bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pruned.Load() {
		return doneCall(nil, errPruned), false
	}
	if c := e.inflight.Load(); c != nil {
		return c, false
	}
	now := e.env.clock.Now()
	if cur := e.state.Load(); cur != nil && cur != have && cur.phase.Load() != expired && now.Before(cur.expireAt) {
		return doneCall(cur, nil), false // a fetch finished since the caller looked
	}
	if retryAt := e.retryAt.Load(); now.UnixNano() < retryAt {
		if have != nil {
			return doneCall(have, nil), false // a refresh must wait; keep serving
		}
		be := &BackoffError{Audience: e.key.audience, Next: time.Unix(0, retryAt), Err: ErrTokenUnavailable}
		if f := e.lastErr.Load(); f != nil {
			be.Err = f.err
		}
		return doneCall(nil, be), false
	}
	if !e.env.addFetch() {
		return doneCall(nil, ErrClosed), false
	}
	c = &call{done: make(chan struct{}), origin: origin.ctx}
	e.inflight.Store(c)
	return c, true
}

// run performs one fetch under the Client's context (never a caller's),
// publishes the result, and reports it.
func (e *entry) run(c *call) {
	began := e.env.clock.Now()
	res := e.obtain(e.env.ctx) // fetch bounds itself by FetchTimeout
	now := e.env.clock.Now()
	took := now.Sub(began)
	if res.err != nil && e.env.closed.Load() {
		res.err = ErrClosed
	}

	e.mu.Lock()
	var wait time.Duration
	if res.err == nil {
		if !res.st.shared {
			// The next refresh should take about as long as this fetch:
			// leave it twice that before the token expires.
			res.st.leaveTimeFor(2 * took)
		}
		st := res.st
		st.arm(e.env.clock, now, func() { e.keepWarm(st) })
		if old := e.state.Swap(st); old != nil {
			old.disarm()
		}
		e.failures = 0
		e.retryAt.Store(0)
		e.lastErr.Store(nil)
	} else if !errors.Is(res.err, ErrClosed) {
		wait = e.failed(now, res)
	}
	c.st, c.err = res.st, res.err
	e.inflight.Store(nil)
	e.mu.Unlock()
	// Report before waking the waiters: once a caller has its answer, the
	// fetch has been logged and observed.
	defer close(c.done)

	switch {
	case res.err == nil && res.st.shared:
		e.observe(Event{Kind: EventStoreHit, Duration: took, Context: c.origin})
		e.log(slog.LevelDebug, "m2m: token taken from the shared store", slog.Duration("took", took))
	case res.err == nil:
		e.observe(Event{Kind: EventFetch, Duration: took, Attempts: res.attempts, Context: c.origin})
		e.log(slog.LevelDebug, "m2m: token fetched",
			slog.Duration("lifetime", res.st.tok.Expiry.Sub(res.st.obtained)),
			slog.String("lifetime_from", string(res.st.from)),
			slog.Int("attempts", res.attempts),
			slog.Duration("took", took))
	case errors.Is(res.err, ErrClosed):
	default:
		kind := ClassifyError(res.err)
		e.observe(Event{Kind: EventFailure, Duration: took, Attempts: res.attempts, Err: res.err, Failure: kind, Context: c.origin})
		msg := "m2m: token fetch failed"
		if st := e.state.Load(); st != nil && st.phase.Load() != expired {
			msg = "m2m: token refresh failed; serving the current token until it expires"
		}
		e.log(slog.LevelWarn, msg, slog.String("failure", string(kind)), slog.Int("attempts", res.attempts),
			slog.Duration("next_try_in", wait), slog.Duration("took", took), slog.String("error", res.err.Error()))
	}
}

// failed records a failed fetch under mu and returns how long the key's
// fetches now wait: a growing, jittered backoff, at least the server's
// Retry-After, and at least ErrorCacheTTL for a non-retryable error. The
// error is kept for callers without a token until then, and released
// (with the body it holds) when that time comes.
func (e *entry) failed(now time.Time, res fetchResult) time.Duration {
	cfg := &e.env.cfg
	e.failures++
	wait := cfg.RetryBaseDelay + backoff.Delay(e.failures-1, cfg.RetryBaseDelay, cfg.RetryMaxDelay, e.env.rand())
	wait = max(wait, min(res.retryAfter, cfg.RetryMaxDelay))
	if !retryable(res.err) {
		wait = max(wait, cfg.ErrorCacheTTL)
	}
	until := now.Add(wait)
	e.retryAt.Store(until.UnixNano())
	f := &failure{err: res.err, until: until}
	e.lastErr.Store(f)
	e.env.clock.AfterFunc(wait, func() { e.lastErr.CompareAndSwap(f, nil) })
	return wait
}

// keepWarm runs when st turns stale by its timer: if st was handed out
// during its lifetime, it is refreshed now in the background rather than
// when the next caller happens to come.
func (e *entry) keepWarm(st *tokenState) {
	if e.env.cfg.DisableKeepWarm || !st.used.Load() || e.state.Load() != st {
		return
	}
	e.start(starter{}, st, false)
}

// evict drops st if it is still the cached token (a callee answered 401
// to it), so the next caller fetches a new one, and removes it from the
// shared store. Concurrent evictions of the same token drop it once. It
// does nothing while evictions are paused.
func (e *entry) evict(st *tokenState) bool {
	e.mu.Lock()
	if e.env.clock.Now().Before(e.noEvictUntil) || !e.state.CompareAndSwap(st, nil) {
		e.mu.Unlock()
		return false
	}
	e.mu.Unlock()
	st.disarm()
	e.observe(Event{Kind: EventEviction})
	e.log(slog.LevelInfo, "m2m: token refused by a callee, evicted")
	if e.env.store != nil {
		e.env.store.evict(e, st.tok.AccessToken)
	}
	return true
}

// pauseEvictions stops e from evicting for a while: a callee rejected a
// token fetched just for it too, so fetching more would only drain the
// token endpoint.
func (e *entry) pauseEvictions() {
	pause := max(e.env.cfg.ErrorCacheTTL, minEvictionPause)
	e.mu.Lock()
	e.noEvictUntil = e.env.clock.Now().Add(pause)
	e.mu.Unlock()
	e.observe(Event{Kind: EventEvictionsPaused, Duration: pause})
	e.log(slog.LevelWarn, "m2m: a callee rejected a freshly fetched token too; not evicting this key's tokens for a while",
		slog.Duration("pause", pause))
}

// idle reports whether e has had no caller without a fresh token since the
// last look, holds no valid token and runs nothing. It clears touched.
func (e *entry) idle() bool {
	if e.touched.Swap(false) || e.inflight.Load() != nil {
		return false
	}
	st := e.state.Load()
	return st == nil || st.phase.Load() == expired
}

// prune marks e dropped and releases what it holds.
func (e *entry) prune() {
	e.mu.Lock()
	e.pruned.Store(true)
	st := e.state.Swap(nil)
	e.lastErr.Store(nil)
	e.mu.Unlock()
	if st != nil {
		st.disarm()
	}
}

// stopTimers stops the phase timers of e's token.
func (e *entry) stopTimers() {
	if st := e.state.Load(); st != nil {
		st.disarm()
	}
}
