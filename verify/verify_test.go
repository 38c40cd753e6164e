package verify

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)

	c, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()))
	require.NoError(t, err)
	assert.Equal(t, testClientID, c.ClientID)
	assert.Equal(t, testClientID, c.Subject)
	assert.Equal(t, []string{"event"}, c.Audience)
	assert.Equal(t, []string{"event.create"}, c.Scopes)
	assert.Equal(t, KindClientCredentials, c.Kind)
	assert.Equal(t, testIssuer, c.Issuer)
	assert.Equal(t, "j1", c.ID)
	assert.Equal(t, now.Add(time.Hour), c.ExpiresAt)
	assert.Equal(t, now, c.IssuedAt)
	assert.True(t, c.HasScope("event.create"))
	var extra struct{ GID string }
	require.NoError(t, c.Decode(&extra))
	assert.Equal(t, "g", extra.GID)

	// aud as a plain string and an empty scp array are fine too.
	claims := goodClaims()
	claims["aud"] = "event"
	claims["scp"] = []string{}
	c, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", claims))
	require.NoError(t, err)
	assert.Equal(t, []string{}, c.Scopes)
	assert.False(t, c.HasScope("event.create"))
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"), jwk(t, &ecKey.PublicKey, "ec", "ES256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.ClientIDs = []string{testClientID} })
	vEC, _ := newTestVerifier(t, srv, func(c *Config) { c.Algorithms = []string{"RS256", "ES256"} })

	with := func(mod func(jwt.MapClaims)) string {
		c := goodClaims()
		mod(c)
		return mint(t, jwt.SigningMethodRS256, rsaA, "s-a", c)
	}
	good := with(func(jwt.MapClaims) {})
	parts := strings.Split(good, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	payload := `{"aud":["event"],"client_id":"task-service","exp":` + jsonInt(now.Add(time.Hour).Unix()) + `,"iss":"` + testIssuer + `","scp":["event.create"],"stt":1}`
	hdr := func(extra string) string { return `{"alg":"RS256","kid":"s-a"` + extra + `}` }

	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"alg none", v, rawJWT(t, `{"alg":"none","kid":"s-a"}`, payload, nil), ErrAlgorithm},
		{"alg NONE", v, rawJWT(t, `{"alg":"NONE","kid":"s-a"}`, payload, nil), ErrAlgorithm},
		{"alg nOnE", v, rawJWT(t, `{"alg":"nOnE"}`, payload, nil), ErrAlgorithm},
		{"HS256 with the RSA public key", v, mint(t, jwt.SigningMethodHS256, pubPEM, "s-a", goodClaims()), ErrAlgorithm},
		{"HS256 with the DER public key", v, mint(t, jwt.SigningMethodHS256, pubDER, "s-a", goodClaims()), ErrAlgorithm},
		{"alg ES256 on an RSA kid", vEC, mint(t, jwt.SigningMethodES256, ecKey, "s-a", goodClaims()), ErrAlgorithm},
		{"alg RS256 on an EC kid", vEC, mint(t, jwt.SigningMethodRS256, rsaA, "ec", goodClaims()), ErrAlgorithm},
		{"jku header", v, rawJWT(t, hdr(`,"jku":"https://evil.test/jwks"`), payload, rsaA), ErrUnsupportedHeader},
		{"x5u header", v, rawJWT(t, hdr(`,"x5u":"https://evil.test/cert"`), payload, rsaA), ErrUnsupportedHeader},
		{"jwk header", v, rawJWT(t, hdr(`,"jwk":{"kty":"RSA"}`), payload, rsaA), ErrUnsupportedHeader},
		{"x5c header", v, rawJWT(t, hdr(`,"x5c":["MII"]`), payload, rsaA), ErrUnsupportedHeader},
		{"crit header", v, rawJWT(t, hdr(`,"crit":["exp"],"exp":1`), payload, rsaA), ErrUnsupportedHeader},
		{"bad signature", v, parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 256)), ErrSignature},
		{"signed by another key", v, mint(t, jwt.SigningMethodRS256, rsaB, "s-a", goodClaims()), ErrSignature},
		{"tampered payload", v, parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(payload, "event.create", "event.delete", 1))) + "." + parts[2], ErrSignature},
		{"unknown kid", v, mint(t, jwt.SigningMethodRS256, rsaB, "nope", goodClaims()), ErrUnknownKey},
		{"expired", v, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }), ErrExpired},
		{"nbf in the future", v, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), ErrNotYetValid},
		{"iat in the future", v, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }), ErrNotYetValid},
		{"exp missing", v, with(func(c jwt.MapClaims) { delete(c, "exp") }), ErrMissingClaim},
		{"exp a string", v, with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), ErrMalformed},
		{"aud missing", v, with(func(c jwt.MapClaims) { delete(c, "aud") }), ErrAudience},
		{"aud empty", v, with(func(c jwt.MapClaims) { c["aud"] = []string{} }), ErrAudience},
		{"aud other", v, with(func(c jwt.MapClaims) { c["aud"] = []string{"file"} }), ErrAudience},
		{"aud other string", v, with(func(c jwt.MapClaims) { c["aud"] = "file" }), ErrAudience},
		{"aud case", v, with(func(c jwt.MapClaims) { c["aud"] = "Event" }), ErrAudience},
		{"aud a number", v, with(func(c jwt.MapClaims) { c["aud"] = 1 }), ErrAudience},
		{"wrong iss", v, with(func(c jwt.MapClaims) { c["iss"] = "http://127.0.0.1/other" }), ErrIssuer},
		{"stt 0", v, with(func(c jwt.MapClaims) { c["stt"] = 0 }), ErrTokenType},
		{"stt 2", v, with(func(c jwt.MapClaims) { c["stt"] = 2 }), ErrTokenType},
		{"stt missing", v, with(func(c jwt.MapClaims) { delete(c, "stt") }), ErrTokenType},
		{"stt string", v, with(func(c jwt.MapClaims) { c["stt"] = "1" }), ErrTokenType},
		{"stt 1.5", v, with(func(c jwt.MapClaims) { c["stt"] = 1.5 }), ErrTokenType},
		{"scp a string", v, with(func(c jwt.MapClaims) { c["scp"] = "event.create" }), ErrScopeClaim},
		{"scp with a number", v, with(func(c jwt.MapClaims) { c["scp"] = []any{"a", 1} }), ErrScopeClaim},
		{"client_id not allowed", v, with(func(c jwt.MapClaims) { c["client_id"] = "intruder" }), ErrClientID},
		{"client_id missing", v, with(func(c jwt.MapClaims) { delete(c, "client_id") }), ErrClientID},
		{"over 8 KiB", v, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("a", 8<<10) }), ErrTokenTooLarge},
		{"base64 padding", v, parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"base64 plus and slash", v, strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", ErrMalformed},
		{"whitespace", v, parts[0] + ".\n" + parts[1] + "." + parts[2], ErrMalformed},
		{"trailing space", v, good + " ", ErrMalformed},
		{"two parts", v, parts[0] + "." + parts[1], ErrMalformed},
		{"empty", v, "", ErrMalformed},
		{"JSON serialization", v, `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`, ErrMalformed},
		{"duplicate header member", v, rawJWT(t, `{"alg":"RS256","kid":"s-a","alg":"none"}`, payload, rsaA), ErrMalformed},
		{"duplicate payload member", v, rawJWT(t, hdr(""), strings.Replace(payload, `"stt":1`, `"stt":1,"aud":["file"]`, 1), rsaA), ErrMalformed},
		{"duplicate nested member", v, rawJWT(t, hdr(""), strings.Replace(payload, `"stt":1`, `"stt":1,"x":{"a":1,"a":2}`, 1), rsaA), ErrMalformed},
		{"header not JSON", v, base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"kid a number", v, rawJWT(t, `{"alg":"RS256","kid":7}`, payload, rsaA), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.v.Verify(context.Background(), tc.token)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, ErrInvalidToken)
			assert.ErrorIs(t, err, tc.want)
			if len(tc.token) > 20 {
				assert.NotContains(t, err.Error(), tc.token[len(tc.token)-20:], "errors never echo the token")
			}
			assert.Equal(t, 1, strings.Count(err.Error(), "verify:"), "one prefix: %v", err)
		})
	}
	// The untouched token passes: every rejection above is due to its change.
	_, err = v.Verify(context.Background(), good)
	require.NoError(t, err)
}

