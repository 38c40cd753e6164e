package verify

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	apiURL  = "https://api.example.com/events"
	apiPost = "POST"
)

func TestDPoPAccepts(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.DPoPAlgorithms = []string{"ES256", "RS256", "PS256", "EdDSA"} })
	for _, alg := range []string{"ES256", "RS256", "PS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			k := newDPoPKey(t, alg)
			tok := boundToken(t, map[string]any{"jkt": k.jkt})
			proof := k.proofFor(tok, apiPost, apiURL, now).signed(t, k)
			c, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
			require.NoError(t, err)
			assert.Equal(t, k.jkt, c.JWKThumbprint)
			assert.Empty(t, c.CertificateThumbprint)
			assert.Equal(t, testClientID, c.ClientID)

			// The same token again (from the cache) with a new proof.
			proof = k.proofFor(tok, "GET", apiURL+"?page=2", now.Add(-30*time.Second)).signed(t, k)
			_, err = v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: "GET", URL: apiURL})
			require.NoError(t, err)
		})
	}
}

// TestDPoPRejects: every check of RFC 9449 §4.3 and §7.1, each on a proof
// that differs from a valid one in that respect only.
func TestDPoPRejects(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	k := newDPoPKey(t, "ES256")
	other := newDPoPKey(t, "ES256")
	rsaKey := newDPoPKey(t, "RS256")
	edKey := newDPoPKey(t, "EdDSA")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	good := k.proofFor(tok, apiPost, apiURL, now)
	signed := func(p proofOf) string { return p.signed(t, k) }
	hdr := func(h map[string]any) string { return signed(good.with(h, nil)) }
	cl := func(c map[string]any) string { return signed(good.with(nil, c)) }
	jwkWith := func(extra map[string]any) map[string]any {
		j := map[string]any{}
		for n, v := range k.jwk {
			j[n] = v
		}
		for n, v := range extra {
			j[n] = v
		}
		return j
	}
	otherTok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	otherAth := sha256.Sum256([]byte(otherTok))
	goodProof := signed(good)
	parts := strings.Split(goodProof, ".")
	smallRSA := rsaKey.jwk["n"].(string)[:172] // 1024 bits
	offCurve := jwkWith(map[string]any{"y": enc(make([]byte, 32))})

	tests := []struct {
		name  string
		proof string
		kind  error
	}{
		{"no proof", "", ErrMalformed},
		{"too large", strings.Repeat("a", maxProofSize+1), ErrTokenTooLarge},
		{"not a JWS", "not-a-jws", ErrMalformed},
		{"four parts", goodProof + ".x", ErrMalformed},
		{"padded signature", goodProof + "=", ErrMalformed},
		{"line break", parts[0] + "\n." + parts[1] + "." + parts[2], ErrMalformed},
		{"payload changed after signing", parts[0] + "." + enc([]byte(jsonOf(t, good.with(nil, map[string]any{"jti": "another"}).claims))) + "." + parts[2], ErrSignature},
		{"signed by another key, under the bound key's jwk", good.signed(t, other), ErrSignature},
		{"no typ", hdr(map[string]any{"typ": nil}), ErrTokenType},
		{"typ JWT", hdr(map[string]any{"typ": "JWT"}), ErrTokenType},
		{"typ at+jwt", hdr(map[string]any{"typ": "at+jwt"}), ErrTokenType},
		{"alg none", signed(good.with(map[string]any{"alg": "none"}, nil)), ErrAlgorithm},
		{"alg HS256", hdr(map[string]any{"alg": "HS256"}), ErrAlgorithm},
		{"alg ES384 (not allowed)", hdr(map[string]any{"alg": "ES384"}), ErrAlgorithm},
		{"EdDSA (not allowed by default)", edKey.proofFor(tok, apiPost, apiURL, now).signed(t, edKey), ErrAlgorithm},
		{"no jwk", hdr(map[string]any{"jwk": nil}), ErrProofKey},
		{"jwk a string", hdr(map[string]any{"jwk": "key"}), ErrProofKey},
		{"jwk with the private d", hdr(map[string]any{"jwk": jwkWith(map[string]any{"d": enc(make([]byte, 32))})}), ErrProofKey},
		{"jwk symmetric", hdr(map[string]any{"jwk": map[string]any{"kty": "oct", "k": enc(make([]byte, 32))}}), ErrProofKey},
		{"jwk kty oct without k", hdr(map[string]any{"jwk": map[string]any{"kty": "oct"}}), ErrProofKey},
		{"jwk point off the curve", hdr(map[string]any{"jwk": offCurve}), ErrProofKey},
		{"jwk RSA of 1024 bits", signed(rsaKey.proofFor(tok, apiPost, apiURL, now).with(map[string]any{"jwk": map[string]any{"kty": "RSA", "n": smallRSA, "e": "AQAB"}}, nil)), ErrProofKey},
		{"jwk RSA n with a leading zero", rsaKey.proofFor(tok, apiPost, apiURL, now).with(map[string]any{"jwk": map[string]any{"kty": "RSA", "n": "AA" + rsaKey.jwk["n"].(string), "e": "AQAB"}}, nil).signed(t, rsaKey), ErrProofKey},
		{"alg RS256 with an EC jwk", hdr(map[string]any{"alg": "RS256"}), ErrProofKey},
		{"jwk alg disagrees", hdr(map[string]any{"jwk": jwkWith(map[string]any{"alg": "ES384"})}), ErrProofKey},
		{"jku header", hdr(map[string]any{"jku": "https://evil.example/jwks"}), ErrUnsupportedHeader},
		{"x5c header", hdr(map[string]any{"x5c": []string{"MIIB"}}), ErrUnsupportedHeader},
		{"crit header", hdr(map[string]any{"crit": []string{"exp"}}), ErrUnsupportedHeader},
		{"duplicate alg", rawProof(t, k, `{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":`+jsonOf(t, k.jwk)+`}`, jsonOf(t, good.claims)), ErrMalformed},
		{"claims not an object", rawProof(t, k, jsonOf(t, good.header), `[1]`), ErrMalformed},
		{"no jti", cl(map[string]any{"jti": nil}), ErrMissingClaim},
		{"empty jti", cl(map[string]any{"jti": ""}), ErrMalformed},
		{"no htm", cl(map[string]any{"htm": nil}), ErrMissingClaim},
		{"no htu", cl(map[string]any{"htu": nil}), ErrMissingClaim},
		{"no iat", cl(map[string]any{"iat": nil}), ErrMissingClaim},
		{"no ath", cl(map[string]any{"ath": nil}), ErrMissingClaim},
		{"iat a string", cl(map[string]any{"iat": "now"}), ErrMalformed},
		{"htm a number", cl(map[string]any{"htm": 1}), ErrMalformed},
		{"htm GET", cl(map[string]any{"htm": "GET"}), ErrProofTarget},
		{"htm lower case", cl(map[string]any{"htm": "post"}), ErrProofTarget},
		{"htu another path", cl(map[string]any{"htu": "https://api.example.com/files"}), ErrProofTarget},
		{"htu a path prefix", cl(map[string]any{"htu": "https://api.example.com/event"}), ErrProofTarget},
		{"htu another host", cl(map[string]any{"htu": "https://evil.example.com/events"}), ErrProofTarget},
		{"htu http", cl(map[string]any{"htu": "http://api.example.com/events"}), ErrProofTarget},
		{"htu another port", cl(map[string]any{"htu": "https://api.example.com:8443/events"}), ErrProofTarget},
		{"htu relative", cl(map[string]any{"htu": "/events"}), ErrProofTarget},
		{"iat 61 s ago", cl(map[string]any{"iat": now.Add(-61 * time.Second).Unix()}), ErrExpired},
		{"iat 61 s ahead", cl(map[string]any{"iat": now.Add(61 * time.Second).Unix()}), ErrNotYetValid},
		{"ath of another token", cl(map[string]any{"ath": enc(otherAth[:])}), ErrDPoPBinding},
		{"ath not base64url", cl(map[string]any{"ath": "not a hash"}), ErrDPoPBinding},
		{"another key's proof (thumbprint not cnf jkt)", other.proofFor(tok, apiPost, apiURL, now).signed(t, other), ErrDPoPBinding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: tc.proof, Method: apiPost, URL: apiURL})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidDPoPProof)
			assert.NotErrorIs(t, err, ErrInvalidToken, "the token is fine")
			assert.ErrorIs(t, err, tc.kind)
			assert.True(t, strings.HasPrefix(err.Error(), "verify: invalid DPoP proof: "+tc.kind.Error()), err.Error())
			if tc.proof != "" {
				assert.NotContains(t, err.Error(), tc.proof[:min(len(tc.proof), 30)], "the proof is never echoed")
			}
			assert.NotContains(t, err.Error(), tok[:30], "the token is never echoed")
		})
	}
	// The valid proof passes, once: none of the rejections spent it.
	_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: goodProof, Method: apiPost, URL: apiURL})
	require.NoError(t, err)
	_, err = v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: goodProof, Method: apiPost, URL: apiURL})
	assert.ErrorIs(t, err, ErrReplay)
}

