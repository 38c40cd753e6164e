package verify

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
)

// Profile selects the rule that tells an access token from the issuer's
// other JWTs (ID tokens, session tokens) signed by the same keys.
type Profile int

const (
	// ProfileSuperTokens requires SuperTokens' stt claim to be exactly 1
	// (an OAuth2 access token; 0 is a session token, see
	// Config.AcceptSessionTokens, and 2 an ID token). The typ header is
	// not read. It is the default.
	ProfileSuperTokens Profile = iota
	// ProfileRFC9068 is RFC 9068 as written: the typ header must be
	// "at+jwt" or "application/at+jwt" (§4, compared case-insensitively)
	// and iss, exp, aud, sub, client_id, iat and jti are required (§2.2).
	// stt is not read. For servers that issue RFC 9068 tokens, such as
	// node-oidc-provider.
	ProfileRFC9068
	// ProfileHydra is ProfileRFC9068 for Ory Hydra v2 (and SuperTokens
	// tokens checked without stt), whose access tokens say typ "JWT":
	// that typ is accepted as well as RFC 9068's, and a typ header is
	// still required. The same claims are required, so Hydra's ID tokens
	// (no client_id) are refused.
	ProfileHydra
)

// String returns "supertokens", "rfc9068" or "hydra".
func (p Profile) String() string {
	switch p {
	case ProfileSuperTokens:
		return "supertokens"
	case ProfileRFC9068:
		return "rfc9068"
	case ProfileHydra:
		return "hydra"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// Config configures a Verifier. The zero value of every optional field is
// its default. Formatting a Config with fmt, slog or encoding/json never
// shows IntrospectionClientSecret.
type Config struct {
	// Issuer, when set, must equal the token's iss claim exactly
	// (SuperTokens: apiDomain+apiBasePath; Hydra: its issuer URL). When
	// JWKSURL and IntrospectionURL are both empty, New reads the issuer's
	// metadata (OpenID Connect Discovery, else RFC 8414), whose issuer
	// must equal this value exactly, and takes jwks_uri and (with
	// IntrospectionClientID) introspection_endpoint from it. Optional, but
	// recommended; required for discovery.
	Issuer string
	// JWKSURL is where the signing keys are, e.g. SuperTokens'
	// "<apiDomain><apiBasePath>/jwt/jwks.json" or Hydra's
	// "/.well-known/jwks.json". https, or http on loopback unless
	// AllowInsecureHTTP. Required for JWTs unless discovered from Issuer.
	JWKSURL string
	// Audience must be in the token's aud claim (a string or an array).
	// Required.
	Audience string
	// Algorithms are the accepted JWS alg values, from RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA. Optional;
	// default RS256. "none" and HMAC algorithms are refused.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Optional;
	// default 30 s; negative means none.
	Leeway time.Duration
	// Profile is the token-type rule. Optional; default ProfileSuperTokens.
	Profile Profile
	// AcceptSessionTokens also accepts SuperTokens session access tokens
	// (stt 0, with a sessionHandle) under ProfileSuperTokens, so one
	// middleware can serve both; Claims.Kind tells them apart. Session
	// tokens carry no aud or scopes, so aud is not checked for them and a
	// route that requires scopes refuses them. Optional.
	AcceptSessionTokens bool
	// ClientCredentialsOnly refuses every token issued for a user
	// (KindUserDelegated, KindSession) with ErrTokenType: for routes only
	// machines may call. Optional.
	ClientCredentialsOnly bool
	// ClientIDs, when set, is the allow-list of client_id values. Optional.
	ClientIDs []string
	// IntrospectionURL is the RFC 7662 endpoint that checks opaque
	// tokens (Hydra: "<admin>/admin/oauth2/introspect"). Tokens that are
	// not a compact JWS — all tokens, when there is no JWKSURL — are
	// introspected; the answer must say active and pass the same aud,
	// iss, scope and client_id rules. Optional.
	IntrospectionURL string
	// IntrospectionClientID and IntrospectionClientSecret authenticate the
	// verifier to the introspection endpoint (HTTP Basic, RFC 6749
	// §2.3.1). Required with IntrospectionURL.
	IntrospectionClientID, IntrospectionClientSecret string
	// IntrospectionCacheTTL is the longest an introspection answer is
	// reused for the same token, and never past its exp: how long a
	// revoked token may still pass. Optional; default 30 s; negative asks
	// on every request.
	IntrospectionCacheTTL time.Duration
	// HTTPClient fetches metadata and the JWKS and calls the
	// introspection endpoint. Optional; default a client of its own with
	// a 10 s timeout that does not follow redirects.
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is fetched again. Optional;
	// default 5 min.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two refetches caused
	// by tokens with an unknown kid. Optional; default 1 min.
	UnknownKIDInterval time.Duration
	// CacheSize bounds how many accepted tokens are remembered (by
	// SHA-256, never the token), so that a token seen again skips the
	// signature check or the introspection request; its time window and
	// signing key (kid and key material) are checked again on every use.
	// Optional; default 10000; negative disables the cache.
	CacheSize int
	// AllowInsecureHTTP permits plain http URLs on non-loopback hosts.
	// Optional.
	AllowInsecureHTTP bool
	// Logger receives JWKS and introspection events. Optional; default
	// discards.
	Logger *slog.Logger

	// ClientCertificate returns the TLS client certificate a request came
	// with, which a certificate-bound token (cnf x5t#S256, RFC 8705 §3)
	// must match. Set it when a proxy terminates TLS and forwards the
	// certificate, reading only what the proxy alone can set. Optional;
	// default r.TLS.PeerCertificates[0], which a server has only when its
	// tls.Config.ClientAuth asks for client certificates
	// (tls.RequestClientCert or stricter).
	ClientCertificate func(r *http.Request) *x509.Certificate
	// DPoPAlgorithms are the JWS alg values accepted for DPoP proofs
	// (RFC 9449 §4.2), from the same list as Algorithms; Middleware names
	// them in its DPoP challenge (algs). Optional; default ES256, PS256
	// and RS256.
	DPoPAlgorithms []string
	// DPoPBaseURL is the URL clients address this service by: scheme,
	// host, port unless the default, and a path prefix when a proxy strips
	// one, such as "https://api.example.com" or
	// "https://example.com/calendar". Middleware appends a request's path
	// to it to get the URL the request's DPoP proof must name in htu.
	// Set it (or DPoPRequestURL) in production, and always behind a proxy
	// or load balancer, which changes the scheme, the host or the path.
	// Optional; default the request's own URL: "https" when it came over
	// TLS, else "http", then its Host header (which the client chooses)
	// and its path.
	DPoPBaseURL string
	// DPoPRequestURL returns the URL a request was addressed to as the
	// client saw it (its query is ignored), for setups DPoPBaseURL cannot
	// describe. It takes precedence over DPoPBaseURL. Optional.
	DPoPRequestURL func(r *http.Request) string
	// DPoPProofWindow is how far a DPoP proof's iat may lie from the
	// verifier's clock, before or after it (RFC 9449 §11.1); a proof's jti
	// is remembered until its iat leaves the window. Optional; default
	// 60 s.
	DPoPProofWindow time.Duration
	// DPoPReplayCacheSize bounds how many accepted DPoP proofs are
	// remembered (a 16-byte hash of key and jti each, about 70 bytes with
	// their bookkeeping). When it holds that many proofs still inside
	// their window, a valid proof is refused with ErrReplayCacheFull
	// (Middleware: 503 with Retry-After) rather than one forgotten that
	// could then be replayed: size it above the peak rate of DPoP
	// requests times the window. Optional; default 131072 (2 000 requests
	// a second over 60 s); it cannot be disabled.
	DPoPReplayCacheSize int
	// DPoPNonceInterval, when positive, requires server nonces in DPoP
	// proofs (RFC 9449 §9): a proof must carry the nonce of the current
	// interval or of the one before, else it is refused with
	// ErrUseDPoPNonce, which Middleware answers with 401
	// error="use_dpop_nonce" and a DPoP-Nonce header; it also sends the
	// current nonce with every DPoP request it lets through. Optional;
	// default no nonces.
	DPoPNonceInterval time.Duration
	// DPoPNonceSecret derives the nonces (an HMAC-SHA-256 of the
	// interval's number). Replicas behind one load balancer should share
	// it, so that a nonce one of them gave passes at the others. At least
	// 32 bytes. Formatting a Config never shows it. Optional; default a
	// random secret per Verifier.
	DPoPNonceSecret []byte
}

// Defaults of the optional Config fields, and limits.
const (
	// DefaultLeeway is Config.Leeway's default.
	DefaultLeeway = 30 * time.Second
	// DefaultRefreshInterval is Config.RefreshInterval's default.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultUnknownKIDInterval is Config.UnknownKIDInterval's default.
	DefaultUnknownKIDInterval = time.Minute
	// DefaultCacheSize is Config.CacheSize's default.
	DefaultCacheSize = 10000
	// DefaultIntrospectionCacheTTL is Config.IntrospectionCacheTTL's default.
	DefaultIntrospectionCacheTTL = 30 * time.Second
	// MaxTokenSize is the longest token Verify reads, in bytes.
	MaxTokenSize = 8 << 10
	// DefaultDPoPProofWindow is Config.DPoPProofWindow's default.
	DefaultDPoPProofWindow = 60 * time.Second
	// DefaultDPoPReplayCacheSize is Config.DPoPReplayCacheSize's default.
	DefaultDPoPReplayCacheSize = 1 << 17
)

// fetchTimeout bounds one metadata, JWKS or introspection request.
const fetchTimeout = 10 * time.Second

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// discovers reports whether New reads the issuer's metadata.
func (cfg *Config) discovers() bool {
	return cfg.JWKSURL == "" && cfg.IntrospectionURL == "" && cfg.Issuer != ""
}

// check validates cfg and fills in defaults.
func (cfg *Config) check() error {
	switch {
	case cfg.Audience == "":
		return configErr("Audience is required")
	case cfg.JWKSURL == "" && cfg.IntrospectionURL == "" && cfg.Issuer == "":
		return configErr("JWKSURL, IntrospectionURL or Issuer (for discovery) is required")
	case cfg.Profile != ProfileSuperTokens && cfg.Profile != ProfileRFC9068 && cfg.Profile != ProfileHydra:
		return configErr("Profile %d is unknown", int(cfg.Profile))
	case cfg.AcceptSessionTokens && cfg.Profile != ProfileSuperTokens:
		return configErr("AcceptSessionTokens needs ProfileSuperTokens")
	case cfg.AcceptSessionTokens && cfg.ClientCredentialsOnly:
		return configErr("AcceptSessionTokens and ClientCredentialsOnly contradict each other")
	case cfg.IntrospectionURL != "" && (cfg.IntrospectionClientID == "" || cfg.IntrospectionClientSecret == ""):
		return configErr("IntrospectionURL needs IntrospectionClientID and IntrospectionClientSecret")
	}
	for name, u := range map[string]string{"JWKSURL": cfg.JWKSURL, "IntrospectionURL": cfg.IntrospectionURL} {
		if u == "" {
			continue
		}
		if _, err := wire.CheckURL(u, cfg.AllowInsecureHTTP); err != nil {
			return configErr("%s %v", name, err)
		}
	}
	if cfg.discovers() {
		if _, err := wire.CheckURL(cfg.Issuer, cfg.AllowInsecureHTTP); err != nil {
			return configErr("Issuer %v", err)
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256"}
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	for _, a := range cfg.Algorithms {
		if algorithms[a] == nil {
			return configErr("algorithm %q is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA", a)
		}
	}
	if len(cfg.DPoPAlgorithms) == 0 {
		cfg.DPoPAlgorithms = []string{"ES256", "PS256", "RS256"}
	}
	cfg.DPoPAlgorithms = slices.Clone(cfg.DPoPAlgorithms)
	for _, a := range cfg.DPoPAlgorithms {
		if algorithms[a] == nil {
			return configErr("DPoPAlgorithms: %q is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA", a)
		}
	}
	if cfg.DPoPBaseURL != "" {
		if _, ok := baseURL(cfg.DPoPBaseURL); !ok {
			return configErr("DPoPBaseURL %q is not an absolute http or https URL without user, query and fragment", cfg.DPoPBaseURL)
		}
	}
	switch {
	case cfg.DPoPProofWindow < 0:
		return configErr("DPoPProofWindow %s is negative", cfg.DPoPProofWindow)
	case cfg.DPoPProofWindow == 0:
		cfg.DPoPProofWindow = DefaultDPoPProofWindow
	}
	switch {
	case cfg.DPoPReplayCacheSize < 0:
		return configErr("DPoPReplayCacheSize %d is negative: the DPoP replay cache cannot be disabled", cfg.DPoPReplayCacheSize)
	case cfg.DPoPReplayCacheSize == 0:
		cfg.DPoPReplayCacheSize = DefaultDPoPReplayCacheSize
	}
	switch {
	case cfg.DPoPNonceInterval < 0:
		return configErr("DPoPNonceInterval %s is negative", cfg.DPoPNonceInterval)
	case cfg.DPoPNonceSecret != nil && len(cfg.DPoPNonceSecret) < 32:
		return configErr("DPoPNonceSecret has %d bytes, fewer than 32", len(cfg.DPoPNonceSecret))
	case cfg.DPoPNonceSecret != nil && cfg.DPoPNonceInterval == 0:
		return configErr("DPoPNonceSecret needs DPoPNonceInterval")
	}
	cfg.DPoPNonceSecret = slices.Clone(cfg.DPoPNonceSecret)
	cfg.ClientIDs = slices.Clone(cfg.ClientIDs)
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.UnknownKIDInterval <= 0 {
		cfg.UnknownKIDInterval = DefaultUnknownKIDInterval
	}
	if cfg.IntrospectionCacheTTL == 0 {
		cfg.IntrospectionCacheTTL = DefaultIntrospectionCacheTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = wire.NewHTTPClient(fetchTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// redacted is Config without its secret, for formatting.
type redacted Config

func (cfg Config) safe() redacted {
	r := redacted(cfg)
	if r.IntrospectionClientSecret != "" {
		r.IntrospectionClientSecret = "REDACTED"
	}
	if r.DPoPNonceSecret != nil {
		r.DPoPNonceSecret = []byte("REDACTED")
	}
	return r
}

// String describes the Config without its secret.
func (cfg Config) String() string { return fmt.Sprintf("%+v", cfg.safe()) }

// Format prints String for every verb, so no verb can show the secret.
func (cfg Config) Format(f fmt.State, _ rune) { fmt.Fprint(f, cfg.String()) }

// LogValue makes slog log the Config without its secret.
func (cfg Config) LogValue() slog.Value { return slog.StringValue(cfg.String()) }

// MarshalJSON encodes the Config without its secret.
func (cfg Config) MarshalJSON() ([]byte, error) {
	r := cfg.safe()
	return json.Marshal(struct {
		Issuer, JWKSURL, Audience, IntrospectionURL, IntrospectionClientID, IntrospectionClientSecret string
		Algorithms, ClientIDs                                                                         []string
		Profile                                                                                       string
		Leeway, IntrospectionCacheTTL, RefreshInterval, UnknownKIDInterval                            time.Duration
		AcceptSessionTokens, ClientCredentialsOnly, AllowInsecureHTTP                                 bool
		CacheSize                                                                                     int
		DPoPAlgorithms                                                                                []string
		DPoPBaseURL                                                                                   string
		DPoPProofWindow, DPoPNonceInterval                                                            time.Duration
		DPoPReplayCacheSize                                                                           int
		DPoPNonceSecret                                                                               string `json:",omitempty"`
	}{r.Issuer, r.JWKSURL, r.Audience, r.IntrospectionURL, r.IntrospectionClientID, r.IntrospectionClientSecret,
		r.Algorithms, r.ClientIDs, r.Profile.String(), r.Leeway, r.IntrospectionCacheTTL, r.RefreshInterval,
		r.UnknownKIDInterval, r.AcceptSessionTokens, r.ClientCredentialsOnly, r.AllowInsecureHTTP, r.CacheSize,
		r.DPoPAlgorithms, r.DPoPBaseURL, r.DPoPProofWindow, r.DPoPNonceInterval, r.DPoPReplayCacheSize,
		string(r.DPoPNonceSecret)})
}
