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
// Tokens are cached in memory, one per (audience, scope set), and renewed
// in the background before they expire: a token is fresh until about 80% of
// its lifetime, then stale (still served while one refresh runs), then
// expired (callers wait for one shared fetch, each on its own context).
//
// The token request is form-encoded with the client secret in HTTP Basic by
// default, as RFC 6749 asks and Ory Hydra requires; Config.Encoding and
// Config.AuthStyle select SuperTokens' JSON body or the secret in the body.
// The client secret and the tokens never appear in errors, logs or
// formatted values.
package m2m

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
)

// AuthStyle says how the client authenticates to the token endpoint
// (RFC 6749 §2.3.1). It must match the client's registered
// token_endpoint_auth_method, or the server answers 401 invalid_client.
type AuthStyle int

const (
	// AuthStyleBasic sends the client id and secret in an HTTP Basic
	// Authorization header, each form-urlencoded first
	// (client_secret_basic). It is the default.
	AuthStyleBasic AuthStyle = iota
	// AuthStyleInBody sends client_id and client_secret as body
	// parameters (client_secret_post).
	AuthStyleInBody
)

func (s AuthStyle) String() string {
	switch s {
	case AuthStyleBasic:
		return "AuthStyleBasic"
	case AuthStyleInBody:
		return "AuthStyleInBody"
	}
	return fmt.Sprintf("AuthStyle(%d)", int(s))
}

// Encoding is the body format of the token request.
type Encoding int

const (
	// EncodingForm is application/x-www-form-urlencoded (RFC 6749 §4.4.2),
	// the default, and the only format Ory Hydra accepts.
	EncodingForm Encoding = iota
	// EncodingJSON is the application/json body SuperTokens documents. As
	// with the form, scope is one space-separated string and audience one
	// value: the documented JSON array makes the real server answer 500.
	EncodingJSON
)

