package m2m

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
// shows ClientSecret or a private key: only the client authentication
// method.
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
	// ClientSecret is the OAuth2 client secret, sent as AuthStyle says
	// (client_secret_basic or client_secret_post). Exactly one client
	// credential is required: ClientSecret, ClientSecretFile, PrivateKey,
	// PrivateKeyFile, ClientAssertion or ClientAssertionFile — or none of
	// them and TLSCertFile (tls_client_auth).
	ClientSecret string
	// ClientSecretFile names a file holding the client secret (one line;
	// a trailing newline is dropped), such as a mounted Kubernetes
	// Secret. It is read by New, read again (and its hash compared) at
	// most every 5 seconds when a token is fetched — never on the hot
	// path — and at once after an
	// invalid_client answer, so a rotated secret takes effect without a
	// restart. A file that stops parsing keeps the last good secret.
	// Optional.
	ClientSecretFile string
	// AuthStyle says how a secret is sent. It applies only to
	// ClientSecret and ClientSecretFile. Optional; default AuthStyleAuto.
	AuthStyle AuthStyle
	// PrivateKey signs a fresh client assertion for every token request
	// (private_key_jwt, RFC 7523 §2.2 and OpenID Connect Core §9): a JWT
	// with iss and sub the client id, aud AssertionAudience, a random
	// jti, iat now and exp 60 s later, and kid KeyID. RSA keys (at least
	// 2048 bits) sign RS256 or PS256, P-256 keys ES256. The key never
	// leaves the process; register its public half with the server (see
	// PublicJWK). Optional.
	PrivateKey crypto.Signer
	// PrivateKeyFile names a PEM (PKCS #8, PKCS #1 or SEC 1) or JWK file
	// holding the private_key_jwt key, re-read like ClientSecretFile. A
	// JWK's kid and alg are used unless KeyID and SigningAlgorithm are
	// set. Optional.
	PrivateKeyFile string
	// KeyID is the kid header of the client assertions, which the server
	// looks the key up by. Leave it empty when PrivateKeyFile rotates, so
	// the kid follows the key. Optional; default the JWK's kid, else the
	// key's RFC 7638 thumbprint (JWKThumbprint).
	KeyID string
	// SigningAlgorithm is the assertions' alg: AlgRS256 or AlgPS256 for
	// RSA keys, AlgES256 for P-256 keys. Optional; default the JWK's alg,
	// else AlgRS256 for RSA and AlgES256 for P-256.
	SigningAlgorithm string
	// AssertionAudience is the aud claim of the assertions the SDK signs.
	// Optional; default the token endpoint URL (RFC 7523 §3); some
	// servers want their issuer identifier instead.
	AssertionAudience string
	// ClientAssertion returns a ready-made client assertion (RFC 7521,
	// a JWT another party signed for this client: workload identity
	// federation, such as a cloud's or a CI job's OIDC token), called for
	// every token request with that request's context. An assertion whose
	// exp has passed is refused rather than sent. It must be safe for
	// concurrent use. Optional.
	ClientAssertion func(ctx context.Context) (string, error)
	// ClientAssertionFile names a file holding a ready-made client
	// assertion, such as a Kubernetes projected service-account token,
	// re-read like ClientSecretFile and also whenever the assertion it
	// holds is within 10 s of its exp: an assertion is never used past
	// its own exp. Optional.
	ClientAssertionFile string
	// TLSCertFile and TLSKeyFile name PEM files of a client certificate
	// and its private key (TLSKeyFile empty: the key is in TLSCertFile),
	// presented in the TLS handshake of every token request (RFC 8705).
	// Without another credential the client authenticates by the
	// certificate alone, sending only client_id: tls_client_auth or
	// self_signed_tls_client_auth, whichever the client is registered
	// for (the client's side is the same). With one, the server may still
	// bind its tokens to the certificate. The files are re-read like
	// ClientSecretFile; a new certificate closes idle connections so the
	// next request presents it. HTTPClient's Transport, if set, must be an
	// *http.Transport (it is cloned, not changed). Optional.
	TLSCertFile, TLSKeyFile string
	// DPoPKey makes every token sender-constrained (DPoP, RFC 9449):
	// token requests carry a proof of possession of this key, the server
	// binds the token to it (token_type "DPoP"; a bearer answer is
	// refused), and a Transport sends "Authorization: DPoP <token>" with
	// a fresh proof per request, so a stolen token is useless without the
	// key. Server nonces (DPoP-Nonce, use_dpop_nonce) are handled. A P-256
	// key (ES256) is the usual choice and the cheapest per request; RSA
	// keys sign RS256. Tokens from a Store are shared only by processes
	// holding the same key. Optional; default bearer tokens.
	DPoPKey crypto.Signer
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
	case cfg.ClientSecret != "" && !printable(cfg.ClientSecret):
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
	if err := cfg.checkCredentials(); err != nil {
		return err
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
		return nil, configErr("%s %q %v", field, wire.Redacted(raw), err)
	}
	return u, nil
}

// checkCredentials checks that exactly one client credential is set, and
// the settings that go with it.
func (cfg *Config) checkCredentials() error {
	set := []string{}
	for name, on := range map[string]bool{
		"ClientSecret": cfg.ClientSecret != "", "ClientSecretFile": cfg.ClientSecretFile != "",
		"PrivateKey": cfg.PrivateKey != nil, "PrivateKeyFile": cfg.PrivateKeyFile != "",
		"ClientAssertion": cfg.ClientAssertion != nil, "ClientAssertionFile": cfg.ClientAssertionFile != "",
	} {
		if on {
			set = append(set, name)
		}
	}
	slices.Sort(set)
	secret := cfg.ClientSecret != "" || cfg.ClientSecretFile != ""
	key := cfg.PrivateKey != nil || cfg.PrivateKeyFile != ""
	switch {
	case len(set) > 1:
		return configErr("set one client credential, not %s", strings.Join(set, " and "))
	case len(set) == 0 && cfg.TLSCertFile == "":
		return configErr("ClientSecret is required (or ClientSecretFile, PrivateKey, PrivateKeyFile, ClientAssertion, ClientAssertionFile, or TLSCertFile alone for tls_client_auth)")
	case cfg.AuthStyle != AuthStyleAuto && !secret:
		return configErr("AuthStyle applies to ClientSecret and ClientSecretFile only")
	case (cfg.KeyID != "" || cfg.SigningAlgorithm != "" || cfg.AssertionAudience != "") && !key:
		return configErr("KeyID, SigningAlgorithm and AssertionAudience apply to PrivateKey and PrivateKeyFile only")
	case !printable(cfg.KeyID):
		return configErr("KeyID holds control characters")
	case cfg.TLSKeyFile != "" && cfg.TLSCertFile == "":
		return configErr("TLSKeyFile needs TLSCertFile")
	case cfg.Store != nil && !secret && !key && cfg.TLSCertFile == "":
		return configErr("a Store needs key material that the whole fleet holds: a secret, a private key or a TLS key; a ClientAssertion alone has none")
	}
	if cfg.AssertionAudience != "" {
		if _, err := url.Parse(cfg.AssertionAudience); err != nil || !printable(cfg.AssertionAudience) {
			return configErr("AssertionAudience %q is not a URI", cfg.AssertionAudience)
		}
	}
	return nil
}
