package otelm2m_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/otelm2m"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// A fetch and the cache hits after it, per audience, as metrics and one
// client span per fetch.
func TestFetchesAndCacheHits(t *testing.T) {
	ts := newTokenServer(t)
	tel := newTelemetry(t, ts.URL+"/token")
	c := newClient(t, ts, tel.obs, m2m.Config{})
	event, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}})
	require.NoError(t, err)
	file, err := c.Source(m2m.Audience{Name: "file", Scopes: []string{"file.view"}})
	require.NoError(t, err)
	ctx := context.Background()
	for range 5 {
		_, err := event.TokenContext(ctx)
		require.NoError(t, err)
	}
	for range 3 {
		_, err := file.TokenContext(m2m.WithScopes(ctx, "file.view"))
		require.NoError(t, err)
	}

	assert.Equal(t, map[string]float64{
		"m2m.client.token.fetches{m2m.audience=event,m2m.outcome=success}":        1,
		"m2m.client.token.fetch.duration{m2m.audience=event,m2m.outcome=success}": 1,
		"m2m.client.token.cache.hits{m2m.audience=event,m2m.token.state=fresh}":   4,
		"m2m.client.token.fetches{m2m.audience=file,m2m.outcome=success}":         1,
		"m2m.client.token.fetch.duration{m2m.audience=file,m2m.outcome=success}":  1,
		"m2m.client.token.cache.hits{m2m.audience=file,m2m.token.state=fresh}":    2,
	}, tel.points(t))

	spans := tel.spans.Ended()
	require.Len(t, spans, 2)
	u, _ := url.Parse(ts.URL)
	byAudience := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		assert.Equal(t, otelm2m.SpanName, s.Name())
		assert.Equal(t, trace.SpanKindClient, s.SpanKind())
		assert.False(t, s.Parent().IsValid(), "a shared fetch is the root of its own trace")
		assert.False(t, s.EndTime().Before(s.StartTime()))
		a := spanAttrs(s)
		assert.Equal(t, u.Hostname(), a["server.address"].AsString())
		assert.Equal(t, u.Port(), a["server.port"].String())
		assert.Equal(t, int64(1), a[otelm2m.AttrAttempts].AsInt64())
		byAudience[a[otelm2m.AttrAudience].AsString()] = s
	}
	assert.Equal(t, "event.create event.view", spanAttrs(byAudience["event"])[otelm2m.AttrScopes].AsString())
	assert.Equal(t, "file.view", spanAttrs(byAudience["file"])[otelm2m.AttrScopes].AsString())
	assertNoSecrets(t, tel)
}

// Retries, their failure kind, and a failed fetch: counted by kind, and
// on the span as retry events and an error status.
func TestRetriesAndFailures(t *testing.T) {
	ts := newTokenServer(t)
	tel := newTelemetry(t, ts.URL+"/token")
	c := newClient(t, ts, tel.obs, m2m.Config{RetryBaseDelay: time.Millisecond, RetryMaxDelay: 2 * time.Millisecond})
	event, err := c.Source(m2m.Audience{Name: "event"})
	require.NoError(t, err)
	file, err := c.Source(m2m.Audience{Name: "file"})
	require.NoError(t, err)

	ts.failNext(503, 503)
	_, err = event.TokenContext(context.Background())
	require.NoError(t, err)
	ts.failNext(401)
	_, err = file.TokenContext(context.Background())
	require.Error(t, err)

	p := tel.points(t)
	assert.Equal(t, 2.0, p["m2m.client.token.retries{error.type=server,m2m.audience=event}"])
	assert.Equal(t, 1.0, p["m2m.client.token.fetches{m2m.audience=event,m2m.outcome=success}"])
	assert.Equal(t, 1.0, p["m2m.client.token.fetches{error.type=client,m2m.audience=file,m2m.outcome=failure}"])
	assert.Equal(t, 1.0, p["m2m.client.token.fetch.duration{error.type=client,m2m.audience=file,m2m.outcome=failure}"])

	for _, s := range tel.spans.Ended() {
		a := spanAttrs(s)
		switch a[otelm2m.AttrAudience].AsString() {
		case "event":
			assert.Equal(t, int64(3), a[otelm2m.AttrAttempts].AsInt64())
			require.Len(t, s.Events(), 2)
			for _, e := range s.Events() {
				assert.Equal(t, "retry", e.Name)
				assert.Contains(t, e.Attributes, otelm2m.AttrErrorType.String("server"))
				assert.False(t, e.Time.Before(s.StartTime()) || e.Time.After(s.EndTime()), "a retry happens within its fetch")
			}
			assert.Equal(t, codes.Unset, s.Status().Code)
		case "file":
			assert.Equal(t, codes.Error, s.Status().Code)
			assert.Equal(t, "client", s.Status().Description)
			assert.Equal(t, "client", a[otelm2m.AttrErrorType].AsString())
			require.Len(t, s.Events(), 1)
			assert.Equal(t, "exception", s.Events()[0].Name)
		default:
			t.Errorf("unexpected span %v", a)
		}
	}
	assertNoSecrets(t, tel)
}