// TestDPoPTokenRules: the token side of RFC 9449 §7.1 and of cnf.
func TestDPoPTokenRules(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	k := newDPoPKey(t, "ES256")
	cert, _, x5t := newCert(t, "client")
	expired := dpopClaims(k.jkt)
	expired["exp"] = now.Add(-time.Hour).Unix()

	tests := []struct {
		name  string
		token string
		cert  bool
		kind  error
	}{
		{"not DPoP-bound", mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()), false, ErrDPoPBinding},
		{"only certificate-bound", boundToken(t, map[string]any{"x5t#S256": x5t}), true, ErrDPoPBinding},
		{"expired", mint(t, jwt.SigningMethodRS256, rsaA, "s-a", expired), false, ErrExpired},
		{"bound to a certificate too, none presented", boundToken(t, map[string]any{"jkt": k.jkt, "x5t#S256": x5t}), false, ErrCertificateBinding},
		{"cnf a string", cnfToken(t, `"`+k.jkt+`"`), false, ErrConfirmation},
		{"cnf empty", boundToken(t, map[string]any{}), false, ErrConfirmation},
		{"cnf with a jwk", boundToken(t, map[string]any{"jkt": k.jkt, "jwk": k.jwk}), false, ErrConfirmation},
		{"cnf jkt too short", boundToken(t, map[string]any{"jkt": k.jkt[:42]}), false, ErrMalformed},
		{"cnf jkt a number", boundToken(t, map[string]any{"jkt": 1}), false, ErrMalformed},
		{"cnf jkt padded", boundToken(t, map[string]any{"jkt": k.jkt + "="}), false, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := DPoPRequest{Proof: k.proofFor(tc.token, apiPost, apiURL, now).signed(t, k), Method: apiPost, URL: apiURL}
			if tc.cert {
				req.Certificate = cert
			}
			_, err := v.VerifyDPoP(context.Background(), tc.token, req)
			assert.ErrorIs(t, err, ErrInvalidToken)
			assert.NotErrorIs(t, err, ErrInvalidDPoPProof)
			assert.ErrorIs(t, err, tc.kind)
		})
	}

	// Bound both ways, with the certificate: accepted.
	both := boundToken(t, map[string]any{"jkt": k.jkt, "x5t#S256": x5t})
	c, err := v.VerifyDPoP(context.Background(), both, DPoPRequest{Proof: k.proofFor(both, apiPost, apiURL, now).signed(t, k), Method: apiPost, URL: apiURL, Certificate: cert})
	require.NoError(t, err)
	assert.Equal(t, x5t, c.CertificateThumbprint)
	assert.Equal(t, k.jkt, c.JWKThumbprint)

	// A DPoP-bound token is no bearer token, whoever asks.
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	_, err = v.Verify(context.Background(), tok)
	assert.ErrorIs(t, err, ErrDPoPBinding)
	assert.ErrorIs(t, err, ErrInvalidToken)
	_, err = v.VerifyWithCertificate(context.Background(), tok, cert)
	assert.ErrorIs(t, err, ErrDPoPBinding)
}

