package otelm2m_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/otelm2m"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A Task Service's m2m.Client reports its token fetches and cache hits to
// OpenTelemetry. In production the providers are the process's (the
// global ones by default) with an exporter; here an in-memory reader and
// span recorder show what is recorded.
func Example() {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque", "token_type": "bearer", "expires_in": 3600})
	}))
	defer auth.Close()

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := otelm2m.NewObserver(otelm2m.Config{MeterProvider: mp, TracerProvider: tp, TokenURL: auth.URL + "/auth/oauth/token"})
	if err != nil {
		log.Fatal(err)
	}
	defer obs.Close()

	client, err := m2m.New(m2m.Config{TokenURL: auth.URL + "/auth/oauth/token", ClientID: "task-service", ClientSecret: "task-secret", Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	calendar, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}})
	if err != nil {
		log.Fatal(err)
	}
	for range 3 { // one fetch, then two cache hits
		if _, err := calendar.TokenContext(context.Background()); err != nil {
			log.Fatal(err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s}: %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
			}
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s}: %d recorded", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count))
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	for _, s := range spans.Ended() {
		fmt.Println("span:", s.Name(), s.SpanKind())
	}
	// Output:
	// m2m.client.token.cache.hits{m2m.audience=event,m2m.token.state=fresh}: 2
	// m2m.client.token.fetch.duration{m2m.audience=event,m2m.outcome=success}: 1 recorded
	// m2m.client.token.fetches{m2m.audience=event,m2m.outcome=success}: 1
	// span: m2m.token.fetch client
}
