package m2m

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
)

// AuthStyle says how the client authenticates to the token endpoint
// (RFC 6749 §2.3.1). It must match the client's registered
// token_endpoint_auth_method, or the server answers 401 invalid_client.
type AuthStyle int

const (
	// AuthStyleAuto is the default: AuthStyleBasic, unless Config.Issuer
	// is set and the server's metadata lists client_secret_post but not
	// client_secret_basic.
	AuthStyleAuto AuthStyle = iota
	// AuthStyleBasic sends the client id and secret in an HTTP Basic
	// Authorization header, each form-urlencoded first
	// (client_secret_basic).
	AuthStyleBasic
	// AuthStyleInBody sends client_id and client_secret as body
	// parameters (client_secret_post).
	AuthStyleInBody
)

// String returns the constant's name, e.g. "AuthStyleBasic".
func (s AuthStyle) String() string {
	switch s {
	case AuthStyleAuto:
		return "AuthStyleAuto"
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

// String returns the constant's name, e.g. "EncodingForm".
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
	// must be set. Required unless Issuer is set.
	TokenURL string
	// Issuer is the authorization server's issuer URL. When TokenURL is
	// empty, the token endpoint is read from the server's metadata
	// (RFC 8414 "/.well-known/oauth-authorization-server", else OpenID
	// "/.well-known/openid-configuration"), whose issuer must equal this
	// exactly. Optional.
	Issuer string
	// ClientID is the OAuth2 client id. Required.
	ClientID string
	// ClientSecret is the OAuth2 client secret. Required.
	ClientSecret string
	// AuthStyle says how the secret is sent. Optional; default
	// AuthStyleAuto.
	AuthStyle AuthStyle
	// Encoding is the token request body format. Optional; default
	// EncodingForm.
	Encoding Encoding
	// HTTPClient sends token (and metadata) requests. The SDK uses a copy
	// that never follows redirects, whoever built it: a redirect could
	// carry the credentials to another host. Optional; default a client
	// of its own on a clone of http.DefaultTransport taken at start-up, so
	// later changes to http.DefaultTransport do not touch requests that
	// carry the secret (AttemptTimeout bounds each request).
	HTTPClient *http.Client
	// EndpointParams are extra parameters sent with every token request.
	// The SDK's own (grant_type, scope, audience, resource, client_id,
	// client_secret, client_assertion, client_assertion_type) may not be
	// set here; per-audience parameters go in Audience.Params. Optional.
	EndpointParams url.Values
	// RefreshFraction is the part of a token's lifetime after which it may
	// be refreshed, in (0, 1); MaxRefreshAhead caps how early that is for
	// long tokens. Optional; default 0.8.
	RefreshFraction float64
	// RefreshJitter moves each refresh earlier by a random part of the
	// refresh window, up to this fraction of it, so a fleet does not
	// refresh in lock-step. In [0, 1]; negative disables jitter. Optional;
	// default 0.05.
	RefreshJitter float64
	// MaxRefreshAhead caps the refresh window: how long before a token is
	// taken as expired its refresh begins (before jitter). The default
	// gives a one-hour token five minutes of background retries before it
	// expires, at about 1.1 token requests per lifetime. Optional; default
	// 5 min.
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
	// RetryBaseDelay and RetryMaxDelay shape the backoff between retries
	// and between failed fetches of a key: a random wait below
	// RetryBaseDelay·2^n, at most RetryMaxDelay, and at least a server's
	// Retry-After (itself capped at RetryMaxDelay). Optional; defaults
	// 100 ms and 10 s.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// ErrorCacheTTL is how long a non-retryable failure (a 4xx such as
	// invalid_client, or an unusable answer) is returned to callers that
	// have no valid token, without asking the server again; it is also
	// how long a key stops evicting tokens after a callee rejected a
	// freshly fetched one. Optional; default 2 s; negative disables.
	ErrorCacheTTL time.Duration
	// DisableKeepWarm turns off background refresh of idle keys. By
	// default a key whose token was used during its lifetime is refreshed
	// in the background when the token reaches its refresh point, even if
	// no caller asks then, so a rarely used key does not end in a
	// blocking fetch; a key unused for a whole lifetime is not refreshed
	// (and is dropped from memory once idle). Optional.
	DisableKeepWarm bool
	// Store is a token cache shared by the processes of a fleet, consulted
	// before each fetch (see Store). Optional; default none.
	Store Store
	// StoreTimeout bounds each call to Store; past it the Client fetches
	// on its own. Optional; default 50 ms.
	StoreTimeout time.Duration
	// Observer receives events for metrics: cache hits, stale serves,
	// fetches with their latency, retries, failures by kind, evictions,
	// 401 replays and shared-store state. Optional.
	Observer Observer
	// AllowInsecureHTTP permits plain http TokenURL, Issuer and audience
	// URLs on hosts other than loopback ("localhost" and literal loopback
	// addresses). Tokens and secrets then cross the network in clear
	// text. Optional; default false.
	AllowInsecureHTTP bool
	// Logger receives the SDK's events (fetches, failures), never a
	// secret or a token. Optional; default discards.
	Logger *slog.Logger
}

// Defaults of the optional Config fields.
const (
	// DefaultRefreshFraction is Config.RefreshFraction's default.
	DefaultRefreshFraction = 0.8
	// DefaultRefreshJitter is Config.RefreshJitter's default.
	DefaultRefreshJitter = 0.05
	// DefaultMaxRefreshAhead is Config.MaxRefreshAhead's default.
	DefaultMaxRefreshAhead = 5 * time.Minute
	// DefaultLifetime is Config.DefaultLifetime's default.
	DefaultLifetime = 5 * time.Minute
	// DefaultFetchTimeout is Config.FetchTimeout's default.
	DefaultFetchTimeout = 30 * time.Second
	// DefaultAttemptTimeout is Config.AttemptTimeout's default.
	DefaultAttemptTimeout = 10 * time.Second
	// DefaultMaxRetries is Config.MaxRetries's default.
	DefaultMaxRetries = 3
	// DefaultRetryBaseDelay is Config.RetryBaseDelay's default.
	DefaultRetryBaseDelay = 100 * time.Millisecond
	// DefaultRetryMaxDelay is Config.RetryMaxDelay's default.
	DefaultRetryMaxDelay = 10 * time.Second
	// DefaultErrorCacheTTL is Config.ErrorCacheTTL's default.
	DefaultErrorCacheTTL = 2 * time.Second
	// DefaultStoreTimeout is Config.StoreTimeout's default.
	DefaultStoreTimeout = 50 * time.Millisecond
)

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// check validates cfg and fills in defaults.
func (cfg *Config) check() error {
	switch {
	case cfg.TokenURL == "" && cfg.Issuer == "":
		return configErr("TokenURL (or Issuer, to discover it) is required")
	case cfg.ClientID == "":
		return configErr("ClientID is required")
	case !printable(cfg.ClientID):
		return configErr("ClientID holds control characters")
	case cfg.ClientSecret == "":
		return configErr("ClientSecret is required")
	case !printable(cfg.ClientSecret):
		return configErr("ClientSecret holds control characters")
	case cfg.AuthStyle < AuthStyleAuto || cfg.AuthStyle > AuthStyleInBody:
		return configErr("AuthStyle %d is not one of AuthStyleAuto, AuthStyleBasic, AuthStyleInBody", int(cfg.AuthStyle))
	case cfg.Encoding != EncodingForm && cfg.Encoding != EncodingJSON:
		return configErr("Encoding %d is not EncodingForm or EncodingJSON", int(cfg.Encoding))
	case cfg.RefreshFraction != 0 && !(cfg.RefreshFraction > 0 && cfg.RefreshFraction < 1):
		return configErr("RefreshFraction %v is not in (0, 1)", cfg.RefreshFraction)
	case cfg.RefreshJitter > 1:
		return configErr("RefreshJitter %v is above 1", cfg.RefreshJitter)
	case cfg.MaxRefreshAhead < 0, cfg.DefaultLifetime < 0, cfg.FetchTimeout < 0, cfg.AttemptTimeout < 0,
		cfg.RetryBaseDelay < 0, cfg.RetryMaxDelay < 0, cfg.StoreTimeout < 0:
		return configErr("MaxRefreshAhead, DefaultLifetime, FetchTimeout, AttemptTimeout, RetryBaseDelay, RetryMaxDelay and StoreTimeout may not be negative")
	}
	for field, raw := range map[string]string{"TokenURL": cfg.TokenURL, "Issuer": cfg.Issuer} {
		if raw == "" {
			continue
		}
		if _, err := checkURL(field, raw, cfg.AllowInsecureHTTP); err != nil {
			return err
		}
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
	setDefault(&cfg.StoreTimeout, DefaultStoreTimeout)
	cfg.EndpointParams = cloneValues(cfg.EndpointParams)
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

// printable reports whether s has no control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// checkURL parses raw with wire.CheckURL and names field in the error. A
// URL with credentials is refused without echoing it.
func checkURL(field, raw string, allowInsecure bool) (*url.URL, error) {
	u, err := wire.CheckURL(raw, allowInsecure)
	if err != nil {
		if errors.Is(err, wire.ErrURLCredentials) {
			return nil, configErr("%s %v; use ClientID and ClientSecret", field, err)
		}
		return nil, configErr("%s %q %v", field, raw, err)
	}
	return u, nil
}
