package m2m

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/m2mauth/m2m/internal/backoff"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// fetch gets one token for e within ctx, the fetch's own budget. It
// retries transient failures (5xx, 429, 408 and network errors, a hung
// attempt included) with capped exponential backoff and full jitter,
// waiting at least what Retry-After asks (up to RetryMaxDelay); it never
// retries other 4xx answers or an unusable 2xx. It returns how many
// requests it made.
func (c *Client) fetch(ctx context.Context, e *entry) (*tokenState, int, error) {
	for attempt := 0; ; attempt++ {
		st, retryAfter, err := c.attempt(ctx, e)
		if err == nil {
			return st, attempt + 1, nil
		}
		if !retryable(err) || attempt >= c.cfg.MaxRetries || ctx.Err() != nil {
			return nil, attempt + 1, err
		}
		delay := backoff.Delay(attempt, c.cfg.RetryBaseDelay, c.cfg.RetryMaxDelay, c.cfg.rand())
		if retryAfter > delay {
			delay = min(retryAfter, c.cfg.RetryMaxDelay)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return nil, attempt + 1, err // the budget ends before the next try could
		}
		e.observe(Event{Kind: EventRetry, Duration: delay, Attempts: attempt + 1, Err: err, Failure: FailureKind(err)})
		e.log(slog.LevelInfo, "m2m: token request failed, retrying",
			slog.Int("attempt", attempt+1), slog.Duration("delay", delay), slog.String("failure", FailureKind(err)), slog.String("error", err.Error()))
		timer, stop := c.clock.NewTimer(delay)
		select {
		case <-timer:
		case <-ctx.Done():
			stop()
			return nil, attempt + 1, err
		}
	}
}

// retryable reports whether a failed attempt may succeed if repeated.
func retryable(err error) bool {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests || te.StatusCode == http.StatusRequestTimeout
	case errors.Is(err, ErrInvalidResponse), errors.Is(err, context.Canceled):
		return false
	}
	return true // the network: refused, reset, timed out, cut short
}

// attempt makes one token request, bounded by AttemptTimeout. It returns
// the server's Retry-After, if it sent one.
func (c *Client) attempt(ctx context.Context, e *entry) (*tokenState, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	r := wire.Request{
		TokenURL:     c.cfg.TokenURL,
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		SecretInBody: c.cfg.AuthStyle == AuthStyleInBody,
		JSON:         c.cfg.Encoding == EncodingJSON,
		Audience:     e.audience,
		Scopes:       e.scopes,
		Extra:        c.cfg.EndpointParams,
	}
	req, err := r.Build(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: building token request: %w", err)
	}
	sent := c.clock.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: token request for audience %q: %w", e.audience, err)
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("m2m: reading token response for audience %q: %w", e.audience, err)
	}
	tok, err := wire.Parse(resp.StatusCode, resp.Header, body, truncated, c.clock.Now(), c.cfg.DefaultLifetime)
	if err != nil {
		var eb *wire.ErrorBody
		if errors.As(err, &eb) {
			after, _ := backoff.RetryAfter(eb.RetryAfter, c.clock.Now())
			return nil, after, c.tokenError(eb, e.audience, resp.Header.Get("Location"))
		}
		return nil, 0, fmt.Errorf("%w (audience %q)", err, e.audience)
	}
	// The lifetime counts from when the request was sent: the server
	// started it no earlier than that.
	return c.newState(tok, sent), 0, nil
}

// tokenError builds the exported error of a non-2xx answer, with the
// client secret scrubbed from the kept body in case the server echoed it.
func (c *Client) tokenError(eb *wire.ErrorBody, audience, location string) *TokenError {
	body := eb.Body
	for _, s := range []string{c.cfg.ClientSecret, url.QueryEscape(c.cfg.ClientSecret)} {
		body = bytes.ReplaceAll(body, []byte(s), []byte("[REDACTED]"))
	}
	te := &TokenError{
		StatusCode:       eb.Status,
		ErrorCode:        eb.Code,
		ErrorDescription: strings.ReplaceAll(eb.Description, c.cfg.ClientSecret, "[REDACTED]"),
		ErrorURI:         eb.URI,
		Body:             body,
		Audience:         audience,
	}
	te.Hint = c.hint(te, location)
	return te
}

// hint says what to change in Config for the failures the SDK recognises.
func (c *Client) hint(te *TokenError, location string) string {
	desc := strings.ToLower(te.ErrorDescription)
	switch {
	case te.StatusCode >= 300 && te.StatusCode < 400:
		return fmt.Sprintf("the token endpoint redirects to %q; set TokenURL to the final URL", location)
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_post'"):
		return "the client is registered for client_secret_post: set AuthStyle to m2m.AuthStyleInBody"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_basic'"):
		return "the client is registered for client_secret_basic: set AuthStyle to m2m.AuthStyleBasic"
	case c.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusBadRequest && strings.Contains(desc, "post body can not be empty"):
		return "this server reads only form bodies: leave Encoding at m2m.EncodingForm"
	case c.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusInternalServerError:
		return "if this server only reads form bodies, leave Encoding at m2m.EncodingForm"
	}
	return ""
}

// newState turns a parsed token into a cache state with its refresh point.
func (c *Client) newState(t *wire.Token, obtained time.Time) *tokenState {
	life := t.Lifetime
	expiry := obtained.Add(life)
	ot := (&oauth2.Token{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		Expiry:      expiry,
		ExpiresIn:   int64(life / time.Second),
	}).WithExtra(map[string]any{"scope": t.Scope})
	refreshAt, expireAt := schedule(obtained, life, c.cfg.RefreshFraction, c.cfg.RefreshJitter, c.cfg.MaxRefreshAhead, c.cfg.rand())
	return &tokenState{
		tok:       ot,
		auth:      []string{"Bearer " + t.AccessToken},
		obtained:  obtained,
		refreshAt: refreshAt,
		expireAt:  expireAt,
		from:      t.LifetimeFrom,
	}
}
