package m2m

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// Signing algorithms (RFC 7518 §3.1) for client assertions and DPoP proofs.
const (
	// AlgRS256 is RSASSA-PKCS1-v1_5 with SHA-256, the default for RSA keys.
	AlgRS256 = "RS256"
	// AlgPS256 is RSASSA-PSS with SHA-256 (salt as long as the hash).
	AlgPS256 = "PS256"
	// AlgES256 is ECDSA on P-256 with SHA-256, the only one for P-256 keys.
	AlgES256 = "ES256"
)

// minRSABits is the smallest RSA key accepted (RFC 7518 §3.3).
const minRSABits = 2048

// maxKeyFile bounds a key, certificate, secret or assertion file.
const maxKeyFile = 1 << 20

// errKeyData is returned for data that holds no usable private key; it
// never quotes the data.
var errKeyData = errors.New("holds no PEM private key (PKCS #8, PKCS #1 or SEC 1) or private JWK")

// ParsePrivateKey parses a private key from PEM ("PRIVATE KEY" in PKCS #8,
// "RSA PRIVATE KEY" in PKCS #1 or "EC PRIVATE KEY" in SEC 1) or from a JWK
// (RFC 7517 §4: a JSON object with the private members, or a JWK Set
// holding exactly one key). It accepts RSA keys of at least 2048 bits and
// ECDSA keys on P-256. Its errors never quote the data.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	k, _, _, err := parseKey(data)
	return k, err
}

// parseKey is ParsePrivateKey that also returns a JWK's kid and alg.
func parseKey(data []byte) (key crypto.Signer, kid, alg string, err error) {
	if trimmed := trimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJWK(trimmed)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "", "", fmt.Errorf("m2m: key data %w", errKeyData)
		}
		var k any
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue // a certificate or parameters beside the key
		}
		if err != nil {
			return nil, "", "", fmt.Errorf("m2m: %s PEM block does not parse", block.Type)
		}
		s, err := checkKey(k)
		return s, "", "", err
	}
}

// checkKey accepts the private keys the SDK can sign with.
func checkKey(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("m2m: RSA key of %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("m2m: ECDSA key on %s; only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("m2m: %T keys are not supported; use RSA (RS256, PS256) or ECDSA P-256 (ES256)", k)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// jwk holds the members of an RSA or EC JWK the SDK reads.
type jwk struct {
	Kty, Kid, Alg, Use, Crv string
	N, E, D, P, Q, X, Y     string
	Keys                    []json.RawMessage
}

// parseJWK parses a private JWK, or a JWK Set of one key.
func parseJWK(data []byte) (crypto.Signer, string, string, error) {
	var j jwk
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, "", "", fmt.Errorf("m2m: key data is JSON but not a JWK")
	}
	if j.Kty == "" && j.Keys != nil {
		if len(j.Keys) != 1 {
			return nil, "", "", fmt.Errorf("m2m: JWK Set holds %d keys; give exactly one", len(j.Keys))
		}
		return parseJWK(j.Keys[0])
	}
	if j.D == "" {
		return nil, "", "", errors.New("m2m: JWK has no private part (\"d\")")
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, "", "", fmt.Errorf("m2m: JWK \"use\" is %q, not \"sig\"", j.Use)
	}
	b := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	var key crypto.Signer
	switch j.Kty {
	case "RSA":
		var parts [5][]byte
		for i, s := range []string{j.N, j.E, j.D, j.P, j.Q} {
			v, err := b(s)
			if err != nil || len(v) == 0 {
				return nil, "", "", errors.New("m2m: RSA JWK needs n, e, d, p and q in base64url")
			}
			parts[i] = v
		}
		e := new(big.Int).SetBytes(parts[1])
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, "", "", errors.New("m2m: RSA JWK has an unusable exponent")
		}
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(parts[0]), E: int(e.Int64())},
			D:         new(big.Int).SetBytes(parts[2]),
			Primes:    []*big.Int{new(big.Int).SetBytes(parts[3]), new(big.Int).SetBytes(parts[4])},
		}
		if err := k.Validate(); err != nil {
			return nil, "", "", errors.New("m2m: RSA JWK is not a consistent key")
		}
		k.Precompute()
		key = k
	case "EC":
		if j.Crv != "P-256" {
			return nil, "", "", fmt.Errorf("m2m: EC JWK on curve %q; only P-256 (ES256) is supported", j.Crv)
		}
		d, err := b(j.D)
		if err != nil {
			return nil, "", "", errors.New("m2m: EC JWK \"d\" is not base64url")
		}
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			return nil, "", "", errors.New("m2m: EC JWK \"d\" is not a P-256 private key")
		}
		x, errX := b(j.X)
		y, errY := b(j.Y)
		pub, _ := k.PublicKey.Bytes()
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 ||
			subtle.ConstantTimeCompare(pub[1:], slices.Concat(x, y)) != 1 {
			return nil, "", "", errors.New("m2m: EC JWK \"x\" and \"y\" do not match \"d\"")
		}
		key = k
	default:
		return nil, "", "", fmt.Errorf("m2m: JWK kty %q is not supported; use RSA or EC", j.Kty)
	}
	s, err := checkKey(key)
	return s, j.Kid, j.Alg, err
}

