package otelm2m_test

import (
	"context"
	"testing"

	"github.com/m2mauth/m2m"
)

// benchSource returns a source of one audience with a fresh cached token,
// its Client reporting to obs (none when nil).
func benchSource(b *testing.B, obs m2m.Observer) *m2m.TokenSource {
	ts := newTokenServer(b)
	src, err := newClient(b, ts, obs, m2m.Config{}).Source(m2m.Audience{Name: "event", Scopes: []string{"event.view"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := src.TokenContext(context.Background()); err != nil {
		b.Fatal(err)
	}
	return src
}

// benchVariants are the two sides of the OTel overhead: TokenContext on a
// fresh token with no Observer (the floor), and with the otelm2m Observer
// over the OpenTelemetry SDK.
func benchVariants(b *testing.B) map[string]*m2m.TokenSource {
	return map[string]*m2m.TokenSource{
		"floor-bare": benchSource(b, nil),
		"otel":       benchSource(b, newTelemetry(b, "").obs),
	}
}

// BenchmarkOTelTokenContext: a cache hit, with and without the Observer.
func BenchmarkOTelTokenContext(b *testing.B) {
	srcs := benchVariants(b)
	ctx := context.Background()
	for _, name := range []string{"floor-bare", "otel"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := srcs[name].TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOTelTokenContextParallel: the same from every core at once.
func BenchmarkOTelTokenContextParallel(b *testing.B) {
	srcs := benchVariants(b)
	ctx := context.Background()
	for _, name := range []string{"floor-bare", "otel"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := srcs[name].TokenContext(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
