package m2m

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Benchmarks compare m2m with golang.org/x/oauth2 in the same run.
// Sub-benchmark names are "m2m", "x-oauth2" and, for the floor, "bare";
// scripts/bench.sh turns them into a table of ratios.

// benchServer is a token endpoint that answers after delay and counts.
func benchServer(b *testing.B, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if delay > 0 {
			time.Sleep(delay) // the token endpoint's latency
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "bench-token", "token_type": "bearer", "expires_in": 3600})
	}))
	b.Cleanup(s.Close)
	return s, &hits
}

func benchSources(b *testing.B, tokenURL string) (*TokenSource, oauth2.TokenSource) {
	c, err := New(Config{TokenURL: tokenURL, ClientID: testID, ClientSecret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	src, err := c.Source(Audience{Name: "event", Scopes: []string{"event.create"}, URL: "https://calendar.test"})
	if err != nil {
		b.Fatal(err)
	}
	cc := &clientcredentials.Config{ClientID: testID, ClientSecret: testSecret, TokenURL: tokenURL,
		Scopes: []string{"event.create"}, EndpointParams: map[string][]string{"audience": {"event"}}}
	peer := oauth2.ReuseTokenSource(nil, cc.TokenSource(context.Background()))
	if _, err := src.TokenContext(context.Background()); err != nil {
		b.Fatal(err)
	}
	if _, err := peer.Token(); err != nil {
		b.Fatal(err)
	}
	return src, peer
}

// BenchmarkToken: a token from a fresh cache, one goroutine.
func BenchmarkToken(b *testing.B) {
	srv, _ := benchServer(b, 0)
	src, peer := benchSources(b, srv.URL)
	ctx := context.Background()
	b.Run("m2m", func(b *testing.B) {
		b.ReportAllocs()
		defer testmain.ReportCPU(b)()
		for b.Loop() {
			if _, err := src.TokenContext(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x-oauth2", func(b *testing.B) {
		b.ReportAllocs()
		defer testmain.ReportCPU(b)()
		for b.Loop() {
			if _, err := peer.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTokenParallel: the same under contention from every core.
func BenchmarkTokenParallel(b *testing.B) {
	srv, _ := benchServer(b, 0)
	src, peer := benchSources(b, srv.URL)
	ctx := context.Background()
	b.Run("m2m", func(b *testing.B) {
		b.ReportAllocs()
		defer testmain.ReportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := src.TokenContext(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("x-oauth2", func(b *testing.B) {
		b.ReportAllocs()
		defer testmain.ReportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := peer.Token(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRoundTrip: the injection overhead alone, over a base
// RoundTripper that answers at once.
func BenchmarkRoundTrip(b *testing.B) {
	srv, _ := benchServer(b, 0)
	src, peer := benchSources(b, srv.URL)
	resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	req, _ := http.NewRequest(http.MethodGet, "https://calendar.test/events", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "task-service/1.0")
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"m2m", NewTransport(base, src)},
		{"x-oauth2", &oauth2.Transport{Source: peer, Base: base}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			defer testmain.ReportCPU(b)()
			for b.Loop() {
				if _, err := tc.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripParallel: BenchmarkRoundTrip from every core at
// once, each goroutine with its own request (a request is not shared
// between goroutines).
func BenchmarkRoundTripParallel(b *testing.B) {
	srv, _ := benchServer(b, 0)
	src, peer := benchSources(b, srv.URL)
	resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"m2m", NewTransport(base, src)},
		{"x-oauth2", &oauth2.Transport{Source: peer, Base: base}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			defer testmain.ReportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, "https://calendar.test/events", nil)
				req.Header.Set("Accept", "application/json")
				req.Header.Set("User-Agent", "task-service/1.0")
				for pb.Next() {
					if _, err := tc.rt.RoundTrip(req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRoundTripPaired: BenchmarkRoundTrip's m2m and x/oauth2
// Transports in alternating batches of 64 requests, serially and from
// every core at once, so that a busy machine slows both alike. It reports
// the median time per request of each (the base's own few nanoseconds
// included) and their ratio.
func BenchmarkRoundTripPaired(b *testing.B) {
	const batch = 64
	srv, _ := benchServer(b, 0)
	src, peer := benchSources(b, srv.URL)
	resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	rts := [2]http.RoundTripper{NewTransport(base, src), &oauth2.Transport{Source: peer, Base: base}}
	newReq := func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, "https://calendar.test/events", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "task-service/1.0")
		return req
	}
	// batches returns the two transports' batches of requests with req.
	batches := func(req *http.Request) []func(*testing.B) {
		ops := make([]func(*testing.B), len(rts))
		for j, rt := range rts {
			ops[j] = func(b *testing.B) {
				for range batch {
					if _, err := rt.RoundTrip(req); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}
		return ops
	}
	report := func(b *testing.B, med []float64) {
		if med == nil {
			return // a failed run has already said why
		}
		b.ReportMetric(med[0]/batch, "m2m-ns/req")
		b.ReportMetric(med[1]/batch, "x-oauth2-ns/req")
		b.ReportMetric(med[0]/med[1], "m2m/x-oauth2")
	}
	b.Run("serial", func(b *testing.B) {
		report(b, timePaired(b, batches(newReq())...))
	})
	b.Run("parallel", func(b *testing.B) {
		var mu sync.Mutex
		all := make(paired, len(rts))
		b.RunParallel(func(pb *testing.PB) {
			mine := make(paired, len(rts))
			ops := batches(newReq())
			for i := 0; pb.Next(); i++ {
				mine.round(b, i, ops)
			}
			mu.Lock()
			defer mu.Unlock()
			for j := range all {
				all[j] = append(all[j], mine[j]...)
			}
		})
		report(b, all.medians())
	})
}

// burst runs n goroutines that each get a token, and returns when all
// have an answer.
func burst(n int, get func() error) (failed int64) {
	var wg sync.WaitGroup
	var bad atomic.Int64
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if get() != nil {
				bad.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return bad.Load()
}

// BenchmarkColdBurst: 10 000 goroutines ask at once with an empty cache and
// a token endpoint that takes 50 ms. ns/op is the time until all are
// served; token-reqs/op the requests the endpoint saw.
func BenchmarkColdBurst(b *testing.B) {
	const n = 10000
	srv, hits := benchServer(b, 50*time.Millisecond)
	b.Run("m2m", func(b *testing.B) {
		hits.Store(0)
		for b.Loop() {
			c, _ := New(Config{TokenURL: srv.URL, ClientID: testID, ClientSecret: testSecret})
			src, _ := c.Source(Audience{Name: "event", Scopes: []string{"event.create"}})
			if failed := burst(n, func() error { _, err := src.TokenContext(context.Background()); return err }); failed > 0 {
				b.Fatalf("%d failed", failed)
			}
			c.Close()
		}
		b.ReportMetric(float64(hits.Load())/float64(b.N), "token-reqs/op")
	})
	b.Run("x-oauth2", func(b *testing.B) {
		hits.Store(0)
		for b.Loop() {
			cc := &clientcredentials.Config{ClientID: testID, ClientSecret: testSecret, TokenURL: srv.URL, Scopes: []string{"event.create"}}
			src := oauth2.ReuseTokenSource(nil, cc.TokenSource(context.Background()))
			if failed := burst(n, func() error { _, err := src.Token(); return err }); failed > 0 {
				b.Fatalf("%d failed", failed)
			}
		}
		b.ReportMetric(float64(hits.Load())/float64(b.N), "token-reqs/op")
	})
}

// BenchmarkColdBurstCancel: the same burst, but every caller gives up
// after 10 ms. ns/op is the time until every caller has returned.
// x/oauth2's Token takes no context: a caller cannot stop waiting.
func BenchmarkColdBurstCancel(b *testing.B) {
	const n = 10000
	srv, hits := benchServer(b, 50*time.Millisecond)
	b.Run("m2m", func(b *testing.B) {
		hits.Store(0)
		var failed int64
		for b.Loop() {
			c, _ := New(Config{TokenURL: srv.URL, ClientID: testID, ClientSecret: testSecret})
			src, _ := c.Source(Audience{Name: "event", Scopes: []string{"event.create"}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			failed += burst(n, func() error { _, err := src.TokenContext(ctx); return err })
			cancel()
			b.StopTimer()
			c.Close() // the shared fetch goes on until here: not timed
			b.StartTimer()
		}
		b.ReportMetric(float64(failed)/float64(b.N), "failed-calls/op")
		b.ReportMetric(float64(hits.Load())/float64(b.N), "token-reqs/op")
	})
	b.Run("x-oauth2", func(b *testing.B) {
		hits.Store(0)
		var failed int64
		for b.Loop() {
			cc := &clientcredentials.Config{ClientID: testID, ClientSecret: testSecret, TokenURL: srv.URL, Scopes: []string{"event.create"}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			src := oauth2.ReuseTokenSource(nil, cc.TokenSource(ctx))
			failed += burst(n, func() error { _, err := src.Token(); return err })
			cancel()
		}
		b.ReportMetric(float64(failed)/float64(b.N), "failed-calls/op")
		b.ReportMetric(float64(hits.Load())/float64(b.N), "token-reqs/op")
	})
}

// fetchBench holds the three ways of getting one cold token that
// BenchmarkFetch and BenchmarkFetchPaired compare.
type fetchBench struct {
	e    *entry
	cc   *clientcredentials.Config
	url  string
	form string
	bare *http.Client
}

func newFetchBench(b *testing.B) *fetchBench {
	srv, _ := benchServer(b, 0)
	src, _ := benchSources(b, srv.URL)
	return &fetchBench{
		e: src.full.Load(),
		cc: &clientcredentials.Config{ClientID: testID, ClientSecret: testSecret, TokenURL: srv.URL,
			Scopes: []string{"event.create"}, EndpointParams: map[string][]string{"audience": {"event"}}},
		url:  srv.URL,
		form: url.Values{"grant_type": {"client_credentials"}, "scope": {"event.create"}, "audience": {"event"}}.Encode(),
		bare: &http.Client{Transport: http.DefaultTransport},
	}
}

// m2m is m2m's whole fetch path: the cached token is dropped first.
func (f *fetchBench) m2m(b *testing.B) {
	if st := f.e.state.Swap(nil); st != nil {
		st.disarm()
	}
	if _, err := f.e.get(context.Background()); err != nil {
		b.Fatal(err)
	}
}

func (f *fetchBench) oauth2(b *testing.B) {
	if _, err := f.cc.Token(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// floor is a bare form POST with a JSON decode.
func (f *fetchBench) floor(b *testing.B) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, f.url, strings.NewReader(f.form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(testID), url.QueryEscape(testSecret))
	resp, err := f.bare.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		b.Fatal(err)
	}
}

// BenchmarkFetch: one cold token fetch against a local endpoint that
// answers at once: m2m's whole fetch path (single flight, the fetch's
// timers, the request, parsing, the schedule) against x/oauth2's
// clientcredentials Token and a bare form POST with a JSON decode, the
// floor.
func BenchmarkFetch(b *testing.B) {
	f := newFetchBench(b)
	for _, tc := range []struct {
		name string
		op   func(*testing.B)
	}{{"m2m", f.m2m}, {"x-oauth2", f.oauth2}, {"bare", f.floor}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			defer testmain.ReportCPU(b)()
			for b.Loop() {
				tc.op(b)
			}
		})
	}
}

// BenchmarkFetchPaired: BenchmarkFetch's three fetches one after the
// other in each iteration, in rotating order, so that a busy machine
// slows all three alike; it reports the median of each over the floor's.
func BenchmarkFetchPaired(b *testing.B) {
	f := newFetchBench(b)
	b.Run("paired", func(b *testing.B) {
		med := timePaired(b, f.floor, f.m2m, f.oauth2)
		b.ReportMetric(med[0], "floor-ns")
		b.ReportMetric(med[1]/med[0], "m2m/floor")
		b.ReportMetric(med[2]/med[0], "x-oauth2/floor")
	})
}

// paired holds the times of operations run one after the other in rounds,
// in an order that rotates from round to round, so that a busy machine
// slows them alike: one series per operation.
type paired [][]time.Duration

// round times each of ops once; i is the round's number.
func (p paired) round(b *testing.B, i int, ops []func(*testing.B)) {
	for k := range ops {
		j := (i + k) % len(ops)
		t0 := time.Now()
		ops[j](b)
		p[j] = append(p[j], time.Since(t0))
	}
}

// medians returns each series' median in nanoseconds, or nil when a
// series is empty (a failed run has already said why).
func (p paired) medians() []float64 {
	med := make([]float64, len(p))
	for j, s := range p {
		if len(s) == 0 {
			return nil
		}
		slices.Sort(s)
		med[j] = float64(s[len(s)/2])
	}
	return med
}

// timePaired runs ops in paired rounds for b's iterations and returns
// their medians.
func timePaired(b *testing.B, ops ...func(*testing.B)) []float64 {
	p := make(paired, len(ops))
	for i := 0; b.Loop(); i++ {
		p.round(b, i, ops)
	}
	med := p.medians()
	if med == nil {
		b.FailNow()
	}
	return med
}
