// Command loadgen measures what the token layer adds to each request under
// steady traffic when tokens are short-lived and the token endpoint is
// slow: m2m against golang.org/x/oauth2 in the same run, each against its
// own development authorization server on 127.0.0.1. It is a benchmark
// driver (scripts/bench.sh runs it), not a test.
//
// With -series FILE it also writes every request as a CSV row (variant,
// seconds since the variant's start, latency in seconds), which
// bench/stallplot draws as latency over time.
package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/internal/devserver"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

type options struct {
	duration, lifetime, latency, interval, early time.Duration
	workers                                      int
	series                                       string // CSV file of every request; "" for none
}

// result is one variant's measurements.
type result struct {
	name                string
	requests, delayed   int
	p50, p99, max       time.Duration
	fetches             int64
	fetchesPerLifetime  float64
	effective           time.Duration
	fetchesPerEffective float64
	errors, expired     int
	samples             []sample // every request, in no particular order
}

// sample is one request: when it started, from the variant's start, and
// how long it took to get a token.
type sample struct{ at, latency time.Duration }

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each variant runs")
	flag.DurationVar(&o.lifetime, "lifetime", 2*time.Second, "access-token lifetime")
	flag.DurationVar(&o.latency, "latency", 200*time.Millisecond, "token endpoint latency")
	flag.DurationVar(&o.interval, "interval", 10*time.Millisecond, "time between one worker's requests")
	flag.DurationVar(&o.early, "early", 500*time.Millisecond, "expiry margin of the tuned x/oauth2 variant (ReuseTokenSourceWithExpiry)")
	flag.IntVar(&o.workers, "workers", 32, "concurrent workers")
	flag.StringVar(&o.series, "series", "", "write every request (variant, start in s, latency in s) to this CSV file")
	flag.Parse()
	if err := run(os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, o options) error {
	header := fmt.Sprintf("loadgen: %d workers, one request each per %s, for %s per variant; tokens live %s; token endpoint latency %s",
		o.workers, o.interval, o.duration, o.lifetime, o.latency)
	fmt.Fprintf(out, "%s\n\n", header)
	variants := []struct {
		name string
		make func(tokenURL, id, secret string) (get getter, stop func())
	}{
		{"m2m", func(tokenURL, id, secret string) (getter, func()) {
			c, err := m2m.New(m2m.Config{TokenURL: tokenURL, ClientID: id, ClientSecret: secret})
			if err != nil {
				return failing(err), func() {}
			}
			src, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view"}})
			if err != nil {
				return failing(err), func() { c.Close() }
			}
			return func(ctx context.Context) (*oauth2.Token, error) { return src.TokenContext(ctx) }, func() { c.Close() }
		}},
		{"x-oauth2 (clientcredentials, defaults)", func(tokenURL, id, secret string) (getter, func()) {
			src := ccConfig(tokenURL, id, secret).TokenSource(context.Background())
			return func(context.Context) (*oauth2.Token, error) { return src.Token() }, func() {}
		}},
		{fmt.Sprintf("x-oauth2 (ReuseTokenSourceWithExpiry %s)", o.early), func(tokenURL, id, secret string) (getter, func()) {
			cc := ccConfig(tokenURL, id, secret)
			src := oauth2.ReuseTokenSourceWithExpiry(nil, fetchSource{cc}, o.early)
			return func(context.Context) (*oauth2.Token, error) { return src.Token() }, func() {}
		}},
	}
	var results []result
	for _, v := range variants {
		r, err := measure(o, v.name, v.make)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		results = append(results, r)
	}
	fmt.Fprintln(out, "| variant | requests | p50 | p99 | max | delayed > 50 ms | expired tokens handed out | errors | token fetches | per nominal lifetime | mean usable life | per usable life |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %d | %d | %d | %d | %.2f | %s | %.2f |\n", r.name, r.requests,
			r.p50.Round(time.Nanosecond), r.p99.Round(10*time.Nanosecond), r.max.Round(time.Microsecond), r.delayed, r.expired, r.errors,
			r.fetches, r.fetchesPerLifetime, r.effective.Round(time.Millisecond), r.fetchesPerEffective)
	}
	if o.series != "" {
		return writeSeries(o.series, header, results)
	}
	return nil
}

