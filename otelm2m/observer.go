// Package otelm2m reports m2m's token events and verification outcomes to
// OpenTelemetry.
//
// An Observer is an m2m.Observer: pass it as m2m.Config.Observer and it
// records the Client's token fetches (duration, outcome, failure kind,
// attempts), cache hits and stale serves, retries, evictions, replays,
// eviction pauses and its shared store's state as metrics, and each fetch as a client span. A Verifier wraps a
// *verify.Verifier and counts its accept and reject decisions by reason.
// Attributes name the audience and the outcome, never a token or a secret.
//
//	obs, err := otelm2m.NewObserver(otelm2m.Config{TokenURL: tokenURL})
//	defer obs.Close()
//	client, err := m2m.New(m2m.Config{TokenURL: tokenURL, ClientID: id, ClientSecret: secret, Observer: obs})
//
// A cache hit costs the observer no allocation and no lock: hits are
// counted in per-audience striped counters that an asynchronous
// instrument reads at collection time.
//
// Metrics (units in braces are UCUM annotations):
//
//	m2m.client.token.fetch.duration  histogram, s         m2m.audience, m2m.outcome, error.type
//	m2m.client.token.fetches         counter, {fetch}     m2m.audience, m2m.outcome, error.type
//	m2m.client.token.retries         counter, {retry}     m2m.audience, error.type
//	m2m.client.token.cache.hits      counter, {token}     m2m.audience, m2m.token.state (fresh, stale)
//	m2m.client.token.evictions       counter, {token}     m2m.audience
//	m2m.client.token.replays         counter, {request}   m2m.audience
//	m2m.client.token.eviction_pauses counter, {pause}     m2m.audience
//	m2m.client.token.store.hits      counter, {token}     m2m.audience
//	m2m.client.token.store.available gauge, 1 or 0        (none)
//	m2m.server.token.verifications   counter, {token}     m2m.audience, m2m.outcome, error.type
//
// m2m.outcome is "success" or "failure" for fetches, and "accepted",
// "rejected" or "error" (the verifier could not decide) for
// verifications; error.type is the failure kind (m2m.FailureKind) or the
// reason (see Reason). The store gauge is 0 after m2m.EventStoreDown and 1
// after m2m.EventStoreUp (absent until the first); it has no audience, as
// the Client's store serves them all.
package otelm2m

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/m2mauth/m2m"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meters and tracers.
const ScopeName = "github.com/m2mauth/m2m/otelm2m"

// The attribute keys the Observer and the Verifier record.
const (
	AttrAudience   = attribute.Key("m2m.audience")       // the audience name, as m2m.Audience.Name
	AttrOutcome    = attribute.Key("m2m.outcome")        // success or failure; accepted or rejected
	AttrTokenState = attribute.Key("m2m.token.state")    // fresh or stale, for cache hits
	AttrScopes     = attribute.Key("m2m.scopes")         // the fetched scope set, space-separated (spans only)
	AttrAttempts   = attribute.Key("m2m.token.attempts") // token requests of a fetch (spans only)
	AttrErrorType  = attribute.Key("error.type")         // the failure kind or rejection reason
)

// ErrInvalidConfig is wrapped by every error NewObserver and NewVerifier
// return for a bad config.
var ErrInvalidConfig = errors.New("otelm2m: invalid config")

// Config configures an Observer. The zero value of every field is its
// default.
type Config struct {
	// MeterProvider creates the meters. Optional; default the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider creates the tracer of the fetch spans. Optional;
	// default the global otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// TokenURL is the Client's token endpoint, for the server.address and
	// server.port of the fetch spans. Optional.
	TokenURL string
}

// Observer records an m2m.Client's events as OpenTelemetry metrics and
// spans. Its Observe method is safe for concurrent use and, for cache hits
// and stale serves, allocates nothing and takes no lock. Unknown event
// kinds are ignored. Create one per Client (or share one between Clients
// of the same token endpoint) and Close it after the Clients.
type Observer struct {
	tracer trace.Tracer
	server []attribute.KeyValue // server.address, server.port of the token endpoint

	fetchDuration metric.Float64Histogram
	fetches       metric.Int64Counter
	retries       metric.Int64Counter
	evictions     metric.Int64Counter
	replays       metric.Int64Counter
	pauses        metric.Int64Counter
	storeHits     metric.Int64Counter
	storeUp       metric.Int64Gauge
	hits          metric.Int64ObservableCounter
	reg           metric.Registration

	// slots is the hot path's cache of audiences by the address of their
	// name's bytes; all lists every audience, for the callback. Both are
	// replaced, never modified, under mu.
	slots atomic.Pointer[[]slot]
	all   atomic.Pointer[[]*audience]
	mu    sync.Mutex
	auds  map[string]*audience // every audience by name; guarded by mu
	// retrying holds, per fetch key (audience, scopes), the retries of the
	// fetch that runs, for its span. Guarded by mu.
	retrying map[fetchKey][]retry
	// fetched holds, per fetch key, the span of its latest fetch, for
	// TokenContext's links. Guarded by mu.
	fetched map[fetchKey]trace.SpanContext
}

