// Package verify is the called service's side of m2m: it checks OAuth2
// access tokens and guards net/http handlers with them.
//
// A JWT is checked against the authorization server's JWKS: a compact JWS
// in strict base64url whose header and claims are each exactly one JSON
// object without duplicate members, an allowed alg that fits its key,
// the signature, then exp, nbf and iat (with leeway), aud, iss, the
// profile's token-type rule, scopes and client_id. An opaque token is
// checked by RFC 7662 introspection against the same rules. Accepted
// tokens are remembered (by hash) so a token seen again costs a hash and
// a map lookup. A token bound to its client by its cnf claim passes only
// with the proof: the client's TLS certificate (RFC 8705 §3, see
// VerifyWithCertificate) or a DPoP proof (RFC 9449, see VerifyDPoP);
// Middleware takes either from the request.
//
// The JWKS is fetched with a timeout and a size limit, refreshed on a
// timer, and refetched on an unknown kid at most once per rate window.
// By default a token must be a SuperTokens OAuth2 access token (stt 1);
// ProfileRFC9068 checks RFC 9068 tokens as written, ProfileHydra Ory
// Hydra's.
//
//	v, err := verify.New(ctx, verify.Config{
//		Issuer:   "https://auth.internal/auth", // JWKS found by discovery
//		Audience: "event",
//	})
//	if err != nil {
//		return err
//	}
//	defer v.Close()
//	mux.Handle("POST /events", v.Middleware("event.create")(http.HandlerFunc(createEvent)))
package verify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
)

// Verifier checks access tokens. It is safe for concurrent use and should
// be reused: create one per process and audience, and Close it when done.
type Verifier struct {
	cfg     Config
	algs    []*algorithm
	keys    *keySet       // nil without a JWKS
	intro   *introspector // nil without introspection
	clients map[string]bool
	cache   *cache // nil when disabled
	clock   clock.Clock

	dpopAlgs  []*algorithm
	replay    *replayCache // DPoP proofs accepted
	nonces    *nonceSource // nil without DPoP nonces
	base      string       // Config.DPoPBaseURL, normalized, without its final "/"
	challenge string       // WWW-Authenticate DPoP's algs parameter
}

// New checks cfg, reads the issuer's metadata when cfg asks for
// discovery, fetches the JWKS once and starts its background refresh, all
// bounded by ctx. It fails if any of these fails.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	return newVerifier(ctx, cfg, clock.Real{})
}

// newVerifier is New with the clock injected; tests pass a fake.
func newVerifier(ctx context.Context, cfg Config, clk clock.Clock) (*Verifier, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.discovers() {
		md, err := discover(ctx, cfg.HTTPClient, cfg.Issuer, cfg.AllowInsecureHTTP)
		if err != nil {
			return nil, err
		}
		cfg.JWKSURL = md.JWKSURI
		if cfg.IntrospectionClientID != "" && cfg.IntrospectionClientSecret != "" {
			cfg.IntrospectionURL = md.IntrospectionEndpoint
		}
		if cfg.JWKSURL == "" && cfg.IntrospectionURL == "" {
			return nil, fmt.Errorf("verify: the metadata of %s has no jwks_uri (and no introspection_endpoint with IntrospectionClientID set)", cfg.Issuer)
		}
	}
	v := &Verifier{cfg: cfg, clock: clk}
	for _, a := range cfg.Algorithms {
		v.algs = append(v.algs, algorithms[a])
	}
	if len(cfg.ClientIDs) > 0 {
		v.clients = map[string]bool{}
		for _, id := range cfg.ClientIDs {
			v.clients[id] = true
		}
	}
	if cfg.CacheSize > 0 {
		v.cache = newCache(cfg.CacheSize)
	}
	for _, a := range cfg.DPoPAlgorithms {
		v.dpopAlgs = append(v.dpopAlgs, algorithms[a])
	}
	v.challenge = `algs="` + strings.Join(cfg.DPoPAlgorithms, " ") + `"`
	v.replay = newReplayCache(cfg.DPoPReplayCacheSize)
	v.base, _ = baseURL(cfg.DPoPBaseURL)
	if cfg.DPoPNonceInterval > 0 {
		secret := cfg.DPoPNonceSecret
		if secret == nil {
			secret = make([]byte, 32)
			rand.Read(secret)
		}
		v.nonces = newNonceSource(cfg.DPoPNonceInterval, secret)
	}
	if cfg.IntrospectionURL != "" {
		v.intro = newIntrospector(&v.cfg)
	}
	if cfg.JWKSURL != "" {
		v.keys = newKeySet(cfg.JWKSURL, cfg.HTTPClient, fetchTimeout, cfg.UnknownKIDInterval, cfg.Logger, clk)
		select {
		case <-v.keys.fetch():
		case <-ctx.Done():
			v.Close()
			return nil, fmt.Errorf("verify: first JWKS fetch: %w", ctx.Err())
		}
		v.keys.mu.Lock()
		err := v.keys.lastErr
		v.keys.mu.Unlock()
		if err != nil {
			v.Close()
			return nil, err
		}
		v.keys.run(cfg.RefreshInterval)
	}
	return v, nil
}

