package verify

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify compares, in one run: the floor (SHA-256 and an RSA-2048
// PKCS#1 v1.5 check, nothing else), plain golang-jwt + keyfunc parsing,
// Verify on a token it has not seen, and Verify on a repeated token.
func BenchmarkVerify(b *testing.B) {
	keys(b)
	srv := newJWKSServer(b, jwk(b, &rsaA.PublicKey, "s-a", "RS256"))
	tok := mint(b, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	ctx := context.Background()

	b.Run("floor=crypto-rsa", func(b *testing.B) {
		i := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
		input := tok[:i]
		b.ReportAllocs()
		for b.Loop() {
			sum := sha256.Sum256([]byte(input))
			if err := rsa.VerifyPKCS1v15(&rsaA.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer=jwt+keyfunc", func(b *testing.B) {
		set, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk(b, &rsaA.PublicKey, "s-a", "RS256")}})
		kf, err := keyfunc.NewJWKSetJSON(set)
		if err != nil {
			b.Fatal(err)
		}
		p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("event"), jwt.WithTimeFunc(func() time.Time { return now }))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Parse(tok, kf.Keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("m2m=new-token", func(b *testing.B) {
		v, _ := newTestVerifier(b, srv, func(c *Config) { c.CacheSize = -1 })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("m2m=repeated-token", func(b *testing.B) {
		v, _ := newTestVerifier(b, srv, nil)
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("m2m=repeated-token-parallel", func(b *testing.B) {
		v, _ := newTestVerifier(b, srv, nil)
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
