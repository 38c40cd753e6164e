package verify

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPayloadIsOneObject pins RFC 7519 §7.2: the claims are exactly one
// JSON object, and registered times are NumericDates in range (issue
// item 3).
func TestPayloadIsOneObject(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	good, err := json.Marshal(goodClaims())
	require.NoError(t, err)
	body := strings.TrimSuffix(string(good), "}")
	hdr := `{"alg":"RS256","kid":"s-a","typ":"JWT"}`

	tests := []struct {
		name    string
		header  string
		payload string
		err     error
	}{
		{"as issued", hdr, string(good), nil},
		{"trailing white space", hdr, string(good) + " \n", nil},
		{"a second object after it", hdr, string(good) + `{"aud":["file"]}`, ErrMalformed},
		{"garbage after it", hdr, string(good) + "x", ErrMalformed},
		{"a stray brace after it", hdr, string(good) + "}", ErrMalformed},
		{"an array, not an object", hdr, "[" + string(good) + "]", ErrMalformed},
		{"a string", hdr, `"hello"`, ErrMalformed},
		{"header followed by a second object", hdr + `{"alg":"none"}`, string(good), ErrMalformed},
		{"header an array", `[` + hdr + `]`, string(good), ErrMalformed},
		{"duplicate exp, the later in the past", hdr, body + `,"exp":1}`, ErrMalformed},
		{"escaped duplicate name", hdr, body + `,"\u0061ud":["file"]}`, ErrMalformed},
		{"exp null", hdr, strings.Replace(string(good), `"exp":`, `"exp":null,"y":`, 1), ErrMalformed},
		{"invalid UTF-8 in a claim", hdr, body + ",\"x\":\"\xff\"}", ErrMalformed},
		{"unpaired surrogate in a claim", hdr, body + `,"x":"\ud800"}`, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), rawJWT(t, tc.header, tc.payload, rsaA))
			if tc.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.err)
			}
		})
	}
}

// TestNumericDatesInRange: exp, nbf and iat outside 1970–9999, or not
// finite, are malformed, never the far past or "never expires".
func TestNumericDatesInRange(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	good, err := json.Marshal(goodClaims())
	require.NoError(t, err)
	hdr := `{"alg":"RS256","kid":"s-a","typ":"JWT"}`
	for _, claim := range []string{"exp", "nbf", "iat"} {
		for _, value := range []string{"-1", "-1e300", "1e300", "1e400", "-1e400", "253402300800", "9223372036854775808", "18446744073709551616", `"1"`, "true", "[1]"} {
			t.Run(claim+"="+value, func(t *testing.T) {
				t.Parallel()
				var m map[string]any
				require.NoError(t, json.Unmarshal(good, &m))
				delete(m, claim)
				b, err := json.Marshal(m)
				require.NoError(t, err)
				payload := strings.TrimSuffix(string(b), "}") + `,"` + claim + `":` + value + `}`
				_, err = v.Verify(context.Background(), rawJWT(t, hdr, payload, rsaA))
				require.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), claim)
			})
		}
	}
}

// signPSS signs a PS256 token with the given salt length.
func signPSS(t *testing.T, salt int) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "PS256", "kid": "s-a", "typ": "JWT"})
	p, _ := json.Marshal(goodClaims())
	input := enc(h) + "." + enc(p)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPSS(rand.Reader, rsaA, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: salt})
	require.NoError(t, err)
	return input + "." + enc(sig)
}

// TestAlgorithms covers every family, PSS's salt length (RFC 7518 §3.5,
// issue item 4) and the fit of alg to key.
func TestAlgorithms(t *testing.T) {
	t.Parallel()
	keys(t)
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	psKey := jwk(t, &rsaA.PublicKey, "s-a", "PS256")
	srv := newJWKSServer(t, psKey, jwk(t, &ecKey.PublicKey, "ec", "ES256"), jwk(t, edPub, "ed", jwkset.AlgEdDSA),
		jwk(t, &rsaB.PublicKey, "rs-b", ""))
	all := []string{"RS256", "PS256", "ES256", "EdDSA"}
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.Algorithms = all })
	rsOnly, _ := newTestVerifier(t, srv, nil)

	tests := []struct {
		name  string
		v     *Verifier
		token string
		err   error
	}{
		{"PS256, salt = hash length", v, signPSS(t, 32), nil},
		{"PS256, salt longer", v, signPSS(t, 64), ErrSignature},
		{"PS256, salt shorter", v, signPSS(t, 20), ErrSignature},
		{"PS256, maximal salt", v, signPSS(t, rsa.PSSSaltLengthAuto), ErrSignature},
		{"PS256 not allowed", rsOnly, signPSS(t, 32), ErrAlgorithm},
		{"ES256", v, mint(t, jwt.SigningMethodES256, ecKey, "ec", goodClaims()), nil},
		{"ES256 token cut short", v, mint(t, jwt.SigningMethodES256, ecKey, "ec", goodClaims())[:300], ErrMalformed},
		{"EdDSA", v, mint(t, jwt.SigningMethodEdDSA, edKey, "ed", goodClaims()), nil},
		{"RS256 on a key whose JWK says PS256", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()), ErrAlgorithm},
		{"RS256 on a key without alg", v, mint(t, jwt.SigningMethodRS256, rsaB, "rs-b", goodClaims()), nil},
		{"PS256 on a key without alg", v, mint(t, jwt.SigningMethodPS256, rsaB, "rs-b", goodClaims()), nil},
		{"EdDSA on an EC key", v, mint(t, jwt.SigningMethodEdDSA, edKey, "ec", goodClaims()), ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(context.Background(), tc.token)
			if tc.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.err)
			}
		})
	}
}

// TestRejectionsSayWhat pins the messages: what was expected and what the
// token had, one prefix, never the token (issue item 7).
func TestRejectionsSayWhat(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.ClientIDs = []string{testClientID} })
	rfc, _ := newTestVerifier(t, srv, func(c *Config) { c.Profile = ProfileRFC9068 })
	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  string
	}{
		{"audience", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["aud"] = []string{"file"} })),
			`verify: invalid token: wrong audience: want "event", token has ["file"]`},
		{"no audience", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { delete(c, "aud") })),
			`verify: invalid token: wrong audience: want "event", token has no aud`},
		{"issuer", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["iss"] = "http://other" })),
			`verify: invalid token: wrong issuer: want "http://127.0.0.1/auth", token has "http://other"`},
		{"client", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["client_id"] = "intruder" })),
			`verify: invalid token: client_id not allowed: want one of ["task-service"], token has "intruder"`},
		{"stt", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["stt"] = 2 })),
			`verify: invalid token: wrong token type: want stt 1, token has stt 2 (an ID token)`},
		{"typ", rfc, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", rfcClaims()),
			`verify: invalid token: wrong token type: want typ "at+jwt" (RFC 9068 §4), token has "JWT"`},
		{"expired", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
			`verify: invalid token: token expired: exp 2026-11-27T11:00:00Z is before now 2026-11-27T12:00:00Z (leeway 30s)`},
		{"algorithm", v, mint(t, jwt.SigningMethodPS256, rsaA, "s-a", goodClaims()),
			`verify: invalid token: algorithm not allowed: want one of [RS256], token has "PS256"`},
		{"long audience is cut", v, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["aud"] = strings.Repeat("a", 100) })),
			`verify: invalid token: wrong audience: want "event", token has ["` + strings.Repeat("a", 64) + `…"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(context.Background(), tc.token)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}