func (e Encoding) String() string {
	switch e {
	case EncodingForm:
		return "EncodingForm"
	case EncodingJSON:
		return "EncodingJSON"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// Config configures a Client. The zero value of every optional field is
// its default. Formatting a Config with fmt, slog or encoding/json never
// shows ClientSecret.
type Config struct {
	// TokenURL is the token endpoint, e.g. SuperTokens'
	// "<apiDomain><apiBasePath>/oauth/token" or Hydra's "/oauth2/token".
	// It must be https, or http on a loopback host, or AllowInsecureHTTP
	// must be set. Required.
	TokenURL string
	// ClientID is the OAuth2 client id. Required.
	ClientID string
	// ClientSecret is the OAuth2 client secret. Required.
	ClientSecret string
	// AuthStyle says how the secret is sent. Optional; default
	// AuthStyleBasic.
	AuthStyle AuthStyle
	// Encoding is the token request body format. Optional; default
	// EncodingForm.
	Encoding Encoding
	// HTTPClient sends token requests. Optional; default a client of its
	// own with a 30 s timeout that does not follow redirects (a redirect
	// could carry the credentials to another host).
	HTTPClient *http.Client
	// EndpointParams are extra parameters sent with every token request
	// (e.g. "resource"). grant_type, scope, audience, client_id and
	// client_secret are the SDK's own and may not be set here. Optional.
	EndpointParams url.Values
	// RefreshFraction is the part of a token's lifetime after which it is
	// refreshed in the background, in (0, 1). Optional; default 0.8.
	RefreshFraction float64
	// RefreshJitter moves each refresh earlier by a random part of the
	// refresh window, up to this fraction of it, so a fleet does not
	// refresh in lock-step. In [0, 1]; negative disables jitter. Optional;
	// default 0.25.
	RefreshJitter float64
	// MaxRefreshAhead caps how long before expiry a refresh begins, so a
	// day-long token is not renewed hours early. Optional; default 15 min.
	MaxRefreshAhead time.Duration
	// DefaultLifetime is the lifetime assumed for a token whose response
	// has no expires_in and that is not a JWT with an exp claim. A token
	// is never taken as valid forever. Optional; default 5 min.
	DefaultLifetime time.Duration
	// FetchTimeout bounds one token fetch, shared by all callers waiting
	// for it; a caller's own context only ends its own wait. Optional;
	// default 30 s.
	FetchTimeout time.Duration
	// AttemptTimeout bounds one token request within the fetch, so a hung
	// connection is retried rather than eating the whole FetchTimeout.
	// Optional; default 10 s.
	AttemptTimeout time.Duration
	// MaxRetries is how many times a transient failure (5xx, 429, 408, a
	// network error or timeout) is retried within one fetch; other 4xx
	// answers are never retried. Optional; default 3; negative disables.
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the backoff between retries:
	// a random wait below RetryBaseDelay·2^n, at most RetryMaxDelay, and
	// at least a server's Retry-After (itself capped at RetryMaxDelay).
	// Background refreshes that fail are spaced the same way. Optional;
	// defaults 100 ms and 10 s.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// ErrorCacheTTL is how long a non-retryable failure (a 4xx such as
	// invalid_client, or an unusable answer) is returned to callers that
	// have no valid token, without asking the server again. Optional;
	// default 2 s; negative disables.
	ErrorCacheTTL time.Duration
	// Observer receives events for metrics: cache hits, stale serves,
	// fetches with their latency, retries, failures by kind, evictions and
	// 401 replays. Optional.
	Observer Observer
	// AllowInsecureHTTP permits plain http TokenURL and audience URLs on
	// hosts other than loopback. Tokens and secrets then cross the network
	// in clear text. Optional; default false.
	AllowInsecureHTTP bool
	// Logger receives the SDK's events (fetches, failures), never a
	// secret or a token. Optional; default discards.
	Logger *slog.Logger

	clock clock.Clock    // tests inject a fake clock
	rand  func() float64 // tests inject jitter
}

// Defaults of the optional Config fields.
const (
	DefaultRefreshFraction = 0.8
	DefaultRefreshJitter   = 0.25
	DefaultMaxRefreshAhead = 15 * time.Minute
	DefaultLifetime        = 5 * time.Minute
	DefaultFetchTimeout    = 30 * time.Second
	DefaultAttemptTimeout  = 10 * time.Second
	DefaultMaxRetries      = 3
	DefaultRetryBaseDelay  = 100 * time.Millisecond
	DefaultRetryMaxDelay   = 10 * time.Second
	DefaultErrorCacheTTL   = 2 * time.Second
)

// Client fetches and caches tokens for one OAuth2 client at one token
// endpoint. It is safe for concurrent use and should be reused: create one
// per process and client, and Close it when done.
type Client struct {
	cfg    Config
	hc     *http.Client
	clock  clock.Clock
	log    *slog.Logger
	ctx    context.Context // ends on Close; parent of every fetch
	cancel context.CancelFunc
	closed atomic.Bool

	mu      sync.Mutex
	entries map[string]*entry // guarded by mu; key: audience "\x00" scopes
	wg      sync.WaitGroup    // background fetches; Add guarded by mu
}

// New checks cfg and returns a Client. Every bad field gets an error that
// wraps ErrInvalidConfig and names the field.
func New(cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, hc: cfg.HTTPClient, clock: cfg.clock, log: cfg.Logger, entries: map[string]*entry{}}
	if c.hc == nil {
		c.hc = wire.NewHTTPClient(30 * time.Second)
	}
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cfg.rand == nil {
		c.cfg.rand = rand.Float64
	}
	c.cfg.EndpointParams = cloneValues(cfg.EndpointParams)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// check validates cfg and fills in defaults.
func (cfg *Config) check() error {
	if cfg.TokenURL == "" {
		return configErr("TokenURL is required")
	}
	if _, err := checkURL("TokenURL", cfg.TokenURL, cfg.AllowInsecureHTTP); err != nil {
		return err
	}
	switch {
	case cfg.ClientID == "":
		return configErr("ClientID is required")
	case !printable(cfg.ClientID):
		return configErr("ClientID holds control characters")
	case cfg.ClientSecret == "":
		return configErr("ClientSecret is required")
	case !printable(cfg.ClientSecret):
		return configErr("ClientSecret holds control characters")
	case cfg.AuthStyle != AuthStyleBasic && cfg.AuthStyle != AuthStyleInBody:
		return configErr("AuthStyle %d is not AuthStyleBasic or AuthStyleInBody", int(cfg.AuthStyle))
	case cfg.Encoding != EncodingForm && cfg.Encoding != EncodingJSON:
		return configErr("Encoding %d is not EncodingForm or EncodingJSON", int(cfg.Encoding))
	case cfg.RefreshFraction != 0 && !(cfg.RefreshFraction > 0 && cfg.RefreshFraction < 1):
		return configErr("RefreshFraction %v is not in (0, 1)", cfg.RefreshFraction)
	case cfg.RefreshJitter > 1:
		return configErr("RefreshJitter %v is above 1", cfg.RefreshJitter)
	case cfg.MaxRefreshAhead < 0, cfg.DefaultLifetime < 0, cfg.FetchTimeout < 0, cfg.AttemptTimeout < 0,
		cfg.RetryBaseDelay < 0, cfg.RetryMaxDelay < 0:
		return configErr("MaxRefreshAhead, DefaultLifetime, FetchTimeout, AttemptTimeout, RetryBaseDelay and RetryMaxDelay may not be negative")
	}
	for k := range cfg.EndpointParams {
		if wire.IsReserved(k) {
			return configErr("EndpointParams may not set %q: the SDK sets it", k)
		}
	}
	setDefault(&cfg.RefreshFraction, DefaultRefreshFraction)
	setDefaultOrOff(&cfg.RefreshJitter, DefaultRefreshJitter)
	setDefault(&cfg.MaxRefreshAhead, DefaultMaxRefreshAhead)
	setDefault(&cfg.DefaultLifetime, DefaultLifetime)
	setDefault(&cfg.FetchTimeout, DefaultFetchTimeout)
	setDefault(&cfg.AttemptTimeout, min(DefaultAttemptTimeout, cfg.FetchTimeout))
	setDefaultOrOff(&cfg.MaxRetries, DefaultMaxRetries)
	setDefault(&cfg.RetryBaseDelay, DefaultRetryBaseDelay)
	setDefault(&cfg.RetryMaxDelay, max(DefaultRetryMaxDelay, cfg.RetryBaseDelay))
	setDefaultOrOff(&cfg.ErrorCacheTTL, DefaultErrorCacheTTL)
	return nil
}

// setDefault sets *v to def when it is zero.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// setDefaultOrOff sets *v to def when it is zero and to zero ("off") when
// it is negative.
func setDefaultOrOff[T int | float64 | time.Duration](v *T, def T) {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		*v = 0
	}
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Source returns the TokenSource of an audience. Sources of the same
// audience name and scope set share one cached token. The Audience is
// checked here; an error wraps ErrInvalidConfig.
func (c *Client) Source(a Audience) (*TokenSource, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	n, err := a.normalize(c.cfg.AllowInsecureHTTP)
	if err != nil {
		return nil, err
	}
	s := &TokenSource{c: c, aud: n.aud, routes: n.routes, declared: n.declared}
	s.def = c.entry(n.aud.Name, n.aud.Scopes)
	empty := map[string]*entry{}
	s.sets.Store(&empty)
	return s, nil
}

// entry returns the shared cache entry of (audience, sorted scopes).
func (c *Client) entry(audience string, scopes []string) *entry {
	key := audience + "\x00" + strings.Join(scopes, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &entry{c: c, audience: audience, scopes: scopes, scopeKey: strings.Join(scopes, " ")}
		c.entries[key] = e
	}
	return e
}

// Close stops background refreshes, ends in-flight fetches and waits for
// them. Later calls of any method return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	entries := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	for _, e := range entries {
		if st := e.state.Load(); st != nil {
			st.disarm()
		}
	}
	return nil
}

