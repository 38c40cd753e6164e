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
