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
	// EventEvictionsPaused: a callee rejected a freshly fetched token as
	// well, so the key stops evicting (and fetching) for Duration.
	EventEvictionsPaused
	// EventStoreHit: a usable token was taken from the shared Store
	// instead of being fetched; Duration is how long that took.
	EventStoreHit
	// EventStoreDown: a call to the shared Store failed (Err says why)
	// after the last one succeeded; the Client fetches on its own until
	// the Store answers again. Reported once per change of state.
	EventStoreDown
	// EventStoreUp: the shared Store answers again after EventStoreDown.
	EventStoreUp
)

var eventNames = [...]string{"", "cache_hit", "stale_serve", "fetch", "retry", "failure", "eviction", "replay",
	"evictions_paused", "store_hit", "store_down", "store_up"}

// String returns the event's name in snake case, e.g. "cache_hit", for
// metric labels and logs.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// FailureKind is the class of a failure, for metrics and logs: what kind
// of thing went wrong, not the error itself.
type FailureKind string

// The failure kinds ClassifyError reports.
const (
	// FailureNetwork: refused, reset, DNS, TLS, a cut-off body.
	FailureNetwork FailureKind = "network"
	// FailureTimeout: the fetch or an attempt ran out of time.
	FailureTimeout FailureKind = "timeout"
	// FailureServer: a 5xx answer.
	FailureServer FailureKind = "server"
	// FailureRateLimited: a 429 answer.
	FailureRateLimited FailureKind = "rate_limited"
	// FailureClient: a 4xx answer other than 429: configuration, not load.
	FailureClient FailureKind = "client"
	// FailureInvalidResponse: a 2xx answer that is not a usable token.
	FailureInvalidResponse FailureKind = "invalid_response"
	// FailureDiscovery: the server's metadata could not be had or used.
	FailureDiscovery FailureKind = "discovery"
	// FailureClosed: the Client was closed.
	FailureClosed FailureKind = "closed"
	// FailureCredential: the client's own credential could not be had
	// (ErrCredentialUnavailable); nothing was sent.
	FailureCredential FailureKind = "credential"
)

// Event is one thing that happened in a Client. It never holds a secret
// or a token.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Audience is the name of the audience of the key concerned.
	Audience string
	// Scopes is the key's requested scope set, space-separated and
	// sorted.
	Scopes string
	// Duration is the fetch latency (EventFetch, EventFailure,
	// EventStoreHit), the wait before the next attempt (EventRetry) or
	// the pause (EventEvictionsPaused).
	Duration time.Duration
	// Attempts counts the token requests of a fetch so far.
	Attempts int
	// Err describes a failure (EventRetry, EventFailure, EventStoreDown).
	Err error
	// Failure classifies Err (EventRetry, EventFailure).
	Failure FailureKind
	// Context is the context of the call that started the fetch
	// (EventFetch, EventFailure, EventStoreHit), for tracing: a fetch is
	// shared by every caller waiting for it, so it is the child of none,
	// but it can link to the span of the one that started it. It is nil
	// for a refresh no caller waits for (keep-warm, or one started while
	// a still-valid token is served). It may have ended: never wait on
	// it. It is the caller's own context, with its values.
	Context context.Context
}

// Observer receives a Client's events, for metrics. Observe is called
// synchronously, on the hot path too (EventCacheHit), from many goroutines
// at once: it must be fast, must not block, and must be safe for
// concurrent use. Package otelm2m (a module of its own) implements it on
// OpenTelemetry.
type Observer interface {
	// Observe records ev.
	Observe(ev Event)
}

// ClassifyError returns the FailureKind of an error returned by the SDK,
// "" for nil.
func ClassifyError(err error) FailureKind {
	var te *TokenError
	var de *DiscoveryError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrClosed):
		return FailureClosed
	case errors.Is(err, ErrCredentialUnavailable):
		return FailureCredential
	case errors.As(err, &te) && te.StatusCode == 429:
		return FailureRateLimited
	case errors.As(err, &te) && te.StatusCode >= 500:
		return FailureServer
	case errors.As(err, &te):
		return FailureClient
	case errors.As(err, &de):
		return FailureDiscovery
	case errors.Is(err, ErrInvalidResponse):
		return FailureInvalidResponse
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FailureTimeout
	}
	return FailureNetwork
}

// observe reports an event for e to the Observer, if any.
func (e *entry) observe(ev Event) {
	if o := e.env.obs; o != nil {
		ev.Audience, ev.Scopes = e.key.audience, e.key.scopes
		o.Observe(ev)
	}
}

func (e *entry) log(level slog.Level, msg string, extra ...slog.Attr) {
	if e.env.log.Enabled(context.Background(), level) {
		attrs := append([]slog.Attr{slog.String("audience", e.key.audience), slog.String("scopes", e.key.scopes)}, extra...)
		e.env.log.LogAttrs(context.Background(), level, msg, attrs...)
	}
}
