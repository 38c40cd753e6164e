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
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
)

// Errors callers can branch on with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error New and Client.Source
	// return for a bad Config or Audience.
	ErrInvalidConfig = errors.New("m2m: invalid config")
	// ErrUndeclaredScope is wrapped when WithScopes asks for a scope the
	// audience does not declare, or for a malformed scope.
	ErrUndeclaredScope = errors.New("m2m: scope not declared for audience")
	// ErrInvalidResponse is wrapped when the token endpoint answered 2xx
	// with something that is not a usable token.
	ErrInvalidResponse = wire.ErrInvalidResponse
	// ErrClosed is returned once the Client has been closed.
	ErrClosed = errors.New("m2m: client closed")
)

// TokenError is a non-2xx answer of the token endpoint. Its fields follow
// RFC 6749 §5.2. It never holds the client secret.
type TokenError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// ErrorCode is the "error" field, e.g. "invalid_client"; empty when
	// the body was not an OAuth2 error.
	ErrorCode string
	// ErrorDescription is "error_description", truncated to 512 bytes.
	ErrorDescription string
	// ErrorURI is "error_uri".
	ErrorURI string
	// Body is the raw response body, at most 1 MiB.
	Body []byte
	// Audience is the audience the token was asked for.
	Audience string
	// Hint says what to change in Config, when the SDK can tell.
	Hint string
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "m2m: token endpoint answered %d", e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(" " + e.ErrorCode)
	}
	if e.Audience != "" {
		fmt.Fprintf(&b, " for audience %q", e.Audience)
	}
	switch {
	case e.ErrorDescription != "":
		b.WriteString(": " + e.ErrorDescription)
	case e.ErrorCode == "" && len(e.Body) > 0:
		b.WriteString(": " + excerpt(e.Body, 120))
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// excerpt returns the start of b with anything unprintable replaced.
func excerpt(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(b) > n {
		s += "…"
	}
	return strings.TrimSpace(s)
}

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
	case cfg.MaxRefreshAhead < 0, cfg.DefaultLifetime < 0, cfg.FetchTimeout < 0:
		return configErr("MaxRefreshAhead, DefaultLifetime and FetchTimeout may not be negative")
	}
	for k := range cfg.EndpointParams {
		if wire.IsReserved(k) {
			return configErr("EndpointParams may not set %q: the SDK sets it", k)
		}
	}
	if cfg.RefreshFraction == 0 {
		cfg.RefreshFraction = DefaultRefreshFraction
	}
	switch {
	case cfg.RefreshJitter == 0:
		cfg.RefreshJitter = DefaultRefreshJitter
	case cfg.RefreshJitter < 0:
		cfg.RefreshJitter = 0
	}
	if cfg.MaxRefreshAhead == 0 {
		cfg.MaxRefreshAhead = DefaultMaxRefreshAhead
	}
	if cfg.DefaultLifetime == 0 {
		cfg.DefaultLifetime = DefaultLifetime
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	return nil
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
		e = &entry{c: c, audience: audience, scopes: scopes}
		c.entries[key] = e
	}
	return e
}

// Close stops background refreshes, ends in-flight fetches and waits for
// them. Later calls of any method return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
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

// fetch asks the token endpoint for one token of e's audience and scopes.
func (c *Client) fetch(ctx context.Context, e *entry) (*tokenState, error) {
	r := wire.Request{
		TokenURL:     c.cfg.TokenURL,
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		SecretInBody: c.cfg.AuthStyle == AuthStyleInBody,
		Encoding:     wire.Encoding(c.cfg.Encoding),
		Audience:     e.audience,
		Scopes:       e.scopes,
		Extra:        c.cfg.EndpointParams,
	}
	req, err := r.Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("m2m: building token request: %w", err)
	}
	sent := c.clock.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("m2m: token request for audience %q: %w", e.audience, err)
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("m2m: reading token response for audience %q: %w", e.audience, err)
	}
	tok, err := wire.Parse(resp.StatusCode, resp.Header, body, truncated, c.clock.Now(), c.cfg.DefaultLifetime)
	if err != nil {
		var eb *wire.ErrorBody
		if errors.As(err, &eb) {
			return nil, c.tokenError(eb, e.audience, resp.Header.Get("Location"))
		}
		return nil, fmt.Errorf("%w (audience %q)", err, e.audience)
	}
	// The lifetime counts from when the request was sent: the server
	// started it no earlier than that.
	return c.newState(tok, sent), nil
}

