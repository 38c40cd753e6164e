package m2m

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/backoff"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// fetchResult is what one fetch of a key hands back to its entry, which
// alone publishes, reports and logs it.
type fetchResult struct {
	st         *tokenState
	attempts   int           // token requests made
	retryAfter time.Duration // the last answer's Retry-After, if any
	err        error
}

// errAttemptTimeout ends an attempt that ran past AttemptTimeout.
var errAttemptTimeout = fmt.Errorf("m2m: token request took longer than AttemptTimeout: %w", context.DeadlineExceeded)

// errFetchTimeout ends a fetch that ran past FetchTimeout.
var errFetchTimeout = fmt.Errorf("m2m: token fetch took longer than FetchTimeout: %w", context.DeadlineExceeded)

// obtain gets a token for e within ctx: from the shared store when there
// is one and it holds a usable token, else by a fetch.
func (e *entry) obtain(ctx context.Context) fetchResult {
	if e.env.store != nil {
		return e.env.store.obtain(ctx, e)
	}
	return e.fetch(ctx)
}

// fetch gets one token for e within ctx, the fetch's own budget. It
// retries transient failures (5xx, 429, 408 and network errors, a hung
// attempt included) with capped exponential backoff and full jitter,
// waiting at least what Retry-After asks (up to RetryMaxDelay); it never
// retries other 4xx answers or an unusable 2xx. Time is the Client's
// clock: FetchTimeout and AttemptTimeout are its timers.
func (e *entry) fetch(ctx context.Context) fetchResult {
	cfg := &e.env.cfg
	clk := e.env.clock
	deadline := clk.Now().Add(cfg.FetchTimeout)

	ep, err := e.env.endpoint.get(ctx)
	if err != nil {
		return fetchResult{err: err}
	}
	var rec recovery
	for attempt, free := 0, 0; ; attempt++ {
		cred, err := e.env.auth.current()
		var st *tokenState
		var retryAfter time.Duration
		if err == nil {
			st, retryAfter, err = e.attempt(ctx, ep, cred, deadline)
		}
		if err == nil {
			return fetchResult{st: st, attempts: attempt + 1}
		}
		res := fetchResult{attempts: attempt + 1, retryAfter: retryAfter, err: err}
		if ctx.Err() == nil && clk.Now().Before(deadline) && e.env.retryNow(err, cred, &rec) {
			free++ // a DPoP nonce to use, or credentials re-read: not a retry
			continue
		}
		if !retryable(res.err) || attempt-free >= cfg.MaxRetries || ctx.Err() != nil || !clk.Now().Before(deadline) {
			return res
		}
		delay := backoff.Delay(attempt, cfg.RetryBaseDelay, cfg.RetryMaxDelay, e.env.rand())
		if retryAfter > delay {
			delay = min(retryAfter, cfg.RetryMaxDelay)
		}
		if deadline.Sub(clk.Now()) < delay {
			return res // the budget ends before the next try could
		}
		kind := ClassifyError(res.err)
		e.observe(Event{Kind: EventRetry, Duration: delay, Attempts: attempt + 1, Err: res.err, Failure: kind})
		e.log(slog.LevelInfo, "m2m: token request failed, retrying",
			slog.Int("attempt", attempt+1), slog.Duration("delay", delay), slog.String("failure", string(kind)), slog.String("error", res.err.Error()))
		if !sleep(ctx, clk, delay) {
			return res
		}
	}
}

// causeOf returns the reason ctx ended (a timeout of ours, a Close) in
// place of the bare context error err wraps, or err.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errFetchTimeout), errors.Is(cause, errAttemptTimeout):
		return fmt.Errorf("%w (last error: %v)", cause, err)
	}
	return err
}

// retryable reports whether a failed attempt may succeed if repeated.
func retryable(err error) bool {
	var te *TokenError
	var de *DiscoveryError
	switch {
	case errors.As(err, &te):
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests || te.StatusCode == http.StatusRequestTimeout
	case errors.As(err, &de):
		return de.Retryable()
	case errors.Is(err, ErrInvalidResponse), errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		return false
	}
	return true // the network: refused, reset, timed out, cut short
}

// prepared is a token request body built once per entry, endpoint and
// credential version; what changes per request (a signed assertion) is
// added to a copy.
type prepared struct {
	ep     *endpointInfo
	cred   *credential
	body   []byte
	header http.Header // Content-Type, Accept and Authorization (Basic), cloned per request
}