// A callee's 401 evicts the token and the m2m.Transport replays the
// request: both are counted.
func TestEvictionAndReplay(t *testing.T) {
	ts := newTokenServer(t)
	tel := newTelemetry(t, ts.URL+"/token")
	var calls atomic.Int32
	callee := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer callee.Close()
	c := newClient(t, ts, tel.obs, m2m.Config{})
	event, err := c.Source(m2m.Audience{Name: "event", URL: callee.URL})
	require.NoError(t, err)
	hc := &http.Client{Transport: m2m.NewTransport(nil, event)}
	resp, err := hc.Get(callee.URL + "/events")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	hc.CloseIdleConnections()

	p := tel.points(t)
	assert.Equal(t, 1.0, p["m2m.client.token.evictions{m2m.audience=event}"])
	assert.Equal(t, 1.0, p["m2m.client.token.replays{m2m.audience=event}"])
	assert.Equal(t, 2.0, p["m2m.client.token.fetches{m2m.audience=event,m2m.outcome=success}"])
}

// Events given to Observe directly: stale serves, kinds it does not know,
// a failure without a kind.
func TestObserveEvents(t *testing.T) {
	tel := newTelemetry(t, "")
	for range 3 {
		tel.obs.Observe(m2m.Event{Kind: m2m.EventStaleServe, Audience: "event"})
	}
	tel.obs.Observe(m2m.Event{Kind: m2m.EventCacheHit, Audience: "event"})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventKind(1000), Audience: "event"})
	tel.obs.Observe(m2m.Event{Kind: 0})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventFailure, Audience: "", Duration: 2 * time.Second, Attempts: 1})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventEvictionsPaused, Audience: "event", Duration: 2 * time.Second})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventStoreHit, Audience: "event"})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventStoreHit, Audience: "file"})
	tel.obs.Observe(m2m.Event{Kind: m2m.EventStoreDown, Audience: "event"})

	assert.Equal(t, map[string]float64{
		"m2m.client.token.cache.hits{m2m.audience=event,m2m.token.state=stale}":                3,
		"m2m.client.token.cache.hits{m2m.audience=event,m2m.token.state=fresh}":                1,
		"m2m.client.token.fetches{error.type=_OTHER,m2m.audience=,m2m.outcome=failure}":        1,
		"m2m.client.token.fetch.duration{error.type=_OTHER,m2m.audience=,m2m.outcome=failure}": 1,
		"m2m.client.token.eviction_pauses{m2m.audience=event}":                                 1,
		"m2m.client.token.store.hits{m2m.audience=event}":                                      1,
		"m2m.client.token.store.hits{m2m.audience=file}":                                       1,
		"m2m.client.token.store.available{}":                                                   0,
	}, tel.points(t))
	tel.obs.Observe(m2m.Event{Kind: m2m.EventStoreUp, Audience: "file"})
	assert.Equal(t, 1.0, tel.points(t)["m2m.client.token.store.available{}"], "the store's state has no audience")
	spans := tel.spans.Ended()
	require.Len(t, spans, 1)
	assert.Equal(t, 2*time.Second, spans[0].EndTime().Sub(spans[0].StartTime()), "the span covers the fetch's Duration")
	assert.NotContains(t, spanAttrs(spans[0]), attribute.Key("server.address"), "no TokenURL, no server attributes")
}