// tokenError builds the exported error of a non-2xx answer, with the
// client secret scrubbed from the kept body in case the server echoed it.
func (c *Client) tokenError(eb *wire.ErrorBody, audience, location string) *TokenError {
	body := eb.Body
	for _, s := range []string{c.cfg.ClientSecret, url.QueryEscape(c.cfg.ClientSecret)} {
		body = bytes.ReplaceAll(body, []byte(s), []byte("[REDACTED]"))
	}
	te := &TokenError{
		StatusCode:       eb.Status,
		ErrorCode:        eb.Code,
		ErrorDescription: strings.ReplaceAll(eb.Description, c.cfg.ClientSecret, "[REDACTED]"),
		ErrorURI:         eb.URI,
		Body:             body,
		Audience:         audience,
	}
	te.Hint = c.hint(te, location)
	return te
}

// hint says what to change in Config for the failures the SDK recognises.
func (c *Client) hint(te *TokenError, location string) string {
	desc := strings.ToLower(te.ErrorDescription)
	switch {
	case te.StatusCode >= 300 && te.StatusCode < 400:
		return fmt.Sprintf("the token endpoint redirects to %q; set TokenURL to the final URL", location)
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_post'"):
		return "the client is registered for client_secret_post: set AuthStyle to m2m.AuthStyleInBody"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_basic'"):
		return "the client is registered for client_secret_basic: set AuthStyle to m2m.AuthStyleBasic"
	case c.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusBadRequest && strings.Contains(desc, "post body can not be empty"):
		return "this server reads only form bodies: leave Encoding at m2m.EncodingForm"
	case c.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusInternalServerError:
		return "if this server only reads form bodies, leave Encoding at m2m.EncodingForm"
	}
	return ""
}

// newState turns a parsed token into a cache state with its refresh point.
func (c *Client) newState(t *wire.Token, obtained time.Time) *tokenState {
	life := t.Lifetime
	expiry := obtained.Add(life)
	ot := (&oauth2.Token{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		Expiry:      expiry,
		ExpiresIn:   int64(life / time.Second),
	}).WithExtra(map[string]any{"scope": t.Scope})
	refreshAt, expireAt := schedule(obtained, life, c.cfg.RefreshFraction, c.cfg.RefreshJitter, c.cfg.MaxRefreshAhead, c.cfg.rand())
	return &tokenState{
		tok:       ot,
		auth:      []string{"Bearer " + t.AccessToken},
		obtained:  obtained,
		refreshAt: refreshAt,
		expireAt:  expireAt,
		from:      t.LifetimeFrom,
	}
}

// String describes the Client without its secret.
func (c *Client) String() string {
	return fmt.Sprintf("m2m.Client{TokenURL: %q, ClientID: %q}", c.cfg.TokenURL, c.cfg.ClientID)
}

// Format prints String for every verb, so no verb can show the secret.
func (c *Client) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

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
	if s.c.closed.Load() {
		return nil, ErrClosed
	}
	e := s.def
	if set, ok := ctx.Value(scopesKey{}).(*scopeSet); ok {
		var err error
		if e, err = s.entryFor(set); err != nil {
			return nil, err
		}
	}
	return e.get(ctx)
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

// String describes the source.
func (s *TokenSource) String() string {
	return fmt.Sprintf("m2m.TokenSource{Audience: %q, Scopes: %q}", s.aud.Name, s.aud.Scopes)
}

// Format prints String for every verb, so no verb can show a token.
func (s *TokenSource) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// String describes the Config without its secret.
func (cfg Config) String() string {
	return fmt.Sprintf("m2m.Config{TokenURL: %q, ClientID: %q, ClientSecret: [REDACTED], AuthStyle: %v, Encoding: %v}",
		cfg.TokenURL, cfg.ClientID, cfg.AuthStyle, cfg.Encoding)
}

// Format prints String for every verb, so no verb can show the secret.
func (cfg Config) Format(f fmt.State, _ rune) { fmt.Fprint(f, cfg.String()) }

// LogValue makes slog log the Config without its secret.
func (cfg Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_url", cfg.TokenURL),
		slog.String("client_id", cfg.ClientID),
		slog.String("client_secret", "[REDACTED]"),
		slog.String("auth_style", cfg.AuthStyle.String()),
		slog.String("encoding", cfg.Encoding.String()),
	)
}

// MarshalJSON encodes the Config without its secret.
func (cfg Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenURL, ClientID, ClientSecret, AuthStyle, Encoding string
	}{cfg.TokenURL, cfg.ClientID, "[REDACTED]", cfg.AuthStyle.String(), cfg.Encoding.String()})
}
