// Package verify is the called service's side of m2m: it checks OAuth2
// access tokens (JWTs) against the authorization server's JWKS and guards
// net/http handlers with them.
//
// It is built on github.com/golang-jwt/jwt/v5 and
// github.com/MicahParks/keyfunc/v3. The JWKS is fetched with a timeout and a
// size limit, refreshed on a timer, and refetched on an unknown kid at most
// once per rate window. By default a token must be a SuperTokens OAuth2
// access token: RS256, stt == 1, our audience in aud, scp an array, not
// expired. ProfileRFC9068 drops the stt rule for plain servers such as
// Ory Hydra.
//
//	v, err := verify.New(ctx, verify.Config{
//		JWKSURL:  "https://auth.internal/auth/jwt/jwks.json",
//		Issuer:   "https://auth.internal/auth",
//		Audience: "event",
//	})
//	defer v.Close()
//	mux.Handle("POST /events", v.Middleware("event.create")(createEvent))
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
)

// Profile selects the token-type rule.
type Profile int

const (
	// ProfileSuperTokens requires SuperTokens' stt claim to be exactly 1
	// (an OAuth2 access token; 0 is a session token, 2 an ID token). It is
	// the default.
	ProfileSuperTokens Profile = iota
	// ProfileRFC9068 does not look at stt: for plain OAuth2 JWT access
	// tokens (RFC 9068) such as Ory Hydra's.
	ProfileRFC9068
)

// Config configures a Verifier. The zero value of every optional field is
// its default.
type Config struct {
	// JWKSURL is where the signing keys are, e.g. SuperTokens'
	// "<apiDomain><apiBasePath>/jwt/jwks.json" or Hydra's
	// "/.well-known/jwks.json". https, or http on loopback unless
	// AllowInsecureHTTP. Required.
	JWKSURL string
	// Audience must be in the token's aud claim (a string or an array).
	// Required.
	Audience string
	// Issuer, when set, must equal the iss claim exactly (SuperTokens:
	// apiDomain+apiBasePath). Optional, but recommended.
	Issuer string
	// Algorithms are the accepted alg values. Optional; default RS256.
	// "none" and HMAC algorithms are refused.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Optional;
	// default 30 s; negative means none.
	Leeway time.Duration
	// Profile is the token-type rule. Optional; default ProfileSuperTokens.
	Profile Profile
	// AcceptSessionTokens also accepts SuperTokens session access tokens
	// (stt 0, with a sessionHandle) under ProfileSuperTokens, so one
	// middleware can serve both kinds; Claims.IsSession tells them apart.
	// Session tokens carry no aud or scp, so neither is checked for them,
	// and a route that requires scopes refuses them. Optional.
	AcceptSessionTokens bool
	// ClientIDs, when set, is the allow-list of client_id values. Optional.
	ClientIDs []string
	// HTTPClient fetches the JWKS. Optional; default a client of its own
	// with a 10 s timeout that does not follow redirects.
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is fetched again. Optional;
	// default 5 min.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two refetches caused
	// by tokens with an unknown kid. Optional; default 1 min.
	UnknownKIDInterval time.Duration
	// CacheSize bounds how many verified tokens are remembered, so that a
	// token seen again skips the signature check (time checks still run).
	// Optional; default 10000; negative disables the cache.
	CacheSize int
	// AllowInsecureHTTP permits a plain http JWKSURL on a non-loopback
	// host. Optional.
	AllowInsecureHTTP bool
	// Logger receives JWKS events. Optional; default discards.
	Logger *slog.Logger

	clock clock.Clock // tests inject a fake clock
}

// Defaults of the optional Config fields.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultUnknownKIDInterval = time.Minute
	DefaultCacheSize          = 10000
	// MaxTokenSize is the largest token Verify parses.
	MaxTokenSize = 8 << 10
)

// Errors callers can branch on with errors.Is. Every rejection wraps
// ErrInvalidToken and one of the more specific errors.
var (
	ErrInvalidConfig     = errors.New("m2m/verify: invalid config")
	ErrInvalidToken      = errors.New("m2m/verify: invalid token")
	ErrTokenTooLarge     = errors.New("token larger than 8 KiB")
	ErrMalformed         = errors.New("malformed token")
	ErrUnsupportedHeader = errors.New("unsupported header")
	ErrAlgorithm         = errors.New("algorithm not allowed")
	ErrUnknownKey        = errors.New("unknown signing key")
	ErrSignature         = errors.New("bad signature")
	ErrExpired           = errors.New("token expired")
	ErrNotYetValid       = errors.New("token not valid yet")
	ErrMissingClaim      = errors.New("required claim missing")
	ErrAudience          = errors.New("wrong audience")
	ErrIssuer            = errors.New("wrong issuer")
	ErrTokenType         = errors.New("wrong token type")
	ErrScopeClaim        = errors.New("malformed scp claim")
	ErrClientID          = errors.New("client_id not allowed")
	ErrInsufficientScope = errors.New("insufficient scope")
	ErrNoToken           = errors.New("no bearer token")
)

// reject builds a rejection error: ErrInvalidToken, a kind, and detail.
func reject(kind error, format string, args ...any) error {
	if format == "" {
		return fmt.Errorf("%w: %w", ErrInvalidToken, kind)
	}
	return fmt.Errorf("%w: %w: %s", ErrInvalidToken, kind, fmt.Sprintf(format, args...))
}

// Verifier checks access tokens. It is safe for concurrent use and should
// be reused: create one per process and audience, and Close it when done.
type Verifier struct {
	cfg     Config
	keys    *keySet
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	clients map[string]bool
	cache   *cache
	clock   clock.Clock
}

