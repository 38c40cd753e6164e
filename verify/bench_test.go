package verify

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify compares, in one run: the floor (SHA-256 and an RSA-2048
// PKCS#1 v1.5 check, nothing else) and Verify on a repeated token, answered
// from the cache. Tokens seen for the first time, and the peers, are
// measured in bench/verifypeers.
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
		cpu := cpuTime()
		n := 0
		for b.Loop() {
			sum := sha256.Sum256([]byte(input))
			if err := rsa.VerifyPKCS1v15(&rsaA.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				b.Fatal(err)
			}
			n++
		}
		reportCPU(b, cpu, n)
	})
	b.Run("m2m=repeated-token", func(b *testing.B) {
		v, _ := newTestVerifier(b, srv, nil)
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := cpuTime()
		n := 0
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			n++
		}
		reportCPU(b, cpu, n)
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

// reportCPU reports the process's CPU time per call since start, beside
// ns/op's wall time: on a shared machine the wall clock also counts the
// time spent waiting for a core.
func reportCPU(b *testing.B, start time.Duration, n int) {
	if used := cpuTime() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}