// Close stops the background JWKS refresh and waits for it to end.
func (v *Verifier) Close() error {
	if v.keys != nil {
		v.keys.close()
	}
	if v.intro != nil {
		v.intro.close()
	}
	return nil
}

// JWKSFetches reports how many times the JWKS has been requested.
func (v *Verifier) JWKSFetches() int64 {
	if v.keys == nil {
		return 0
	}
	return v.keys.fetches.Load()
}

// String describes the Verifier without its secret.
func (v *Verifier) String() string { return "verify.Verifier{" + v.cfg.String() + "}" }

// Format prints String for every verb, so no verb can show the secret.
func (v *Verifier) Format(f fmt.State, _ rune) { fmt.Fprint(f, v.String()) }

// Verify checks a raw bearer token (without "Bearer ") and returns its
// claims. A rejection wraps ErrInvalidToken and one specific error
// (ErrExpired, ErrAudience, …) and says what was expected and what the
// token had. An error that does not wrap ErrInvalidToken means the
// verifier could not decide: ctx ended while it waited for the JWKS or
// the introspection endpoint, or ErrIntrospection. The returned Claims
// are shared with the verifier's cache: do not modify them.
//
// A sender-constrained token is refused: one bound to a client
// certificate (ErrCertificateBinding; see VerifyWithCertificate) or to a
// DPoP key (ErrDPoPBinding; see VerifyDPoP), since Verify cannot see
// the request that would prove its binding.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	c, err := v.verify(ctx, raw, nil)
	if err != nil {
		return nil, err
	}
	if c.bound() {
		return nil, boundErr(c, nil)
	}
	return c, nil
}

// verify checks a raw token, bound or not. When tokenSum is not nil it
// receives the token's SHA-256 (a DPoP proof's ath), computed once for
// the cache key and the proof alike.
func (v *Verifier) verify(ctx context.Context, raw string, tokenSum *[32]byte) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, reject(ErrTokenTooLarge, "%d bytes, more than %d", len(raw), MaxTokenSize)
	}
	if raw == "" {
		return nil, reject(ErrMalformed, "empty token")
	}
	var h, signing [32]byte
	var hasSigning bool
	if v.cache != nil {
		h, signing, hasSigning = hashToken(raw)
		if tokenSum != nil {
			*tokenSum = h
		}
		if e, ok := v.cache.get(h); ok {
			c, use, err := v.reuse(e)
			if use {
				if err != nil && !isNotYetValid(err) {
					v.cache.drop(h)
				}
				return c, err
			}
			v.cache.drop(h)
		}
	}
	if tokenSum != nil && v.cache == nil {
		*tokenSum = sha256.Sum256(bytesOf(raw))
	}
	if v.keys == nil || strings.Count(raw, ".") != 2 {
		if v.intro == nil {
			return nil, reject(ErrMalformed, "not a compact JWS (three dot-separated parts)")
		}
		return v.introspect(ctx, raw, h)
	}
	var sum *[32]byte
	if hasSigning {
		s := signing // escapes into the RSA check: copied only on this path
		sum = &s
	}
	c, e, now, err := v.verifyJWT(ctx, raw, sum)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(h, e, now.UnixNano())
	}
	return c, nil
}

func isNotYetValid(err error) bool {
	r, ok := err.(*rejection)
	return ok && r.kind == ErrNotYetValid
}

// reuse decides on a cache hit: use says whether the entry answers (with
// its claims, or with err when its time is up); !use means the entry is
// stale (its key changed, or an introspection answer is due again) and
// the token must be checked afresh.
func (v *Verifier) reuse(e entry) (c *Claims, use bool, err error) {
	now := v.clock.Now()
	ns := now.UnixNano()
	if e.exp != 0 && ns >= e.exp {
		return nil, true, v.expired(e.claims, now)
	}
	if e.nbf != 0 && ns < e.nbf {
		return nil, true, reject(ErrNotYetValid, "nbf %s is after now %s (leeway %s)", stamp(e.claims.NotBefore), stamp(now), v.cfg.Leeway)
	}
	if e.key != nil && !v.keys.current(e.key, e.sole) {
		return nil, false, nil
	}
	if e.until != 0 && ns >= e.until {
		return nil, false, nil
	}
	return e.claims, true, nil
}