// prepare returns e's request body for ep and cred, building it on first
// use.
func (e *entry) prepare(ep *endpointInfo, cred *credential, cache *atomic.Pointer[prepared]) (*prepared, error) {
	if p := cache.Load(); p != nil && p.ep == ep && p.cred == cred {
		return p, nil
	}
	r := e.req
	r.TokenURL = ep.tokenURL
	body, ctype, basic, err := cred.body(r, ep.secretInBody)
	if err != nil {
		return nil, fmt.Errorf("m2m: building token request: %w", err)
	}
	h := http.Header{"Content-Type": {ctype}, "Accept": {"application/json"}}
	if basic != "" {
		h["Authorization"] = []string{basic}
	}
	p := &prepared{ep: ep, cred: cred, body: body, header: h}
	cache.Store(p)
	return p, nil
}

// attempt makes one token request with cred, bounded by AttemptTimeout
// and by the fetch's deadline, whichever comes first: one timer on the
// Client's clock. It returns the server's Retry-After, if it sent one.
func (e *entry) attempt(ctx context.Context, ep *endpointInfo, cred *credential, deadline time.Time) (*tokenState, time.Duration, error) {
	p, err := e.prepare(ep, cred, &e.prepared)
	if err != nil {
		return nil, 0, err
	}
	body := p.body
	sent, err := cred.perRequest(ctx, e.req.ClientID, cmp(e.env.auth.audience, ep.assertionAud), e.env.clock.Now())
	if err != nil {
		return nil, 0, err
	}
	if sent != "" {
		body = appendParam(body, e.req.JSON, "client_assertion", sent)
	}
	limit, cause := e.env.cfg.AttemptTimeout, errAttemptTimeout
	if left := deadline.Sub(e.env.clock.Now()); left <= limit {
		limit, cause = left, errFetchTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := e.env.clock.AfterFunc(limit, func() { cancel(cause) })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: building token request: %w", err)
	}
	// A deep copy: a caller's transport that wrote into a value in place
	// must not change later token requests.
	req.Header = p.header.Clone()
	wantType := "Bearer"
	if d := e.env.dpop; d != nil {
		proof, err := d.proof(http.MethodPost, req.URL, "", e.env.clock.Now())
		if err != nil {
			return nil, 0, err
		}
		req.Header["Dpop"] = []string{proof}
		wantType = "DPoP"
	}
	began := e.env.clock.Now()
	resp, err := e.env.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: token request for audience %q: %w", e.key.audience, causeOf(ctx, err))
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: reading token response for audience %q: %w", e.key.audience, causeOf(ctx, err))
	}
	now := e.env.clock.Now()
	if e.env.dpop != nil {
		e.env.dpop.sawNonce(req.URL, resp.Header)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		after, _ := backoff.RetryAfter(resp.Header.Get("Retry-After"), now)
		return nil, after, e.env.tokenError(cred.scrubberFor(e.req.ClientID, sent), resp, body, truncated, e.key.audience)
	}
	// Parse without scrubbing first: the scrubber is built for failures.
	tok, err := wire.ParseScrubbedAs(nil, wantType, resp.StatusCode, resp.Header, body, truncated, now, e.env.cfg.DefaultLifetime)
	if err != nil {
		_, err = wire.ParseScrubbedAs(cred.scrubberFor(e.req.ClientID, sent), wantType, resp.StatusCode, resp.Header, body, truncated, now, e.env.cfg.DefaultLifetime)
		return nil, 0, fmt.Errorf("%w (audience %q)", err, e.key.audience)
	}
	// The lifetime counts from when the request was sent: the server
	// started it no earlier than that.
	return e.newState(tok.AccessToken, tok.TokenType, tok.Scope, began, tok.Lifetime, tok.LifetimeFrom), 0, nil
}

// newState turns a token into a cache state with its refresh point.
func (e *entry) newState(access, typ, scope string, obtained time.Time, life time.Duration, from wire.LifetimeSource) *tokenState {
	cfg := &e.env.cfg
	expiry := obtained.Add(life)
	ot := (&oauth2.Token{
		AccessToken: access,
		TokenType:   typ,
		Expiry:      expiry,
		ExpiresIn:   int64(life / time.Second),
	}).WithExtra(map[string]any{"scope": scope})
	refreshAt, expireAt := schedule(obtained, life, cfg.RefreshFraction, cfg.RefreshJitter, cfg.MaxRefreshAhead, e.env.rand())
	return &tokenState{
		tok:       ot,
		auth:      []string{typ + " " + access},
		obtained:  obtained,
		refreshAt: refreshAt,
		expireAt:  expireAt,
		from:      from,
	}
}
