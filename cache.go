package m2m

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// Refresh timing bounds (see schedule).
const (
	// minRefreshAhead is the least time before expiry a refresh begins,
	// for tokens living longer than twice this.
	minRefreshAhead = time.Second
	// maxExpirySkew is the most a token's use ends before its real
	// expiry, so it does not arrive expired at the callee.
	maxExpirySkew = 10 * time.Second
	// staleRetryDelay spaces background refresh attempts after a failure
	// while the current token is still valid.
	staleRetryDelay = time.Second
)

// tokenState is one immutable cached token. A new fetch stores a new one.
type tokenState struct {
	tok       *oauth2.Token
	auth      []string // the Authorization header value, built once
	obtained  time.Time
	refreshAt time.Time // fresh before, stale after
	expireAt  time.Time // expired from here on (expiry less a skew)
	from      wire.LifetimeSource
}

// schedule returns when a token obtained at obtained and living life turns
// stale and when it is taken as expired.
//
// The refresh window (the time before expiry a refresh begins) is
// (1-fraction) of the lifetime, at most maxAhead so long tokens are not
// renewed hours early, and at least min(1 s, life/2) so short tokens leave
// the fetch time to finish. Jitter widens the window by up to jitter×window,
// at random, so a fleet started together spreads its refreshes.
func schedule(obtained time.Time, life time.Duration, fraction, jitter float64, maxAhead time.Duration, r float64) (refreshAt, expireAt time.Time) {
	ahead := time.Duration(float64(life) * (1 - fraction)).Round(time.Millisecond)
	ahead = min(ahead, maxAhead)
	ahead = max(ahead, min(minRefreshAhead, life/2))
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

	state    atomic.Pointer[tokenState]
	inflight atomic.Pointer[call] // set under mu
	retryAt  atomic.Int64         // unix ns: no stale refresh before this
	mu       sync.Mutex
}

// call is one fetch that any number of callers wait for.
type call struct {
	done chan struct{} // closed when st/err are set
	st   *tokenState
	err  error
}

// get returns a usable token state, fetching one if needed.
func (e *entry) get(ctx context.Context) (*tokenState, error) {
	now := e.c.clock.Now()
	if st := e.state.Load(); st != nil {
		if now.Before(st.refreshAt) {
			return st, nil // fresh: the hot path
		}
		if now.Before(st.expireAt) {
			if e.inflight.Load() == nil && now.UnixNano() >= e.retryAt.Load() {
				e.start()
			}
			return st, nil // stale: served while one refresh runs
		}
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
	st, err := e.c.fetch(ctx, e)
	cancel()
	took := e.c.clock.Now().Sub(began)
	if err != nil && e.c.closed.Load() {
		err = ErrClosed
	}
	if err == nil {
		e.state.Store(st)
		e.retryAt.Store(0)
		e.c.log.LogAttrs(context.Background(), slog.LevelDebug, "m2m: token fetched",
			slog.String("audience", e.audience),
			slog.String("scopes", strings.Join(e.scopes, " ")),
			slog.Duration("lifetime", st.tok.Expiry.Sub(st.obtained)),
			slog.String("lifetime_from", string(st.from)),
			slog.Duration("took", took))
	} else {
		e.retryAt.Store(e.c.clock.Now().Add(staleRetryDelay).UnixNano())
		e.c.log.LogAttrs(context.Background(), slog.LevelWarn, "m2m: token fetch failed",
			slog.String("audience", e.audience),
			slog.String("scopes", strings.Join(e.scopes, " ")),
			slog.Duration("took", took),
			slog.String("error", err.Error()))
	}
	c.st, c.err = st, err
	e.inflight.Store(nil)
	close(c.done)
}