func (v *Verifier) expired(c *Claims, now time.Time) error {
	return reject(ErrExpired, "exp %s is before now %s (leeway %s)", stamp(c.ExpiresAt), stamp(now), v.cfg.Leeway)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// verifyJWT checks a compact JWS: header, key, signature, then claims.
// signingSum, when not nil, is the SHA-256 of the signing input. It
// returns the time the claims were checked at.
func (v *Verifier) verifyJWT(ctx context.Context, raw string, signingSum *[32]byte) (*Claims, entry, time.Time, error) {
	var now time.Time
	t, err := splitJWS(raw)
	if err != nil {
		return nil, entry{}, now, err
	}
	alg := v.algorithm(t.header.alg)
	if alg == nil {
		return nil, entry{}, now, reject(ErrAlgorithm, "want one of %v, token has %s", v.cfg.Algorithms, quoted(t.header.alg))
	}
	if t.header.hasKid && t.header.kid == "" {
		return nil, entry{}, now, reject(ErrMalformed, "kid is empty")
	}
	k, sole, err := v.keys.resolve(ctx, &t.header)
	if err != nil {
		return nil, entry{}, now, err
	}
	if !alg.fits(k) || (k.alg != "" && k.alg != alg.name) {
		return nil, entry{}, now, reject(ErrAlgorithm, "token alg %s does not fit key %s (%s %s)", alg.name, quoted(k.kid), k.kty, k.alg)
	}
	if err := verifySignature(alg, k, t.signing, t.sig, signingSum); err != nil {
		return nil, entry{}, now, err
	}
	var p payload
	if err := readPayload(t.payload, &p); err != nil {
		if se, ok := err.(*syntaxError); ok {
			return nil, entry{}, now, reject(ErrMalformed, "payload: %s", se.msg)
		}
		return nil, entry{}, now, err
	}
	c, now, err := v.accept(&p, t.payload, &t.header)
	if err != nil {
		return nil, entry{}, now, err
	}
	return c, v.entryFor(c, k, sole, time.Time{}), now, nil
}

// algorithm returns the allowed algorithm named alg, or nil.
func (v *Verifier) algorithm(alg string) *algorithm {
	for _, a := range v.algs {
		if a.name == alg {
			return a
		}
	}
	return nil
}

// entryFor builds the cache entry of accepted claims.
func (v *Verifier) entryFor(c *Claims, k *key, sole bool, until time.Time) entry {
	e := entry{claims: c, key: k, sole: sole}
	if !until.IsZero() {
		e.until = unixNano(until)
	}
	if !c.ExpiresAt.IsZero() {
		e.exp = unixNano(c.ExpiresAt.Add(v.cfg.Leeway))
	}
	if !c.NotBefore.IsZero() {
		e.nbf = unixNano(c.NotBefore.Add(-v.cfg.Leeway))
	}
	return e
}

// Unix nanoseconds reach from 1677 to 2262; NumericDates reach to 9999.
var (
	latestNano   = time.Unix(0, math.MaxInt64)
	earliestNano = time.Unix(0, math.MinInt64)
)

// unixNano is t.UnixNano, held at the ends of its range: an exp after
// 2262 stays in the future, instead of wrapping around into the past.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(latestNano):
		return math.MaxInt64
	case t.Before(earliestNano):
		return math.MinInt64
	}
	return t.UnixNano()
}

// accept applies every claim rule to p and builds the Claims. h is the
// JOSE header for a JWT, nil for an introspection answer.
func (v *Verifier) accept(p *payload, raw string, h *header) (*Claims, time.Time, error) {
	now := v.clock.Now()
	c, err := v.acceptAt(p, raw, h, now)
	return c, now, err
}