// NewObserver returns an Observer recording through cfg's providers.
func NewObserver(cfg Config) (*Observer, error) {
	mp, tp := cfg.MeterProvider, cfg.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o := &Observer{tracer: tp.Tracer(ScopeName), retrying: map[fetchKey][]retry{}, fetched: map[fetchKey]trace.SpanContext{}, auds: map[string]*audience{}}
	if cfg.TokenURL != "" {
		u, err := url.Parse(cfg.TokenURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("%w: TokenURL is not an absolute URL", ErrInvalidConfig)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80"}[u.Scheme]
		}
		if port == "" {
			port = "443"
		}
		n, _ := strconv.Atoi(port)
		o.server = []attribute.KeyValue{attribute.String("server.address", u.Hostname()), attribute.Int("server.port", n)}
	}
	m := mp.Meter(ScopeName)
	var errs []error
	mk := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	var err error
	o.fetchDuration, err = m.Float64Histogram("m2m.client.token.fetch.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of token fetches, retries included."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30))
	errs = append(errs, err)
	o.fetches = mk("m2m.client.token.fetches", "{fetch}", "Token fetches, by outcome and failure kind.")
	o.retries = mk("m2m.client.token.retries", "{retry}", "Token requests retried within a fetch, by failure kind.")
	o.evictions = mk("m2m.client.token.evictions", "{token}", "Tokens dropped because a callee refused them.")
	o.replays = mk("m2m.client.token.replays", "{request}", "Requests sent again with a new token after a refusal.")
	o.pauses = mk("m2m.client.token.eviction_pauses", "{pause}", "Times a key stopped evicting because a callee refused fresh tokens too.")
	o.storeHits = mk("m2m.client.token.store.hits", "{token}", "Tokens taken from the shared store instead of fetched.")
	o.storeUp, err = m.Int64Gauge("m2m.client.token.store.available", metric.WithUnit("1"),
		metric.WithDescription("1 while the shared token store answers, 0 after it failed."))
	errs = append(errs, err)
	o.hits, err = m.Int64ObservableCounter("m2m.client.token.cache.hits", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens handed out from the cache without waiting, fresh or stale."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelm2m: creating instruments: %w", err)
	}
	if o.reg, err = m.RegisterCallback(o.observeHits, o.hits); err != nil {
		return nil, fmt.Errorf("otelm2m: registering the cache-hit callback: %w", err)
	}
	o.slots.Store(&[]slot{})
	o.all.Store(&[]*audience{})
	return o, nil
}

// Close stops reporting cache hits (it unregisters the callback). Close
// the Clients that use the Observer first.
func (o *Observer) Close() error { return o.reg.Unregister() }

// Observe implements m2m.Observer.
func (o *Observer) Observe(ev m2m.Event) {
	if ev.Kind == m2m.EventCacheHit { // the hot path, o.audience inlined
		p := unsafe.StringData(ev.Audience)
		for _, s := range *o.slots.Load() {
			if s.p == p && len(s.name) == len(ev.Audience) {
				s.a.fresh.add()
				return
			}
		}
	}
	a := o.audience(ev.Audience)
	switch ev.Kind {
	case m2m.EventCacheHit:
		a.fresh.add()
	case m2m.EventStaleServe:
		a.stale.add()
	case m2m.EventFetch:
		o.fetchDuration.Record(context.Background(), ev.Duration.Seconds(), a.success...)
		o.fetches.Add(context.Background(), 1, a.successAdd...)
		o.fetchSpan(ev)
	case m2m.EventFailure:
		set := metric.WithAttributes(AttrAudience.String(ev.Audience), AttrOutcome.String("failure"), AttrErrorType.String(failureType(ev)))
		o.fetchDuration.Record(context.Background(), ev.Duration.Seconds(), set)
		o.fetches.Add(context.Background(), 1, set)
		o.fetchSpan(ev)
	case m2m.EventRetry:
		o.retries.Add(context.Background(), 1, metric.WithAttributes(AttrAudience.String(ev.Audience), AttrErrorType.String(failureType(ev))))
		o.noteRetry(ev)
	case m2m.EventEviction:
		o.evictions.Add(context.Background(), 1, a.plain...)
	case m2m.EventReplay:
		o.replays.Add(context.Background(), 1, a.plain...)
	case m2m.EventEvictionsPaused:
		o.pauses.Add(context.Background(), 1, a.plain...)
	case m2m.EventStoreHit:
		o.storeHits.Add(context.Background(), 1, a.plain...)
	case m2m.EventStoreDown:
		o.storeUp.Record(context.Background(), 0)
	case m2m.EventStoreUp:
		o.storeUp.Record(context.Background(), 1)
	}
}