// jwkMembers returns the required public members of key's JWK in the
// lexicographic order RFC 7638 §3.2 asks for, as a JSON object.
func jwkMembers(pub crypto.PublicKey) ([]byte, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Appendf(nil, `{"e":%q,"kty":"RSA","n":%q}`, enc(big.NewInt(int64(k.E)).Bytes()), enc(k.N.Bytes())), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("m2m: only P-256 EC keys are supported")
		}
		raw, err := k.Bytes()
		if err != nil {
			return nil, errors.New("m2m: EC public key is not on its curve")
		}
		return fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, enc(raw[1:33]), enc(raw[33:])), nil
	}
	return nil, fmt.Errorf("m2m: %T public keys are not supported", pub)
}

// JWKThumbprint returns the RFC 7638 JWK SHA-256 thumbprint of an RSA or
// P-256 public key, base64url-encoded: the default kid of client
// assertions, and the "jkt" a DPoP-bound token carries (RFC 9449 §6.1).
func JWKThumbprint(pub crypto.PublicKey) (string, error) {
	m, err := jwkMembers(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(m)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// PublicJWK returns the public JWK of an RSA or P-256 key with "use":"sig"
// and, when not empty, "kid" and "alg": what to register with the
// authorization server for private_key_jwt (wrapped in {"keys":[…]}).
func PublicJWK(pub crypto.PublicKey, kid, alg string) ([]byte, error) {
	m, err := jwkMembers(pub)
	if err != nil {
		return nil, err
	}
	var obj map[string]string
	if err := json.Unmarshal(m, &obj); err != nil {
		return nil, err
	}
	obj["use"] = "sig"
	if kid != "" {
		obj["kid"] = kid
	}
	if alg != "" {
		obj["alg"] = alg
	}
	return json.Marshal(obj)
}

// signingKey is a private key with the JWS algorithm it signs with. It is
// immutable and safe for concurrent use (as crypto.Signer
// implementations must be).
type signingKey struct {
	signer crypto.Signer
	alg    string
	opts   crypto.SignerOpts
	ec     bool // the signer returns ASN.1; JWS wants R‖S (RFC 7518 §3.4)
}

// newSigningKey checks that s can sign alg ("" picks RS256 for RSA keys
// and ES256 for P-256 ones).
func newSigningKey(s crypto.Signer, alg string) (*signingKey, error) {
	if s == nil {
		return nil, errors.New("m2m: no key")
	}
	k := &signingKey{signer: s, alg: alg}
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("m2m: RSA key of %d bits; at least %d are required", pub.N.BitLen(), minRSABits)
		}
		switch alg {
		case "", AlgRS256:
			k.alg, k.opts = AlgRS256, crypto.SHA256
		case AlgPS256:
			k.opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		default:
			return nil, fmt.Errorf("m2m: an RSA key signs RS256 or PS256, not %q", alg)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("m2m: ECDSA key on %s; only P-256 (ES256) is supported", pub.Curve.Params().Name)
		}
		if alg != "" && alg != AlgES256 {
			return nil, fmt.Errorf("m2m: a P-256 key signs ES256, not %q", alg)
		}
		k.alg, k.opts, k.ec = AlgES256, crypto.SHA256, true
	default:
		return nil, fmt.Errorf("m2m: %T keys are not supported; use RSA (RS256, PS256) or ECDSA P-256 (ES256)", pub)
	}
	return k, nil
}

var b64 = base64.RawURLEncoding

// jws returns the compact JWS of claims under the base64url-encoded
// protected header (RFC 7515 §7.1), signed by k.
func (k *signingKey) jws(header string, claims []byte) (string, error) {
	n := len(header) + 1 + b64.EncodedLen(len(claims))
	buf := make([]byte, 0, n+1+b64.EncodedLen(512))
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, claims)
	digest := sha256.Sum256(buf)
	sig, err := k.signer.Sign(cryptoRand, digest[:], k.opts)
	if err != nil {
		return "", fmt.Errorf("m2m: signing with the %s key: %w", k.alg, err)
	}
	if k.ec {
		var raw [64]byte
		if !derToRaw(sig, raw[:]) {
			return "", errors.New("m2m: the ES256 signer returned a malformed signature")
		}
		sig = raw[:]
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// derToRaw turns an ASN.1 DER ECDSA signature (SEQUENCE of two INTEGERs)
// into R‖S, each left-padded to half of out.
func derToRaw(der, out []byte) bool {
	if len(der) < 8 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return false
	}
	rest := der[2:]
	size := len(out) / 2
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || int(rest[1]) > len(rest)-2 || rest[1] == 0 {
			return false
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) > size {
			return false
		}
		copy(out[i*size+size-len(v):(i+1)*size], v)
	}
	return len(rest) == 0
}
