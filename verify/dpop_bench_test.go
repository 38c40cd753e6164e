package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// dpopBench is a verifier, a DPoP-bound token it has seen, and a pool of
// distinct valid ES256 proofs for one request, each with the bare
// ECDSA check of its signature (the floor).
type dpopBench struct {
	v     *Verifier
	tok   string
	sum   [32]byte
	jkt   string
	reqs  []DPoPRequest
	pub   *ecdsa.PublicKey
	input []string // signing inputs
	asn1  [][]byte // signatures, ASN.1 DER as ecdsa.VerifyASN1 takes them
}

func newDPoPBench(b *testing.B, n int) *dpopBench {
	keys(b)
	srv := newJWKSServer(b, jwk(b, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(b, srv, nil)
	k := newDPoPKey(b, "ES256")
	d := &dpopBench{v: v, jkt: k.jkt, pub: &k.priv.(*ecdsa.PrivateKey).PublicKey}
	d.tok = boundToken(b, map[string]any{"jkt": k.jkt})
	d.sum = sha256.Sum256([]byte(d.tok))
	if _, err := v.verify(context.Background(), d.tok, nil); err != nil {
		b.Fatal(err)
	}
	for range n {
		proof := k.proofFor(d.tok, apiPost, apiURL, now).signed(b, k)
		d.reqs = append(d.reqs, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		i := strings.LastIndexByte(proof, '.')
		sig, err := b64.DecodeString(proof[i+1:])
		if err != nil {
			b.Fatal(err)
		}
		d.input = append(d.input, proof[:i])
		d.asn1 = append(d.asn1, derSignature(sig))
	}
	return d
}

// derSignature turns a JWS ES256 signature (r||s) into ASN.1 DER.
func derSignature(sig []byte) []byte {
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
	if err != nil {
		panic(err)
	}
	return der
}

// floor is what any ES256 verifier must do: hash the signing input and
// check the signature.
func (d *dpopBench) floor(i int) bool {
	sum := sha256.Sum256([]byte(d.input[i]))
	return ecdsa.VerifyASN1(d.pub, sum[:], d.asn1[i])
}

// fresh forgets the spent proofs, so that the pool can be used again.
func (d *dpopBench) fresh() { d.v.replay = newReplayCache(d.v.cfg.DPoPReplayCacheSize) }

// BenchmarkDPoP compares a DPoP proof check with the floor, a bare
// ecdsa.VerifyASN1 of the same signature over the same input, each alone:
// "proof" is every check of the proof (parsing, the jwk, htm, htu, iat,
// ath, the thumbprint, the signature, the replay cache); "VerifyDPoP"
// adds the token, answered from the cache.
func BenchmarkDPoP(b *testing.B) {
	d := newDPoPBench(b, 1024)
	b.Run("floor=ecdsa-VerifyASN1", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !d.floor(i % len(d.reqs)) {
				b.Fatal("bad signature")
			}
			i++
		}
	})
	b.Run("m2m=proof", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%len(d.reqs) == 0 {
				b.StopTimer()
				d.fresh()
				b.StartTimer()
			}
			if err := d.v.checkProof(&d.reqs[i%len(d.reqs)], &d.sum, d.jkt); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("m2m=VerifyDPoP", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		i := 0
		for b.Loop() {
			if i%len(d.reqs) == 0 {
				b.StopTimer()
				d.fresh()
				b.StartTimer()
			}
			if _, err := d.v.VerifyDPoP(ctx, d.tok, d.reqs[i%len(d.reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkDPoPPaired runs the proof check and the floor alternately on
// the same proof (taking turns at going first), timing every call, and
// reports the median proof check as a multiple of the median floor call
// (x-floor): on a shared machine interleaved calls see the same load, and
// medians ignore the calls a preemption stretched.
func BenchmarkDPoPPaired(b *testing.B) {
	d := newDPoPBench(b, 1024)
	for _, variant := range []struct {
		name  string
		check func(i int) error
	}{
		{"m2m=proof", func(i int) error { return d.v.checkProof(&d.reqs[i], &d.sum, d.jkt) }},
		{"m2m=VerifyDPoP", func(i int) error {
			_, err := d.v.VerifyDPoP(context.Background(), d.tok, d.reqs[i])
			return err
		}},
	} {
		b.Run(variant.name, func(b *testing.B) {
			var inFloor, inCheck []time.Duration
			i := 0
			for b.Loop() {
				k := i % len(d.reqs)
				if k == 0 {
					d.fresh()
				}
				var df, dc time.Duration
				for turn := range 2 {
					t0 := time.Now()
					if (turn+i)%2 == 0 {
						if !d.floor(k) {
							b.Fatal("bad signature")
						}
						df = time.Since(t0)
					} else {
						if err := variant.check(k); err != nil {
							b.Fatal(err)
						}
						dc = time.Since(t0)
					}
				}
				inFloor = append(inFloor, df)
				inCheck = append(inCheck, dc)
				i++
			}
			f, c := medianOf(inFloor), medianOf(inCheck)
			b.ReportMetric(float64(c)/float64(f), "x-floor")
			b.ReportMetric(float64(c.Nanoseconds()), "ns/check")
			b.ReportMetric(float64(f.Nanoseconds()), "ns/floor")
		})
	}
}

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
