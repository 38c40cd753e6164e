// Package m2m gets OAuth2 client-credentials tokens (RFC 6749 §4.4) for
// machine-to-machine calls and puts them on outgoing requests.
//
// A Client holds one OAuth2 client's credentials for one token endpoint.
// Each service it calls is an Audience: a name (the audience parameter), the
// scopes it needs, and the URLs its token may be sent to. Client.Source
// returns a TokenSource per audience, and NewTransport an http.RoundTripper
// that picks the audience of each request by its URL and adds the token:
//
//	c, err := m2m.New(m2m.Config{TokenURL: tokenURL, ClientID: id, ClientSecret: secret})
//	defer c.Close()
//	calendar, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "https://calendar.internal"})
//	hc := &http.Client{Transport: m2m.NewTransport(nil, calendar)}
//	ctx = m2m.WithScopes(ctx, "event.create") // this request's token carries only event.create
//
// Tokens are cached in memory, one per (audience request shape, scope
// set), and renewed before they expire: a token is fresh until its refresh
// point (80% of its lifetime, at most five minutes before it expires),
// then stale (still served while one background refresh runs), then
// expired (callers wait for one shared fetch, each on its own context).
// A token that was used is refreshed in the background at its refresh
// point even if nobody asks then. A Store shares tokens across a fleet.
//
// The token request is form-encoded with the client secret in HTTP Basic by
// default, as RFC 6749 asks and Ory Hydra requires; Config.Encoding and
// Config.AuthStyle select SuperTokens' JSON body or the secret in the body.
// Instead of a secret the client may prove itself with a private key
// (private_key_jwt), a ready-made assertion (workload identity) or a TLS
// client certificate, each maybe read from a file that is read again when
// it changes; Config.DPoPKey binds the tokens to a key (DPoP). The client
// secret, private keys and the tokens never appear in errors, logs or
// formatted values.
package m2m

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// pruneEvery is how often a Client looks for idle cache entries; an entry
// idle (no caller without a fresh token, no valid token, nothing running)
// for two looks in a row is dropped.
const pruneEvery = 10 * time.Minute

// Client fetches and caches tokens for one OAuth2 client at one token
// endpoint. It is safe for concurrent use and should be reused: create one
// per process and client, and Close it when done.
type Client struct {
	env *env

	mu      sync.Mutex
	entries map[cacheKey]*entry // guarded by mu
	idle    map[*entry]int      // guarded by mu: consecutive idle looks
	prune   func() bool         // stops the prune timer; guarded by mu
}

// env is what every cache entry of a Client shares, handed to each entry
// when it is made. All fields are set by newClient and read-only after,
// but the wait group and closed flag.
type env struct {
	cfg   Config
	hc    *http.Client // never follows redirects
	clock clock.Clock
	rand  func() float64
	log   *slog.Logger
	obs   Observer // cfg.Observer
	store *storeGate

	ctx    context.Context // ends on Close; parent of every fetch
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed transitions and wg.Add
	closed atomic.Bool
	wg     sync.WaitGroup // background fetches and refreshes

	endpoint *endpoint // the token endpoint and auth style, maybe discovered

	auth *clientAuth // how the client proves itself: credential, certificate
	dpop *dpopSigner // nil without Config.DPoPKey
}

// New checks cfg and returns a Client. Every bad field gets an error that
// wraps ErrInvalidConfig and names the field.
func New(cfg Config) (*Client, error) {
	return newClient(cfg, clock.Real{}, rand.Float64)
}

