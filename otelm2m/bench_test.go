package otelm2m_test

import (
	"context"
	"testing"
	"time"

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

// reportCPU reports the process's CPU time per op since start, as
// cpu-ns/op: on a machine shared with other work, wall time per op counts
// the time the benchmark waited for a core; CPU time does not.
func reportCPU(b *testing.B, start time.Duration, ok bool) {
	if end, ok2 := cpuTime(); ok && ok2 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkOTelTokenContext: a cache hit, with and without the Observer.
func BenchmarkOTelTokenContext(b *testing.B) {
	srcs := benchVariants(b)
	ctx := context.Background()
	for _, name := range []string{"floor-bare", "otel"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			start, ok := cpuTime()
			for b.Loop() {
				if _, err := srcs[name].TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start, ok)
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
			start, ok := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := srcs[name].TokenContext(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU(b, start, ok)
		})
	}
}
