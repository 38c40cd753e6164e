package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// Proofs and certificates as a client makes them, built here from
// crypto/ecdsa, crypto/rsa and encoding/json alone, independent of the
// code under test.

var enc = base64.RawURLEncoding.EncodeToString

// dpopKey is a client's DPoP key pair.
type dpopKey struct {
	priv crypto.Signer
	alg  string
	jwk  map[string]any // the public members
	jkt  string         // RFC 7638 thumbprint
}

// newDPoPKey returns a fresh key for alg: ES256 (P-256), RS256 or PS256
// (RSA-2048), or EdDSA (Ed25519).
func newDPoPKey(t testing.TB, alg string) *dpopKey {
	t.Helper()
	k := &dpopKey{alg: alg}
	var thumb any
	switch alg {
	case "ES256":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		point, err := priv.PublicKey.Bytes()
		require.NoError(t, err)
		x, y := enc(point[1:33]), enc(point[33:])
		k.priv, k.jwk = priv, map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y}
		thumb = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{"P-256", "EC", x, y}
	case "RS256", "PS256":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		n, e := enc(priv.N.Bytes()), enc(big.NewInt(int64(priv.E)).Bytes())
		k.priv, k.jwk = priv, map[string]any{"kty": "RSA", "n": n, "e": e}
		thumb = struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{e, "RSA", n}
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		x := enc(pub)
		k.priv, k.jwk = priv, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": x}
		thumb = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{"Ed25519", "OKP", x}
	default:
		t.Fatalf("no test key for %s", alg)
	}
	b, err := json.Marshal(thumb)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	k.jkt = enc(sum[:])
	return k
}

// sign returns the JWS signature of input under alg with k's key, or
// 64 zero bytes when alg does not fit the key.
func (k *dpopKey) sign(t testing.TB, alg, input string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(input))
	_, isRSA := k.priv.(*rsa.PrivateKey)
	if fits := map[string]bool{"ES256": k.alg == "ES256", "RS256": isRSA, "PS256": isRSA, "EdDSA": k.alg == "EdDSA"}; !fits[alg] {
		return make([]byte, 64) // the alg does not fit the key: no signature can
	}
	switch alg {
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), sum[:])
		require.NoError(t, err)
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "RS256":
		sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:])
		require.NoError(t, err)
		return sig
	case "PS256":
		sig, err := rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: 32})
		require.NoError(t, err)
		return sig
	case "EdDSA":
		return ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input))
	}
	return nil // "none" and others: no signature
}

// proofOf is what a proof says: its header and claims.
type proofOf struct {
	header, claims map[string]any
}

// claimsFor returns the claims of a proof for a request of method to
// url carrying token, made at iat, with a fresh jti.
func claimsFor(token, method, url string, iat time.Time) map[string]any {
	var jti [12]byte
	rand.Read(jti[:])
	ath := sha256.Sum256([]byte(token))
	return map[string]any{"jti": enc(jti[:]), "htm": method, "htu": url, "iat": iat.Unix(), "ath": enc(ath[:])}
}

// proofFor is a valid proof with k for a request of method to url
// carrying token, made at iat.
func (k *dpopKey) proofFor(token, method, url string, iat time.Time) proofOf {
	return proofOf{
		header: map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.jwk},
		claims: claimsFor(token, method, url, iat),
	}
}

// with changes the proof: a nil value deletes a member.
func (p proofOf) with(header, claims map[string]any) proofOf {
	q := proofOf{header: map[string]any{}, claims: map[string]any{}}
	for _, pair := range [...][2]map[string]any{{q.header, p.header}, {q.header, header}, {q.claims, p.claims}, {q.claims, claims}} {
		for name, v := range pair[1] {
			if v == nil {
				delete(pair[0], name)
			} else {
				pair[0][name] = v
			}
		}
	}
	return q
}

// signed serializes the proof, signed by k under the header's alg.
func (p proofOf) signed(t testing.TB, k *dpopKey) string {
	t.Helper()
	h, err := json.Marshal(p.header)
	require.NoError(t, err)
	c, err := json.Marshal(p.claims)
	require.NoError(t, err)
	input := enc(h) + "." + enc(c)
	alg, _ := p.header["alg"].(string)
	return input + "." + enc(k.sign(t, alg, input))
}

// dpopClaims are goodClaims bound to jkt.
func dpopClaims(jkt string) jwt.MapClaims {
	c := goodClaims()
	c["cnf"] = map[string]any{"jkt": jkt}
	return c
}

// boundToken is a valid access token (RS256 by rsaA, kid s-a) with cnf.
func boundToken(t testing.TB, cnf map[string]any) string {
	t.Helper()
	c := goodClaims()
	c["cnf"] = cnf
	return mint(t, jwt.SigningMethodRS256, rsaA, "s-a", c)
}

// newCert returns a self-signed client certificate and its x5t#S256.
func newCert(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	return cert, priv, enc(sum[:])
}

// cnfToken is a valid access token whose cnf claim is the JSON raw.
func cnfToken(t testing.TB, raw string) string {
	t.Helper()
	c, err := json.Marshal(goodClaims())
	require.NoError(t, err)
	payload := strings.TrimSuffix(string(c), "}") + `,"cnf":` + raw + "}"
	return rawJWT(t, `{"alg":"RS256","kid":"s-a","typ":"JWT"}`, payload, rsaA)
}

// rawProof is a proof of literal header and claims JSON, signed by k
// with ES256.
func rawProof(t testing.TB, k *dpopKey, header, claims string) string {
	t.Helper()
	input := enc([]byte(header)) + "." + enc([]byte(claims))
	return input + "." + enc(k.sign(t, "ES256", input))
}

// jsonOf is v in JSON.
func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
