package m2m

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The example of RFC 7638 §3.1 and its thumbprint.
func TestJWKThumbprintRFC7638(t *testing.T) {
	t.Parallel()
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	require.NoError(t, err)
	got, err := JWKThumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	require.NoError(t, err)
	assert.Equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", got)

	_, _, ec1, _ := testKeys()
	got, err = JWKThumbprint(ec1.Public())
	require.NoError(t, err)
	assert.Equal(t, thumbprint(ec1.Public()), got)
}

func TestParsePrivateKey(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, _ := testKeys()
	enc := base64.RawURLEncoding.EncodeToString
	block := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	pkcs8 := func(k any) []byte { der, _ := x509.MarshalPKCS8PrivateKey(k); return der }
	sec1, _ := x509.MarshalECPrivateKey(ec1)
	ecRaw, _ := ec1.Bytes()
	ecPub, _ := ec1.PublicKey.Bytes()
	ecJWK := map[string]string{"kty": "EC", "crv": "P-256", "d": enc(ecRaw), "x": enc(ecPub[1:33]), "y": enc(ecPub[33:]), "kid": "ec-1", "alg": "ES256", "use": "sig"}
	rsaJWK := map[string]string{"kty": "RSA", "n": enc(rsa1.N.Bytes()), "e": "AQAB", "d": enc(rsa1.D.Bytes()),
		"p": enc(rsa1.Primes[0].Bytes()), "q": enc(rsa1.Primes[1].Bytes()), "kid": "rsa-1"}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for a, b := range m {
			out[a] = b
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	cert, _ := selfSigned(t, ec1, "c")

	good := []struct {
		name     string
		data     []byte
		pub      crypto.PublicKey
		kid, alg string
	}{
		{"PKCS #8 RSA", block("PRIVATE KEY", pkcs8(rsa1)), &rsa1.PublicKey, "", ""},
		{"PKCS #1 RSA", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1)), &rsa1.PublicKey, "", ""},
		{"PKCS #8 EC", block("PRIVATE KEY", pkcs8(ec1)), &ec1.PublicKey, "", ""},
		{"SEC 1 EC after a certificate", append(append([]byte{}, cert...), block("EC PRIVATE KEY", sec1)...), &ec1.PublicKey, "", ""},
		{"EC JWK", js(ecJWK), &ec1.PublicKey, "ec-1", "ES256"},
		{"RSA JWK", js(rsaJWK), &rsa1.PublicKey, "rsa-1", ""},
		{"JWK Set of one", js(map[string]any{"keys": []any{rsaJWK}}), &rsa1.PublicKey, "rsa-1", ""},
		{"JWK with white space first", append([]byte("\n  "), js(ecJWK)...), &ec1.PublicKey, "ec-1", "ES256"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			k, kid, alg, err := parseKey(tc.data)
			require.NoError(t, err)
			assert.True(t, k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.pub))
			assert.Equal(t, tc.kid, kid)
			assert.Equal(t, tc.alg, alg)
			// It signs, and the signature verifies with the public key.
			sk, err := newSigningKey(k, "")
			require.NoError(t, err)
			tok, err := sk.jws(b64.EncodeToString([]byte(`{"alg":"`+sk.alg+`"}`)), []byte(`{"a":1}`))
			require.NoError(t, err)
			j, err := parseJWS(tok)
			require.NoError(t, err)
			require.NoError(t, j.verify(tc.pub))
		})
	}

	bad := []struct {
		name, want string
		data       []byte
	}{
		{"garbage", "holds no PEM private key", []byte("not a key")},
		{"certificate only", "holds no PEM private key", cert},
		{"broken PEM body", "PRIVATE KEY PEM block does not parse", block("PRIVATE KEY", []byte("xx"))},
		{"P-384", "only P-256", block("PRIVATE KEY", pkcs8(p384))},
		{"small RSA", "at least 2048", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small))},
		{"public JWK", `no private part`, js(with(ecJWK, "d", ""))},
		{"encryption JWK", `"use" is "enc"`, js(with(ecJWK, "use", "enc"))},
		{"EC JWK with another public key", `do not match`, js(with(ecJWK, "x", enc(make([]byte, 32))))},
		{"EC JWK on P-384", `only P-256`, js(with(ecJWK, "crv", "P-384"))},
		{"RSA JWK without primes", "needs n, e, d, p and q", js(with(rsaJWK, "p", ""))},
		{"RSA JWK with a wrong prime", "not a consistent key", js(with(rsaJWK, "p", enc(big.NewInt(7).Bytes())))},
		{"symmetric JWK", `kty "oct"`, js(map[string]string{"kty": "oct", "k": "c2VjcmV0", "d": "x"})},
		{"JWK Set of two", "holds 2 keys", js(map[string]any{"keys": []any{rsaJWK, ecJWK}})},
		{"bad JSON", "not a JWK", []byte(`{"kty":`)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKey(tc.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestPublicJWK(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, _ := testKeys()
	for _, k := range []crypto.Signer{rsa1, ec1} {
		raw, err := PublicJWK(k.Public(), "kid-1", "XX256")
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		assert.Equal(t, "kid-1", m["kid"])
		assert.Equal(t, "XX256", m["alg"])
		assert.Equal(t, "sig", m["use"])
		assert.NotContains(t, m, "d")
		pub, err := publicFromJWK(m)
		require.NoError(t, err)
		assert.True(t, k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub))
	}
	_, err := PublicJWK("not a key", "", "")
	require.Error(t, err)
}

func TestDERToRaw(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	digest := sha256.Sum256([]byte("x"))
	// Many signatures, so that short R and S (leading zero bytes) and
	// long ones (a 0x00 sign byte) both come up.
	for range 300 {
		der, err := ecdsa.SignASN1(rand.Reader, ec1, digest[:])
		require.NoError(t, err)
		var raw [64]byte
		require.True(t, derToRaw(der, raw[:]))
		require.True(t, ecdsa.Verify(&ec1.PublicKey, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])))
	}
	for _, der := range [][]byte{
		nil,
		{0x31, 6, 2, 1, 1, 2, 1, 1},       // not a SEQUENCE
		{0x30, 7, 2, 1, 1, 2, 1, 1},       // length disagrees
		{0x30, 6, 2, 1, 1, 3, 1, 1},       // not an INTEGER
		{0x30, 6, 2, 0, 2, 2, 1, 1},       // empty INTEGER
		{0x30, 8, 2, 1, 1, 2, 1, 1, 0, 0}, // trailing bytes
		append([]byte{0x30, 36, 2, 33}, make([]byte, 34)...), // no S
	} {
		var raw [64]byte
		assert.False(t, derToRaw(der, raw[:]), "%x", der)
	}
	long := append([]byte{0x30, 39, 2, 34, 1}, make([]byte, 33)...)
	long = append(long, 2, 1, 1)
	var raw [64]byte
	assert.False(t, derToRaw(long, raw[:]), "an R longer than 32 bytes")
}