// failureType is the error.type of a failure event.
func failureType(ev m2m.Event) string {
	if ev.Failure != "" {
		return string(ev.Failure)
	}
	if k := m2m.ClassifyError(ev.Err); k != "" {
		return string(k)
	}
	return "_OTHER"
}

// audience is what Observe keeps per audience.
type audience struct {
	fresh, stale striped
	freshObs     []metric.ObserveOption
	staleObs     []metric.ObserveOption
	success      []metric.RecordOption
	successAdd   []metric.AddOption
	plain        []metric.AddOption
}

// audience returns the counters of name, creating them on first use.
//
// The hot path compares the address of the name's bytes with those seen
// before: a Client passes the same string for an audience every time, so
// a hit costs a pointer comparison, not a hash of the name. Each slot
// holds its string, so its bytes cannot be freed and reused for another.
func (o *Observer) audience(name string) *audience {
	p := unsafe.StringData(name)
	for _, s := range *o.slots.Load() {
		if s.p == p && len(s.name) == len(name) {
			return s.a
		}
	}
	return o.slowAudience(name)
}

// slot maps the bytes of one audience name to its counters.
type slot struct {
	p    *byte
	name string
	a    *audience
}

// maxSlots bounds the pointer cache; names beyond it take the map path.
const maxSlots = 64

func (o *Observer) slowAudience(name string) *audience {
	o.mu.Lock()
	defer o.mu.Unlock()
	a := o.auds[name]
	if a == nil {
		aud := AttrAudience.String(name)
		success := metric.WithAttributeSet(attribute.NewSet(aud, AttrOutcome.String("success")))
		a = &audience{
			freshObs:   []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrTokenState.String("fresh")))},
			staleObs:   []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrTokenState.String("stale")))},
			success:    []metric.RecordOption{success},
			successAdd: []metric.AddOption{success},
			plain:      []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(aud))},
		}
		o.auds[name] = a
		o.all.Store(ptrTo(slices.Collect(maps.Values(o.auds))))
	}
	if old := *o.slots.Load(); len(old) < maxSlots {
		o.slots.Store(ptrTo(append(slices.Clip(old), slot{p: unsafe.StringData(name), name: name, a: a})))
	}
	return a
}

func ptrTo[T any](v T) *T { return &v }

// observeHits is the callback of the cache-hit counter.
func (o *Observer) observeHits(_ context.Context, obs metric.Observer) error {
	for _, a := range *o.all.Load() {
		if n := a.fresh.sum(); n > 0 {
			obs.ObserveInt64(o.hits, n, a.freshObs...)
		}
		if n := a.stale.sum(); n > 0 {
			obs.ObserveInt64(o.hits, n, a.staleObs...)
		}
	}
	return nil
}

// stripes is how many cells a striped counter spreads its adds over, so
// goroutines on different cores seldom write the same cache line.
const stripes = 16

// striped is a counter for the hot path: an add is one atomic add on a
// randomly chosen cell of its own cache line; sum reads them all.
type striped struct {
	cells [stripes]struct {
		n atomic.Int64
		_ [56]byte // pad to a cache line
	}
}

func (s *striped) add() {
	var probe byte
	// Goroutines run on different stacks (at least 8 KiB apart): the
	// stack address spreads them over the cells without the cost of a
	// random number.
	p := uintptr(unsafe.Pointer(&probe)) >> 13
	s.cells[(p^p>>4^p>>8)%stripes].n.Add(1)
}

func (s *striped) sum() int64 {
	var n int64
	for i := range s.cells {
		n += s.cells[i].n.Load()
	}
	return n
}