// A cache hit costs the observer no allocation.
func TestCacheHitAllocationFree(t *testing.T) {
	ts := newTokenServer(t)
	tel := newTelemetry(t, ts.URL+"/token")
	ev := m2m.Event{Kind: m2m.EventCacheHit, Audience: "event", Scopes: "event.view"}
	tel.obs.Observe(ev) // the first event of an audience builds its attribute sets
	assert.Zero(t, testing.AllocsPerRun(1000, func() { tel.obs.Observe(ev) }))

	src, err := newClient(t, ts, tel.obs, m2m.Config{}).Source(m2m.Audience{Name: "event"})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = src.TokenContext(ctx)
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { src.TokenContext(ctx) }))
}

func TestNewObserver(t *testing.T) {
	_, err := otelm2m.NewObserver(otelm2m.Config{TokenURL: "not a url"})
	assert.ErrorIs(t, err, otelm2m.ErrInvalidConfig)
	o, err := otelm2m.NewObserver(otelm2m.Config{}) // the global providers
	require.NoError(t, err)
	o.Observe(m2m.Event{Kind: m2m.EventCacheHit, Audience: "event"})
	require.NoError(t, o.Close())
}

func assertNoSecrets(t *testing.T, tel *telemetry) {
	t.Helper()
	for _, v := range tel.allAttributeValues(t) {
		assert.NotContains(t, v, secret)
		assert.False(t, strings.Contains(v, "tok-"), "a token in %q", v)
	}
}

// A caller whose TokenContext waited for a fetch gets a link to the
// fetch's span; one served from the cache does not.
func TestCallerSpanLinkedToFetch(t *testing.T) {
	ts := newTokenServer(t)
	tel := newTelemetry(t, ts.URL+"/token")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	defer tp.Shutdown(context.Background())
	c := newClient(t, ts, tel.obs, m2m.Config{})
	src, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}})
	require.NoError(t, err)

	call := func(name string, scopes ...string) sdktrace.ReadOnlySpan {
		ctx, span := tp.Tracer("test").Start(context.Background(), name)
		_, err := tel.obs.TokenContext(m2m.WithScopes(ctx, scopes...), src)
		require.NoError(t, err)
		span.End()
		for _, s := range tel.spans.Ended() {
			if s.Name() == name {
				return s
			}
		}
		t.Fatalf("no span %s", name)
		return nil
	}
	fetchSpan := func(audience, scopes string) sdktrace.ReadOnlySpan {
		for _, s := range tel.spans.Ended() {
			if a := spanAttrs(s); s.Name() == otelm2m.SpanName && a[otelm2m.AttrAudience].AsString() == audience && a[otelm2m.AttrScopes].AsString() == scopes {
				return s
			}
		}
		t.Fatalf("no fetch span for %s %q", audience, scopes)
		return nil
	}
	fetchOf := func(scopes string) trace.SpanContext { return fetchSpan("event", scopes).SpanContext() }

	first := call("first")
	require.Len(t, first.Links(), 1)
	assert.Equal(t, fetchOf("event.create event.view"), first.Links()[0].SpanContext)
	fetch := fetchSpan("event", "event.create event.view")
	require.Len(t, fetch.Links(), 1, "the fetch links back to the caller that started it")
	assert.Equal(t, first.SpanContext(), fetch.Links()[0].SpanContext)
	assert.Empty(t, call("cached").Links(), "a cache hit waited for no fetch")
	narrowed := call("narrowed", "event.view")
	require.Len(t, narrowed.Links(), 1)
	assert.Equal(t, fetchOf("event.view"), narrowed.Links()[0].SpanContext)

	// A fetch started through a Transport links to the request's span.
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer api.Close()
	files, err := c.Source(m2m.Audience{Name: "file", URL: api.URL})
	require.NoError(t, err)
	reqCtx, reqSpan := tp.Tracer("test").Start(context.Background(), "request")
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, api.URL+"/files", nil)
	require.NoError(t, err)
	resp, err := m2m.NewTransport(nil, files).RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	reqSpan.End()
	viaTransport := fetchSpan("file", "")
	require.Len(t, viaTransport.Links(), 1)
	assert.Equal(t, reqSpan.SpanContext(), viaTransport.Links()[0].SpanContext)

	// Without a recording span, nothing is linked and nothing allocated.
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(100, func() { tel.obs.TokenContext(ctx, src) }))
}