// track registers one background goroutine; false once closed.
func (c *Client) track() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.wg.Add(1)
	return true
}

// TokenSource hands out the cached token of one audience. It implements
// oauth2.TokenSource. It is safe for concurrent use and should be reused.
type TokenSource struct {
	c        *Client
	aud      Audience
	routes   []route
	declared map[string]bool
	def      *entry // the audience's full scope set

	// sets maps a WithScopes key to its entry. Readers load it without a
	// lock; writers copy it under mu (sets change rarely, reads are hot).
	sets atomic.Pointer[map[string]*entry]
	mu   sync.Mutex
}

// Audience returns the audience this source fetches tokens for.
func (s *TokenSource) Audience() Audience { return s.aud.clone() }

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
	st, err := s.state(ctx)
	if err != nil {
		return nil, err
	}
	return st.tok, nil
}

// state returns the cache state to use for ctx.
func (s *TokenSource) state(ctx context.Context) (*tokenState, error) {
	e, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return e.get(ctx)
}

// resolve returns the cache entry of ctx's scope set.
func (s *TokenSource) resolve(ctx context.Context) (*entry, error) {
	if s.c.closed.Load() {
		return nil, ErrClosed
	}
	if set, ok := ctx.Value(scopesKey{}).(*scopeSet); ok {
		return s.entryFor(set)
	}
	return s.def, nil
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
		if !s.declared[sc] {
			return nil, fmt.Errorf("%w: %q is not among the scopes of audience %q", ErrUndeclaredScope, sc, s.aud.Name)
		}
	}
	e := s.c.entry(s.aud.Name, set.list)
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
