package verify

import (
	"context"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify: whatever the bytes, Verify never panics, every error but a
// waiting one is a rejection, and the only token accepted is the one the
// issuer signed, byte for byte (strict base64url gives every header and
// payload exactly one encoding).
func FuzzVerify(f *testing.F) {
	keys(f)
	srv := newJWKSServer(f, jwk(f, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(f, srv, func(c *Config) { c.UnknownKIDInterval = 1 << 62 })
	good := mint(f, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good + "=")
	f.Add("a.b.c")
	f.Add(rawJWT(f, `{"alg":"RS256","kid":"s-a"}`, `{"exp":1e999}`, rsaA))
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw)
		if err == nil {
			if raw != good || c == nil {
				t.Fatalf("accepted %q", raw)
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("not a rejection: %v", err)
		}
	})
}

// FuzzDPoPProof: whatever the proof, VerifyDPoP never panics, every error
// is a rejection of the proof (the token is valid and bound), and the
// only proof accepted is the one the client signed (its jti then spent).
func FuzzDPoPProof(f *testing.F) {
	keys(f)
	srv := newJWKSServer(f, jwk(f, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(f, srv, func(c *Config) { c.DPoPAlgorithms = []string{"ES256", "RS256", "PS256", "EdDSA"} })
	k := newDPoPKey(f, "ES256")
	tok := boundToken(f, map[string]any{"jkt": k.jkt})
	p := k.proofFor(tok, apiPost, apiURL, now)
	good := p.signed(f, k)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(p.with(map[string]any{"jwk": map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "alg": "RS256"}, nil).signed(f, k))
	f.Add(p.with(map[string]any{"jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "alg": "EdDSA"}, nil).signed(f, k))
	f.Add(p.with(nil, map[string]any{"htu": "https://API.example.com:443/x/../events/%65"}).signed(f, k))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, proof string) {
		_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		if err == nil {
			if proof != good {
				t.Fatalf("accepted %q", proof)
			}
			return
		}
		if !errors.Is(err, ErrInvalidDPoPProof) || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("not a rejection of the proof: %v", err)
		}
	})
}