func jsonInt(n int64) string { return strconv.FormatInt(n, 10) }

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{Audience: "a"}, "JWKSURL, IntrospectionURL or Issuer (for discovery) is required"},
		{"introspection without credentials", Config{IntrospectionURL: srv.URL, Audience: "a"}, "needs IntrospectionClientID"},
		{"sessions outside SuperTokens", Config{JWKSURL: srv.URL, Audience: "a", Profile: ProfileHydra, AcceptSessionTokens: true}, "needs ProfileSuperTokens"},
		{"sessions and machine only", Config{JWKSURL: srv.URL, Audience: "a", AcceptSessionTokens: true, ClientCredentialsOnly: true}, "contradict"},
		{"http introspection", Config{IntrospectionURL: "http://auth.test/i", IntrospectionClientID: "a", IntrospectionClientSecret: "b", Audience: "a"}, "IntrospectionURL is plain http"},
		{"http issuer for discovery", Config{Issuer: "http://auth.test", Audience: "a"}, "Issuer is plain http"},
		{"http", Config{JWKSURL: "http://auth.test/jwks.json", Audience: "a"}, "plain http"},
		{"no audience", Config{JWKSURL: srv.URL}, "Audience is required"},
		{"hmac", Config{JWKSURL: srv.URL, Audience: "a", Algorithms: []string{"HS256"}}, `"HS256" is not one of`},
		{"none", Config{JWKSURL: srv.URL, Audience: "a", Algorithms: []string{"none"}}, `"none" is not one of`},
		{"unknown alg", Config{JWKSURL: srv.URL, Audience: "a", Algorithms: []string{"XX1"}}, `"XX1" is not one of`},
		{"profile", Config{JWKSURL: srv.URL, Audience: "a", Profile: 5}, "Profile 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(context.Background(), tc.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("first fetch fails", func(t *testing.T) {
		t.Parallel()
		dead := newJWKSServer(t)
		dead.Close()
		_, err := New(context.Background(), Config{JWKSURL: dead.URL, Audience: "a"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "fetching JWKS")
	})
	t.Run("ctx ends the first fetch", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := New(ctx, Config{JWKSURL: srv.URL, Audience: "a"})
		require.ErrorIs(t, err, context.Canceled)
	})
}

// A token valid past 2262 (where Unix nanoseconds end) verifies on every
// use, the cached ones included.
func TestExpBeyondUnixNanoseconds(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	for _, exp := range []int64{9999999999, 253402300799} {
		c := goodClaims()
		c["exp"] = exp
		tok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", c)
		for use := range 3 {
			_, err := v.Verify(context.Background(), tok)
			require.NoError(t, err, "exp %d, use %d", exp, use)
		}
	}
}
