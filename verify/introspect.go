package verify

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
)

// introspector asks an RFC 7662 endpoint about opaque tokens: one request
// in flight per token however many callers ask, each caller waiting on
// its own context, the request on the introspector's. It is safe for
// concurrent use.
type introspector struct {
	cfg      *Config
	requests atomic.Int64 // introspection requests made

	mu     sync.Mutex
	calls  map[[32]byte]*call // in flight, by token hash; guarded by mu
	closed bool               // guarded by mu

	ctx    context.Context // ends on close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// call is one introspection in flight; c and err are set before done is
// closed.
type call struct {
	done chan struct{}
	c    *Claims
	err  error
}

func newIntrospector(cfg *Config) *introspector {
	in := &introspector{cfg: cfg, calls: map[[32]byte]*call{}}
	in.ctx, in.cancel = context.WithCancel(context.Background())
	return in
}

func (in *introspector) close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	in.cancel()
	in.wg.Wait()
}

// introspect checks an opaque token: from the cache, by joining the
// request in flight for it, or by starting one. Checking the cache,
// joining and starting happen under one lock, and a finished call
// publishes to the cache and leaves the in-flight map under that lock, so
// no two requests for one token ever overlap.
func (v *Verifier) introspect(ctx context.Context, raw string, h [32]byte) (*Claims, error) {
	if v.cache == nil {
		h, _, _ = hashToken(raw)
	}
	in := v.intro
	in.mu.Lock()
	cl := in.calls[h]
	if cl == nil {
		if v.cache != nil {
			if e, ok := v.cache.get(h); ok {
				if c, use, err := v.reuse(e); use {
					in.mu.Unlock()
					return c, err
				}
			}
		}
		if in.closed {
			in.mu.Unlock()
			return nil, fmt.Errorf("%w: the verifier is closed", ErrIntrospection)
		}
		cl = &call{done: make(chan struct{})}
		in.calls[h] = cl
		in.wg.Add(1)
		go v.runCall(cl, raw, h)
	}
	in.mu.Unlock()
	select {
	case <-cl.done:
		return cl.c, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("verify: waiting for introspection: %w", ctx.Err())
	}
}

// runCall makes one introspection request and publishes its outcome.
func (v *Verifier) runCall(cl *call, raw string, h [32]byte) {
	in := v.intro
	defer in.wg.Done()
	c, err := v.ask(raw)
	in.mu.Lock()
	defer in.mu.Unlock()
	cl.c, cl.err = c, err
	if err == nil && v.cache != nil && v.cfg.IntrospectionCacheTTL > 0 {
		now := v.clock.Now()
		until := now.Add(v.cfg.IntrospectionCacheTTL)
		if !c.ExpiresAt.IsZero() && c.ExpiresAt.Before(until) {
			until = c.ExpiresAt
		}
		v.cache.put(h, v.entryFor(c, nil, false, until), now.UnixNano())
	}
	delete(in.calls, h)
	close(cl.done)
}

// ask POSTs the token to the introspection endpoint (RFC 7662 §2.1) and
// applies the verifier's rules to the answer.
func (v *Verifier) ask(raw string) (*Claims, error) {
	in := v.intro
	in.requests.Add(1)
	ctx, cancel := context.WithTimeout(in.ctx, fetchTimeout)
	defer cancel()
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospection, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", wire.BasicAuth(v.cfg.IntrospectionClientID, v.cfg.IntrospectionClientSecret))
	start := time.Now()
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		// url.Error names the endpoint, never the form body.
		return nil, v.introErr("%w: %v", ErrIntrospection, err)
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	switch {
	case err != nil:
		return nil, v.introErr("%w: reading the answer: %v", ErrIntrospection, err)
	case resp.StatusCode != http.StatusOK:
		return nil, v.introErr("%w: %s answered %d", ErrIntrospection, v.cfg.IntrospectionURL, resp.StatusCode)
	case truncated:
		return nil, v.introErr("%w: answer larger than %d bytes", ErrIntrospection, wire.MaxBody)
	}
	v.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "verify: introspected", slog.Duration("latency", time.Since(start)))
	var p payload
	answer := string(body)
	if err := readPayload(answer, &p); err != nil {
		if se, ok := err.(*syntaxError); ok {
			return nil, v.introErr("%w: the answer is not one JSON object: %s", ErrIntrospection, se.msg)
		}
		return nil, err
	}
	if p.has&hasActive == 0 {
		return nil, reject(ErrInactive, "the introspection endpoint says active is not true")
	}
	c, _, err := v.accept(&p, answer, nil)
	return c, err
}

func (v *Verifier) introErr(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	v.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, "verify: introspection failed", slog.String("error", err.Error()))
	return err
}
