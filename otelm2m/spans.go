package otelm2m

import (
	"context"
	"slices"
	"time"

	"github.com/m2mauth/m2m"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
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

// fetchSpan records a finished fetch (EventFetch or EventFailure) as a
// client span that began Duration ago, with its retries as events.
//
// The span is the root of its own trace: the fetch runs in the background
// under the Client's context, shared by every caller waiting for it, and
// m2m's Event carries no caller context to link it to.
func (o *Observer) fetchSpan(ev m2m.Event) {
	now := time.Now()
	k := fetchKey{ev.Audience, ev.Scopes}
	o.mu.Lock()
	retries := o.retrying[k]
	delete(o.retrying, k)
	o.mu.Unlock()

	attrs := append(slices.Clip(o.server), AttrAudience.String(ev.Audience), AttrScopes.String(ev.Scopes), AttrAttempts.Int(ev.Attempts))
	_, span := o.tracer.Start(context.Background(), SpanName, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(now.Add(-ev.Duration)), trace.WithAttributes(attrs...))
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
}