// TestDPoPErrorsAreTyped: a refused proof and a refused token are told
// apart, and neither is a "could not decide".
func TestDPoPErrorsAreTyped(t *testing.T) {
	t.Parallel()
	r := rejectProof(ErrReplay, "x")
	assert.ErrorIs(t, r, ErrInvalidDPoPProof)
	assert.NotErrorIs(t, r, ErrInvalidToken)
	assert.Equal(t, "verify: invalid DPoP proof: proof replayed: x", r.Error())
	assert.False(t, errors.Is(ErrReplayCacheFull, ErrInvalidDPoPProof) || errors.Is(ErrReplayCacheFull, ErrInvalidToken))
}

func TestDPoPConfig(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	secret := []byte("a-nonce-secret-of-32-bytes-or-more")
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"HMAC alg", func(c *Config) { c.DPoPAlgorithms = []string{"HS256"} }, `DPoPAlgorithms: "HS256"`},
		{"none", func(c *Config) { c.DPoPAlgorithms = []string{"none"} }, `DPoPAlgorithms: "none"`},
		{"relative base URL", func(c *Config) { c.DPoPBaseURL = "/api" }, "DPoPBaseURL"},
		{"base URL with a query", func(c *Config) { c.DPoPBaseURL = "https://api.example.com/?a=b" }, "DPoPBaseURL"},
		{"negative window", func(c *Config) { c.DPoPProofWindow = -time.Second }, "DPoPProofWindow"},
		{"replay cache off", func(c *Config) { c.DPoPReplayCacheSize = -1 }, "cannot be disabled"},
		{"negative nonce interval", func(c *Config) { c.DPoPNonceInterval = -time.Second }, "DPoPNonceInterval"},
		{"short nonce secret", func(c *Config) { c.DPoPNonceInterval = time.Minute; c.DPoPNonceSecret = secret[:31] }, "fewer than 32"},
		{"nonce secret without nonces", func(c *Config) { c.DPoPNonceSecret = secret }, "needs DPoPNonceInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{JWKSURL: srv.URL, Audience: testAudience}
			tc.mod(&cfg)
			_, err := New(context.Background(), cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	cfg := Config{JWKSURL: srv.URL, Audience: testAudience, DPoPNonceInterval: time.Minute, DPoPNonceSecret: secret}
	v, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer v.Close()
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	for _, shown := range []string{cfg.String(), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), v.String(), string(j)} {
		assert.NotContains(t, shown, string(secret))
		assert.NotContains(t, shown, enc(secret))
		assert.NotContains(t, shown, fmt.Sprint(secret[:8]), "nor its bytes")
	}
	assert.Equal(t, []string{"ES256", "PS256", "RS256"}, v.cfg.DPoPAlgorithms)
	assert.Equal(t, DefaultDPoPProofWindow, v.cfg.DPoPProofWindow)
	assert.Equal(t, DefaultDPoPReplayCacheSize, v.cfg.DPoPReplayCacheSize)
}

// A proof whose iat lies centuries away is outside the window, even where
// its Unix nanoseconds would wrap around to about now.
func TestDPoPProofIatFarAway(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	// About 2^64 ns after now (year 2611): within a second of now once
	// its nanoseconds wrap around int64.
	wrap := now.Unix() + 18446744074
	for _, iat := range []int64{wrap, 94029501168} {
		proof := k.proofFor(tok, apiPost, apiURL, now).with(nil, map[string]any{"iat": iat}).signed(t, k)
		_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		require.ErrorIs(t, err, ErrNotYetValid, "iat %d", iat)
	}
}