// writeSeries writes every request of every variant as CSV, after a
// comment line that describes the run.
func writeSeries(path, header string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "# %s\n", header)
	w := csv.NewWriter(f)
	w.Write([]string{"variant", "start_s", "latency_s"})
	for _, r := range results {
		for _, s := range r.samples {
			w.Write([]string{r.name, strconv.FormatFloat(s.at.Seconds(), 'f', 6, 64), strconv.FormatFloat(s.latency.Seconds(), 'g', 6, 64)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ccConfig(tokenURL, id, secret string) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL,
		Scopes: []string{"event.view"}, EndpointParams: map[string][]string{"audience": {"event"}}}
}

// getter returns a token as a service would get one per request.
type getter func(context.Context) (*oauth2.Token, error)

func failing(err error) getter {
	return func(context.Context) (*oauth2.Token, error) { return nil, err }
}

// fetchSource fetches a new token on every call, for ReuseTokenSourceWithExpiry.
type fetchSource struct{ cc *clientcredentials.Config }

func (f fetchSource) Token() (*oauth2.Token, error) { return f.cc.Token(context.Background()) }

// measure runs one variant against a fresh dev server.
func measure(o options, name string, newGetter func(tokenURL, id, secret string) (getter, func())) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := devserver.New(devserver.Options{TokenLifetime: o.lifetime, Clients: []devserver.Client{{
		ClientID: "task", ClientSecret: "task-secret", Scope: "event.view", Audience: []string{"event"}}}})
	if err != nil {
		return result{}, err
	}
	if err := srv.Start(ctx, "127.0.0.1:0"); err != nil {
		return result{}, err
	}
	defer srv.Close()
	srv.SetFaults(devserver.Faults{Latency: o.latency})
	get, stop := newGetter(srv.TokenURL(), "task", "task-secret")
	defer stop()
	if _, err := get(ctx); err != nil { // the first token: not counted
		return result{}, err
	}
	// expired reports whether tok is past its JWT exp, the moment a
	// verifier with no leeway starts refusing it.
	var expMu sync.Mutex
	exps := map[string]time.Time{}
	var lives time.Duration // summed: each token's exp less when it was first handed out
	expired := func(tok string, at time.Time) bool {
		expMu.Lock()
		exp, ok := exps[tok]
		if !ok {
			exp, _ = wire.JWTExpiry(tok)
			exps[tok] = exp
			lives += exp.Sub(at)
		}
		expMu.Unlock()
		return !at.Before(exp)
	}
	stale := 0
	before := srv.TokenRequests()

	var mu sync.Mutex
	var samples []sample
	errs := 0
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sample
			bad, past := 0, 0
			time.Sleep(time.Duration(rand.Int64N(int64(o.interval)))) // spread the workers
			for next := time.Now(); time.Now().Before(deadline); next = next.Add(o.interval) {
				time.Sleep(time.Until(next))
				t0 := time.Now()
				tok, err := get(ctx)
				t1 := time.Now()
				mine = append(mine, sample{at: t0.Sub(start), latency: t1.Sub(t0)})
				switch {
				case err != nil:
					bad++
				case expired(tok.AccessToken, t1):
					past++
				}
			}
			mu.Lock()
			samples = append(samples, mine...)
			errs += bad
			stale += past
			mu.Unlock()
		}()
	}
	wg.Wait()
	lat := make([]time.Duration, len(samples))
	for i, s := range samples {
		lat[i] = s.latency
	}
	slices.Sort(lat)
	r := result{name: name, requests: len(lat), errors: errs, expired: stale, fetches: srv.TokenRequests() - before, samples: samples}
	if len(lat) == 0 {
		return r, fmt.Errorf("no requests")
	}
	r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	for _, d := range lat {
		if d > 50*time.Millisecond {
			r.delayed++
		}
	}
	r.fetchesPerLifetime = float64(r.fetches) / (float64(o.duration) / float64(o.lifetime))
	// JWT exp is whole seconds, so a token lives up to a second less than
	// its expires_in; the mean of what each token really had left when it
	// was first handed out is the lifetime a client can actually use.
	r.effective = lives / time.Duration(len(exps))
	r.fetchesPerEffective = float64(r.fetches) / (float64(o.duration) / float64(r.effective))
	r.name = strings.TrimSpace(r.name)
	return r, nil
}
