package verify

import (
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
	}{r.Issuer, r.JWKSURL, r.Audience, r.IntrospectionURL, r.IntrospectionClientID, r.IntrospectionClientSecret,
		r.Algorithms, r.ClientIDs, r.Profile.String(), r.Leeway, r.IntrospectionCacheTTL, r.RefreshInterval,
		r.UnknownKIDInterval, r.AcceptSessionTokens, r.ClientCredentialsOnly, r.AllowInsecureHTTP, r.CacheSize})
}
