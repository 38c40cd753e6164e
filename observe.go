package m2m

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The events an Observer receives.
const (
	// EventCacheHit: a fresh cached token was handed out.
	EventCacheHit EventKind = iota + 1
	// EventStaleServe: a token past its refresh point, still valid, was
	// handed out while a refresh runs or waits to be retried.
	EventStaleServe
	// EventFetch: a token was fetched; Duration is the whole fetch,
	// retries included, and Attempts how many requests it took.
	EventFetch
	// EventRetry: a token request failed and will be retried after
	// Duration; Err and Failure say why.
	EventRetry
	// EventFailure: a fetch failed for good; Err and Failure say why.
	EventFailure
	// EventEviction: a token was dropped because a callee answered 401.
	EventEviction
	// EventReplay: a request answered 401 was sent again with a new token.
	EventReplay
)

var eventNames = [...]string{"", "cache_hit", "stale_serve", "fetch", "retry", "failure", "eviction", "replay"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Failure kinds, as Event.Failure and FailureKind report them.
const (
	FailureNetwork         = "network"          // refused, reset, DNS, TLS, cut-off body
	FailureTimeout         = "timeout"          // the fetch or an attempt ran out of time
	FailureServer          = "server"           // 5xx
	FailureRateLimited     = "rate_limited"     // 429
	FailureClient          = "client"           // 4xx other than 429: configuration, not load
	FailureInvalidResponse = "invalid_response" // 2xx that is not a usable token
	FailureClosed          = "closed"           // the Client was closed
)

// Event is one thing that happened in a Client. It never holds a secret
// or a token.
type Event struct {
	Kind     EventKind
	Audience string
	Scopes   string // the scope set, space-separated and sorted
	// Duration is the fetch latency (EventFetch, EventFailure) or the
	// wait before the next attempt (EventRetry).
	Duration time.Duration
	// Attempts counts the token requests of a fetch so far.
	Attempts int
	// Err and Failure describe a failure (EventRetry, EventFailure).
	Err     error
	Failure string
}

// Observer receives a Client's events, for metrics. Observe is called
// synchronously, on the hot path too (EventCacheHit), from many goroutines
// at once: it must be fast, must not block, and must be safe for
// concurrent use. An OpenTelemetry or Prometheus adapter is a few lines
// over this interface.
type Observer interface {
	Observe(Event)
}

// FailureKind classifies an error returned by the SDK into one of the
// Failure constants, "" for nil.
func FailureKind(err error) string {
	var te *TokenError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrClosed):
		return FailureClosed
	case errors.As(err, &te) && te.StatusCode == 429:
		return FailureRateLimited
	case errors.As(err, &te) && te.StatusCode >= 500:
		return FailureServer
	case errors.As(err, &te):
		return FailureClient
	case errors.Is(err, ErrInvalidResponse):
		return FailureInvalidResponse
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FailureTimeout
	}
	return FailureNetwork
}

// observe reports an event for e to the Observer, if any.
func (e *entry) observe(ev Event) {
	if o := e.c.cfg.Observer; o != nil {
		ev.Audience, ev.Scopes = e.audience, e.scopeKey
		o.Observe(ev)
	}
}

// logAttrs are the attributes every log line of e carries.
func (e *entry) logAttrs(extra ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{slog.String("audience", e.audience), slog.String("scopes", e.scopeKey)}, extra...)
}

func (e *entry) log(level slog.Level, msg string, extra ...slog.Attr) {
	if e.c.log.Enabled(context.Background(), level) {
		e.c.log.LogAttrs(context.Background(), level, msg, e.logAttrs(extra...)...)
	}
}