// New checks cfg, fetches the JWKS once (bounded by ctx) and starts the
// background refresh. It fails if the first fetch fails.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, clock: cfg.clock}
	if v.clock == nil {
		v.clock = clock.Real{}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = wire.NewHTTPClient(10 * time.Second)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v.keys = newKeySet(cfg.JWKSURL, hc, 10*time.Second, cfg.UnknownKIDInterval, log, v.clock)
	kf, err := keyfunc.New(keyfunc.Options{Storage: v.keys, Ctx: v.keys.ctx})
	if err != nil {
		return nil, err
	}
	v.keyfunc = kf.Keyfunc
	first := make(chan error, 1)
	go func() { first <- v.keys.refresh() }()
	select {
	case err = <-first:
	case <-ctx.Done():
		v.keys.close()
		<-first
		return nil, fmt.Errorf("m2m/verify: first JWKS fetch: %w", ctx.Err())
	}
	if err != nil {
		v.keys.close()
		return nil, err
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(v.clock.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	if len(cfg.ClientIDs) > 0 {
		v.clients = map[string]bool{}
		for _, id := range cfg.ClientIDs {
			v.clients[id] = true
		}
	}
	if cfg.CacheSize > 0 {
		v.cache = newCache(cfg.CacheSize)
	}
	v.keys.run(cfg.RefreshInterval)
	return v, nil
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// check validates cfg and fills in defaults.
func (cfg *Config) check() error {
	if cfg.JWKSURL == "" {
		return configErr("JWKSURL is required")
	}
	if _, err := wire.CheckURL(cfg.JWKSURL, cfg.AllowInsecureHTTP); err != nil {
		return configErr("JWKSURL %v", err)
	}
	if cfg.Audience == "" {
		return configErr("Audience is required")
	}
	if cfg.Profile != ProfileSuperTokens && cfg.Profile != ProfileRFC9068 {
		return configErr("Profile %d is unknown", int(cfg.Profile))
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256"}
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	for _, a := range cfg.Algorithms {
		if m := jwt.GetSigningMethod(a); m == nil || a == "none" || a[0] == 'H' {
			return configErr("algorithm %q is not an asymmetric JWS algorithm", a)
		}
	}
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
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	return nil
}

// Close stops the background JWKS refresh.
func (v *Verifier) Close() error {
	v.keys.close()
	return nil
}

// JWKSFetches reports how many times the JWKS has been requested.
func (v *Verifier) JWKSFetches() int64 { return v.keys.fetches.Load() }

// Verify checks a raw token (without "Bearer ") and returns its claims.
// Every error wraps ErrInvalidToken and a specific error (ErrExpired,
// ErrAudience, …). The returned Claims are shared with the verifier's
// cache: do not modify them.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, reject(ErrTokenTooLarge, "")
	}
	var key [32]byte
	if v.cache != nil {
		key = hashToken(raw)
		if c, ok := v.cache.get(key); ok {
			if err := v.recheck(c); err != nil {
				if !errors.Is(err, ErrNotYetValid) {
					v.cache.drop(key)
				}
				return nil, err
			}
			return c, nil
		}
	}
	h, err := precheck(raw, v.cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	tok, err := v.parser.ParseWithClaims(raw, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		return v.keyfunc(t)
	})
	if err != nil {
		return nil, v.mapError(err)
	}
	c, err := newClaims(tok.Claims.(jwt.MapClaims), h.kid)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(key, c, v.clock.Now(), v.cfg.Leeway)
	}
	return c, nil
}

// recheck runs on a cache hit what can change since the token was
// verified: the time window and whether its key is still published.
func (v *Verifier) recheck(c *Claims) error {
	now := v.clock.Now()
	if !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt.Add(v.cfg.Leeway)) {
		return reject(ErrExpired, "")
	}
	if !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-v.cfg.Leeway)) {
		return reject(ErrNotYetValid, "")
	}
	if !v.keys.has(c.kid) {
		return reject(ErrUnknownKey, "the token's key is no longer published")
	}
	return nil
}

// mapError turns a golang-jwt error into ours.
func (v *Verifier) mapError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject(ErrExpired, "")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject(ErrNotYetValid, "")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return reject(ErrMissingClaim, "%v", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reject(ErrIssuer, "")
	case errors.Is(err, jwt.ErrTokenUnverifiable) && errors.Is(err, jwkset.ErrKeyNotFound):
		return reject(ErrUnknownKey, "")
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reject(ErrSignature, "")
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return reject(ErrMalformed, "")
	}
	return reject(ErrMalformed, "")
}

// checkClaims applies the profile, audience, scope and client rules.
func (v *Verifier) checkClaims(c *Claims) error {
	if c.ExpiresAt.IsZero() {
		return reject(ErrMissingClaim, "exp")
	}
	session := false
	if v.cfg.Profile == ProfileSuperTokens {
		switch {
		case c.TokenType == 1:
		case c.TokenType == 0 && v.cfg.AcceptSessionTokens && c.SessionHandle != "":
			session = true
		default:
			return reject(ErrTokenType, "stt must be 1")
		}
	}
	if !session {
		if !slices.Contains(c.Audience, v.cfg.Audience) {
			return reject(ErrAudience, "")
		}
		if c.Scopes == nil {
			return reject(ErrScopeClaim, "scp must be an array of strings")
		}
	}
	if v.clients != nil && !v.clients[c.ClientID] {
		return reject(ErrClientID, "")
	}
	return nil
}
