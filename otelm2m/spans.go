package otelm2m

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2m"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
)

// SpanName is the name of the span of a token fetch.
const SpanName = "m2m.token.fetch"

// maxRetryEvents bounds the retries kept for one fetch's span.
const maxRetryEvents = 32

// fetchKey is one cache entry of a Client: at most one fetch runs per key.
type fetchKey struct{ audience, scopes string }

// retry is an EventRetry, kept until its fetch ends.
type retry struct {
	at   time.Time
	wait time.Duration
	kind string
}

// noteRetry keeps a retry for the span of the fetch it belongs to.
func (o *Observer) noteRetry(ev m2m.Event) {
	k := fetchKey{ev.Audience, ev.Scopes}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.retrying[k]) < maxRetryEvents {
		o.retrying[k] = append(o.retrying[k], retry{at: time.Now(), wait: ev.Duration, kind: failureType(ev)})
	}
}

// TokenContext returns src.TokenContext(ctx), src's Client reporting to
// o. When ctx carries a recording span and the call waited for a token
// fetch, that span gets a link to the fetch's span: the fetch runs in the
// background for every caller waiting on it, so it is the child of none of
// them. Without a recording span it costs nothing over src.TokenContext.
//
// The fetch's span links to the span of the caller that started it
// whichever way it came (an m2m.Transport, m2mgrpc.Credentials,
// TokenContext); TokenContext adds the links from the other callers that
// waited for it.
func (o *Observer) TokenContext(ctx context.Context, src *m2m.TokenSource) (*oauth2.Token, error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return src.TokenContext(ctx)
	}
	aud := src.Audience()
	scopes, ok := m2m.ScopesFromContext(ctx)
	if !ok {
		scopes = aud.Scopes
	}
	k := fetchKey{aud.Name, strings.Join(scopes, " ")}
	before := o.lastFetch(k)
	tok, err := src.TokenContext(ctx)
	if after := o.lastFetch(k); after.IsValid() && !after.Equal(before) {
		span.AddLink(trace.Link{SpanContext: after, Attributes: []attribute.KeyValue{AttrAudience.String(aud.Name)}})
	}
	return tok, err
}

// lastFetch returns the span context of the latest fetch of k.
func (o *Observer) lastFetch(k fetchKey) trace.SpanContext {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fetched[k]
}

// fetchSpan records a finished fetch (EventFetch or EventFailure) as a
// client span that began Duration ago, with its retries as events.
//
// The span is the root of its own trace: the fetch runs in the background
// under the Client's context, shared by every caller waiting for it. It
// links to the span of the caller that started it (Event.Context), if
// that one was recorded; callers that go through TokenContext link their
// spans to it.
func (o *Observer) fetchSpan(ev m2m.Event) {
	now := time.Now()
	k := fetchKey{ev.Audience, ev.Scopes}
	o.mu.Lock()
	retries := o.retrying[k]
	delete(o.retrying, k)
	o.mu.Unlock()

	attrs := append(slices.Clip(o.server), AttrAudience.String(ev.Audience), AttrScopes.String(ev.Scopes), AttrAttempts.Int(ev.Attempts))
	// The fetch began Duration before it ended, which was a moment before
	// this event reached the observer: the span starts no later than its
	// first retry, so it holds all of them.
	start := now.Add(-ev.Duration)
	for _, r := range retries {
		if r.at.Before(start) {
			start = r.at
		}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...)}
	if ev.Context != nil {
		if sc := trace.SpanContextFromContext(ev.Context); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	_, span := o.tracer.Start(context.Background(), SpanName, opts...)
	for _, r := range retries {
		span.AddEvent("retry", trace.WithTimestamp(r.at),
			trace.WithAttributes(AttrErrorType.String(r.kind), attribute.Float64("m2m.retry.delay", r.wait.Seconds())))
	}
	if ev.Kind == m2m.EventFailure {
		kind := failureType(ev)
		span.SetAttributes(AttrErrorType.String(kind))
		span.SetStatus(codes.Error, kind)
		if ev.Err != nil {
			span.RecordError(ev.Err) // m2m's errors never hold a secret or a token
		}
	}
	span.End(trace.WithTimestamp(now))
	o.mu.Lock()
	o.fetched[k] = span.SpanContext()
	o.mu.Unlock()
}