// newClient is New with the clock and the jitter source injected.
func newClient(cfg Config, clk clock.Clock, rnd func() float64) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, clock: clk, rand: rnd, log: cfg.Logger, obs: cfg.Observer}
	if cfg.HTTPClient != nil {
		e.hc = wire.WithoutRedirects(cfg.HTTPClient)
	} else {
		// No client timeout: every request is bounded by AttemptTimeout on
		// the Client's clock, and a second deadline per request costs.
		e.hc = wire.NewHTTPClient(0)
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if e.auth, err = newClientAuth(&e.cfg, clk, e.log); err != nil {
		return nil, err
	}
	if e.auth.cert != nil {
		if e.hc, err = e.auth.withClientCertificate(e.hc, clk, e.cfg.FetchTimeout); err != nil {
			return nil, err
		}
	}
	if cfg.DPoPKey != nil {
		if e.dpop, err = newDPoP(cfg.DPoPKey); err != nil {
			return nil, configErr("DPoPKey: %v", err)
		}
	}
	if cfg.Store != nil && e.auth.storeMaterial() == nil {
		return nil, configErr("a Store needs key material: this private key neither exports nor signs deterministically")
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.endpoint = newEndpoint(e)
	if cfg.Store != nil {
		e.store = &storeGate{env: e, s: cfg.Store}
	}
	c := &Client{env: e, entries: map[cacheKey]*entry{}, idle: map[*entry]int{}}
	c.mu.Lock()
	c.prune = clk.AfterFunc(pruneEvery, c.pruneIdle)
	c.mu.Unlock()
	return c, nil
}

// addFetch registers one fetch that Close waits for (the caller calls
// wg.Done when it ends); false once the Client is closed.
func (e *env) addFetch() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return false
	}
	e.wg.Add(1)
	return true
}

// Source returns the TokenSource of an audience. Sources of the same
// audience name, request shape and scope set share one cached token. The
// Audience is checked here; an error wraps ErrInvalidConfig.
func (c *Client) Source(a Audience) (*TokenSource, error) {
	if c.env.closed.Load() {
		return nil, ErrClosed
	}
	spec, err := a.check(&c.env.cfg)
	if err != nil {
		return nil, err
	}
	s := &TokenSource{c: c, spec: spec}
	s.full.Store(c.entry(s.key(spec.aud.Scopes)))
	empty := map[string]*entry{}
	s.sets.Store(&empty)
	return s, nil
}

// entry returns the shared cache entry of k, making it if need be.
func (c *Client) entry(k cacheKey, spec *audienceSpec, scopes []string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		e = newEntry(c.env, k, spec, scopes)
		c.entries[k] = e
	}
	delete(c.idle, e)
	return e
}

// pruneIdle drops the entries that were idle at this look and the one
// before, so that keys nobody uses (audiences built per tenant, say) do
// not hold memory forever, and arms the next look.
func (c *Client) pruneIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.env.closed.Load() {
		return
	}
	for k, e := range c.entries {
		if !e.idle() {
			delete(c.idle, e)
			continue
		}
		if c.idle[e]++; c.idle[e] >= 2 {
			delete(c.idle, e)
			delete(c.entries, k)
			e.prune()
		}
	}
	c.prune = c.env.clock.AfterFunc(pruneEvery, c.pruneIdle)
}

// Close stops background refreshes, ends in-flight fetches and waits for
// them. Later calls of any method return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	e := c.env
	e.mu.Lock()
	e.closed.Store(true)
	e.mu.Unlock()
	c.mu.Lock()
	c.prune()
	entries := make([]*entry, 0, len(c.entries))
	for _, en := range c.entries {
		entries = append(entries, en)
	}
	c.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	for _, en := range entries {
		en.stopTimers()
	}
	if ct, ok := e.hc.Transport.(*certTransport); ok {
		ct.CloseIdleConnections() // a transport of our own, holding the client certificate
	}
	return nil
}

// TokenSource hands out the cached token of one audience. It implements
// oauth2.TokenSource. It is safe for concurrent use and should be reused.
type TokenSource struct {
	c    *Client
	spec audienceSpec

	// full is the entry of the audience's declared scope set; sets maps
	// a WithScopes key to its entry. Readers load both without a lock;
	// writers replace them under mu (they change rarely, reads are hot).
	full atomic.Pointer[entry]
	sets atomic.Pointer[map[string]*entry]
	mu   sync.Mutex
}

// key returns the cache key of this source's audience for scopes.
func (s *TokenSource) key(scopes []string) (cacheKey, *audienceSpec, []string) {
	return cacheKey{audience: s.spec.aud.Name, shape: s.spec.shape, scopes: strings.Join(scopes, " ")}, &s.spec, scopes
}

// Audience returns the audience this source fetches tokens for.
func (s *TokenSource) Audience() Audience { return s.spec.aud.clone() }