// acceptAt is accept at the time now.
func (v *Verifier) acceptAt(p *payload, raw string, h *header, now time.Time) (*Claims, error) {
	jwt := h != nil
	rfc := v.cfg.Profile != ProfileSuperTokens
	if jwt && rfc {
		if err := v.checkTyp(h.typ); err != nil {
			return nil, err
		}
		for _, c := range [...]struct {
			bit  int
			name string
		}{{hasIss, "iss"}, {hasExp, "exp"}, {hasAud, "aud"}, {hasSub, "sub"}, {hasClientID, "client_id"}, {hasIat, "iat"}, {hasJTI, "jti"}} {
			if p.has&c.bit == 0 {
				return nil, reject(ErrMissingClaim, "%s (RFC 9068 §2.2)", c.name)
			}
		}
	}
	if jwt && p.has&hasExp == 0 {
		return nil, reject(ErrMissingClaim, "exp")
	}
	c := &Claims{
		Subject: p.sub, ClientID: p.clientID, Issuer: p.iss, ID: p.jti, SessionHandle: p.sessionHdl,
		Audience: p.aud, CertificateThumbprint: p.x5t, JWKThumbprint: p.jkt, json: raw,
	}
	if p.has&hasExp != 0 {
		c.ExpiresAt = p.exp.toTime()
	}
	if p.has&hasIat != 0 {
		c.IssuedAt = p.iat.toTime()
	}
	if p.has&hasNbf != 0 {
		c.NotBefore = p.nbf.toTime()
	}
	lw := v.cfg.Leeway
	switch {
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt.Add(lw)):
		return nil, v.expired(c, now)
	case !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-lw)):
		return nil, reject(ErrNotYetValid, "nbf %s is after now %s (leeway %s)", stamp(c.NotBefore), stamp(now), lw)
	case !c.IssuedAt.IsZero() && now.Before(c.IssuedAt.Add(-lw)):
		return nil, reject(ErrNotYetValid, "iat %s is after now %s (leeway %s)", stamp(c.IssuedAt), stamp(now), lw)
	}
	var err error
	if c.Kind, err = v.kind(p, jwt); err != nil {
		return nil, err
	}
	if v.cfg.Issuer != "" && c.Issuer != v.cfg.Issuer {
		if p.has&hasIss == 0 {
			return nil, reject(ErrIssuer, "want %q, token has no iss", v.cfg.Issuer)
		}
		return nil, reject(ErrIssuer, "want %q, token has %s", v.cfg.Issuer, quoted(c.Issuer))
	}
	if c.Kind != KindSession {
		if !slices.Contains(c.Audience, v.cfg.Audience) {
			if p.has&hasAud == 0 {
				return nil, reject(ErrAudience, "want %q, token has no aud", v.cfg.Audience)
			}
			return nil, reject(ErrAudience, "want %q, token has %s", v.cfg.Audience, quotedList(c.Audience))
		}
	}
	if c.Scopes, err = p.scopes(); err != nil {
		return nil, err
	}
	if v.clients != nil && !v.clients[c.ClientID] {
		if p.has&hasClientID == 0 {
			return nil, reject(ErrClientID, "want one of %q, token has no client_id", v.cfg.ClientIDs)
		}
		return nil, reject(ErrClientID, "want one of %q, token has %s", v.cfg.ClientIDs, quoted(c.ClientID))
	}
	if v.cfg.ClientCredentialsOnly && c.Kind != KindClientCredentials {
		return nil, reject(ErrTokenType, "want a client-credentials token, token is %s", c.Kind)
	}
	return c, nil
}

// checkTyp applies RFC 9068 §4 (and Hydra's typ "JWT" under ProfileHydra).
func (v *Verifier) checkTyp(typ string) error {
	if strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt") {
		return nil
	}
	if v.cfg.Profile == ProfileHydra {
		if strings.EqualFold(typ, "JWT") {
			return nil
		}
		if typ == "" {
			return reject(ErrTokenType, `want typ "JWT" or "at+jwt", token has none`)
		}
		return reject(ErrTokenType, `want typ "JWT" or "at+jwt", token has %s`, quoted(typ))
	}
	if typ == "" {
		return reject(ErrTokenType, `want typ "at+jwt" (RFC 9068 §4), token has none`)
	}
	return reject(ErrTokenType, `want typ "at+jwt" (RFC 9068 §4), token has %s`, quoted(typ))
}

// kind applies the profile's token-type rule and says which flow issued
// the token.
func (v *Verifier) kind(p *payload, jwt bool) (Kind, error) {
	if jwt && v.cfg.Profile == ProfileSuperTokens {
		hasHandle := p.has&hasSessionHandle != 0 && p.sessionHdl != ""
		switch {
		case p.has&hasSTT == 0:
			return 0, reject(ErrTokenType, "want stt 1, token has no stt")
		case p.stt == sttAccess && hasHandle:
			return KindUserDelegated, nil
		case p.stt == sttAccess:
			return KindClientCredentials, nil
		case p.stt == sttSession && hasHandle && v.cfg.AcceptSessionTokens:
			return KindSession, nil
		case p.stt == sttSession && v.cfg.AcceptSessionTokens:
			return 0, reject(ErrTokenType, "want stt 1, or stt 0 with a sessionHandle; token has stt 0 without one")
		case p.stt == sttSession:
			return 0, reject(ErrTokenType, "want stt 1, token has stt 0 (a session token)")
		case p.stt == sttID:
			return 0, reject(ErrTokenType, "want stt 1, token has stt 2 (an ID token)")
		}
		return 0, reject(ErrTokenType, "want stt 1, token has an stt that is not 0, 1 or 2")
	}
	if !jwt && p.has&hasTokenUse != 0 && p.tokenUse != "access_token" {
		return 0, reject(ErrTokenType, "want token_use \"access_token\", introspection says %s", quoted(p.tokenUse))
	}
	if p.has&hasSub == 0 || p.sub == p.clientID {
		return KindClientCredentials, nil
	}
	return KindUserDelegated, nil
}
