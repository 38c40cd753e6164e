package otelm2m_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/m2mauth/m2m/otelm2m"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestMain(m *testing.M) { testmain.Run(m) }

const (
	clientID = "task-service"
	secret   = "s3cret-value-xyz"
)

// tokenServer is a token endpoint issuing opaque one-hour tokens
// "tok-<n>"; it answers the statuses queued in fail first.
type tokenServer struct {
	*httptest.Server
	mu   sync.Mutex
	fail []int // guarded by mu
	n    int   // guarded by mu
}

func newTokenServer(t testing.TB) *tokenServer {
	ts := &tokenServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.fail) > 0 {
			code := ts.fail[0]
			ts.fail = ts.fail[1:]
			w.WriteHeader(code)
			if code < 500 {
				fmt.Fprint(w, `{"error":"invalid_client","error_description":"no such client"}`)
			}
			return
		}
		ts.n++
		json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("tok-%d", ts.n), "token_type": "bearer", "expires_in": 3600})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) failNext(codes ...int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.fail = append(ts.fail, codes...)
}

// telemetry is an Observer over an in-memory metric reader and span
// recorder.
type telemetry struct {
	obs    *otelm2m.Observer
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
}

func newTelemetry(t testing.TB, tokenURL string) *telemetry {
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	obs, err := otelm2m.NewObserver(otelm2m.Config{MeterProvider: tel.mp, TracerProvider: tp, TokenURL: tokenURL})
	require.NoError(t, err)
	tel.obs = obs
	t.Cleanup(func() {
		obs.Close()
		tel.mp.Shutdown(context.Background())
		tp.Shutdown(context.Background())
	})
	return tel
}

func newClient(t testing.TB, ts *tokenServer, obs m2m.Observer, cfg m2m.Config) *m2m.Client {
	cfg.TokenURL, cfg.ClientID, cfg.ClientSecret, cfg.Observer = ts.URL+"/token", clientID, secret, obs
	c, err := m2m.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// points returns every data point of the collected metrics as
// "name{k=v,…}" → value (the count, for a histogram).
func (tel *telemetry) points(t testing.TB) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name+attrs(p.Attributes)] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name+attrs(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name+attrs(p.Attributes)] += float64(p.Count)
				}
			default:
				t.Fatalf("unexpected data type %T of %s", m.Data, m.Name)
			}
		}
	}
	return out
}

// allAttributeValues returns every attribute value of metrics and spans.
func (tel *telemetry) allAttributeValues(t testing.TB) []string {
	var vals []string
	for k := range tel.points(t) {
		vals = append(vals, k)
	}
	for _, s := range tel.spans.Ended() {
		for _, kv := range s.Attributes() {
			vals = append(vals, kv.Value.String())
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				vals = append(vals, kv.Value.String())
			}
		}
		vals = append(vals, s.Status().Description)
	}
	return vals
}

func attrs(s attribute.Set) string {
	var kv []string
	for _, a := range s.ToSlice() {
		kv = append(kv, string(a.Key)+"="+a.Value.String())
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, ",") + "}"
}