// Token returns a valid token for the audience's declared scopes. It
// implements oauth2.TokenSource; prefer TokenContext, which honours a
// context and WithScopes.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext returns a valid token for the scopes that WithScopes put in
// ctx, or for all the audience's declared scopes. A cached fresh token is
// returned at once, without a lock; otherwise it waits for the one shared
// fetch until ctx ends. The returned token is shared: do not modify it.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	_, st, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.tok, nil
}

// Evict tells s that a callee refused tok, a token it handed out for
// ctx's scope set (an HTTP 401, a gRPC Unauthenticated), so that the next
// call fetches a new one. Transport does this by itself for a 401; Evict
// is for other protocols. It reports whether a token other than tok can
// now be had: true when tok was dropped, or was no longer the cached token
// (another caller evicted it first: concurrent Evicts of one token drop it
// once); false when tok is nil, evictions of the key are paused (see
// PauseEvictions), the Client is closed or ctx names scopes the audience
// does not declare. tok must come from s with the same ctx scopes: a
// token of another scope set is never the cached one, so Evict drops
// nothing for it and reports true. A caller that gets true may send its
// request once more with a new token; if that token is refused too, it
// should call PauseEvictions instead of evicting again.
func (s *TokenSource) Evict(ctx context.Context, tok *oauth2.Token) bool {
	if tok == nil {
		return false
	}
	e, err := s.resolve(ctx)
	if err != nil {
		return false
	}
	st := e.state.Load()
	if st == nil || st.tok.AccessToken != tok.AccessToken {
		return true
	}
	return e.evict(st) || e.state.Load() != st
}

// PauseEvictions stops Evict (and Transport's 401 handling) from dropping
// the tokens of ctx's scope set for a while, at least ErrorCacheTTL: call
// it when a token fetched after an Evict was refused too. The callee, not
// the token, is then the problem, and fetching more would only drain the
// token endpoint. The pause is reported to the Observer
// (EventEvictionsPaused) and logged.
func (s *TokenSource) PauseEvictions(ctx context.Context) {
	if e, err := s.resolve(ctx); err == nil {
		e.pauseEvictions()
	}
}

// get returns the entry of ctx's scope set and a usable token of it. An
// entry pruned while this source held it is replaced by a new one.
func (s *TokenSource) get(ctx context.Context) (*entry, *tokenState, error) {
	for {
		e, err := s.resolve(ctx)
		if err != nil {
			return nil, nil, err
		}
		st, err := e.get(ctx)
		if err == errPruned { // never wrapped; errors.Is would cost the hot path
			s.replace(e)
			continue
		}
		return e, st, err
	}
}

// resolve returns the cache entry of ctx's scope set.
func (s *TokenSource) resolve(ctx context.Context) (*entry, error) {
	if s.c.env.closed.Load() {
		return nil, ErrClosed
	}
	if set, ok := ctx.Value(scopesKey{}).(*scopeSet); ok {
		return s.entryFor(set)
	}
	return s.full.Load(), nil
}

// entryFor returns the entry of a narrowed scope set, checking once that
// every scope is declared.
func (s *TokenSource) entryFor(set *scopeSet) (*entry, error) {
	if set.err != nil {
		return nil, set.err
	}
	if e := (*s.sets.Load())[set.key]; e != nil {
		return e, nil
	}
	for _, sc := range set.list {
		if !s.spec.declared[sc] {
			return nil, fmt.Errorf("%w: %q is not among the scopes of audience %q", ErrUndeclaredScope, sc, s.spec.aud.Name)
		}
	}
	e := s.c.entry(s.key(set.list))
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.sets.Load()
	next := make(map[string]*entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[set.key] = e
	s.sets.Store(&next)
	return e, nil
}

// replace swaps a pruned entry for the Client's current one of its key.
func (s *TokenSource) replace(old *entry) {
	fresh := s.c.entry(old.key, &s.spec, old.scopes)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full.CompareAndSwap(old, fresh)
	sets := *s.sets.Load()
	for k, e := range sets {
		if e == old {
			next := make(map[string]*entry, len(sets))
			for k2, v := range sets {
				next[k2] = v
			}
			next[k] = fresh
			s.sets.Store(&next)
			return
		}
	}
}
