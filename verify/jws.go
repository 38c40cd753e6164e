package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 and SHA-512 for crypto.Hash.New
	"encoding/base64"
	"math/big"
	"strings"
	"unsafe"
)

// algorithm is one JWS signature algorithm (RFC 7518 §3) the verifier
// implements.
type algorithm struct {
	name  string
	hash  crypto.Hash // zero for EdDSA, which hashes internally
	kty   string      // JWK key type it needs
	curve elliptic.Curve
	pss   bool
}

// algorithms are the JWS algorithms Config.Algorithms may name. "none" and
// the HMAC family are absent: a verifier never shares a secret with the
// issuer.
var algorithms = map[string]*algorithm{
	"RS256": {name: "RS256", hash: crypto.SHA256, kty: "RSA"},
	"RS384": {name: "RS384", hash: crypto.SHA384, kty: "RSA"},
	"RS512": {name: "RS512", hash: crypto.SHA512, kty: "RSA"},
	"PS256": {name: "PS256", hash: crypto.SHA256, kty: "RSA", pss: true},
	"PS384": {name: "PS384", hash: crypto.SHA384, kty: "RSA", pss: true},
	"PS512": {name: "PS512", hash: crypto.SHA512, kty: "RSA", pss: true},
	"ES256": {name: "ES256", hash: crypto.SHA256, kty: "EC", curve: elliptic.P256()},
	"ES384": {name: "ES384", hash: crypto.SHA384, kty: "EC", curve: elliptic.P384()},
	"ES512": {name: "ES512", hash: crypto.SHA512, kty: "EC", curve: elliptic.P521()},
	"EdDSA": {name: "EdDSA", kty: "OKP"},
}

// maxHeader bounds the decoded JOSE header.
const maxHeader = 1 << 10

// header is what the verifier reads from a JOSE header.
type header struct {
	alg, kid, typ string
	hasKid        bool
}

// refusedHeaders are header members the verifier will not act on: a key
// or certificate chosen by the token (jku, x5u, jwk, x5c), extensions it
// does not understand (crit, b64), and JWE members (zip, enc).
var refusedHeaders = map[string]bool{"jku": true, "x5u": true, "jwk": true, "x5c": true, "crit": true, "b64": true, "zip": true, "enc": true}

// readHeader reads a JOSE header (exactly one JSON object).
func readHeader(s string) (header, error) {
	var h header
	r := jsonReader{s: s}
	if err := r.objectStart(); err != nil {
		return h, err
	}
	var names nameSet
	for first := true; ; first = false {
		name, more, err := r.member(first, &names)
		if err != nil {
			return h, err
		}
		if !more {
			return h, r.end()
		}
		var dst *string
		switch name {
		case "alg":
			dst = &h.alg
		case "kid":
			dst, h.hasKid = &h.kid, true
		case "typ":
			dst = &h.typ
		case "cty":
			var cty string
			if r.kind() == '"' {
				if cty, err = r.str(); err != nil {
					return h, err
				}
				if strings.EqualFold(cty, "JWT") {
					return h, reject(ErrUnsupportedHeader, `cty "JWT" (a nested token)`)
				}
				continue
			}
		default:
			if refusedHeaders[name] {
				return h, reject(ErrUnsupportedHeader, "the header has %q", name)
			}
		}
		if dst == nil {
			if err := r.skip(); err != nil {
				return h, err
			}
			continue
		}
		if r.kind() != '"' {
			if err := r.skip(); err != nil {
				return h, err
			}
			return h, reject(ErrMalformed, "%s must be a string", name)
		}
		if *dst, err = r.str(); err != nil {
			return h, err
		}
	}
}

// jws is a compact JWS split into its parts, decoded.
type jws struct {
	header  header
	signing string // base64url header "." base64url payload: what is signed
	payload string // decoded
	sig     []byte // decoded
}

var b64 = base64.RawURLEncoding.Strict()

// splitJWS splits and decodes a compact JWS (RFC 7515 §7.1): three parts
// in unpadded base64url with no other bytes (no padding, white space or
// line breaks, which Go's decoder would skip). Only the payload outlives
// the check (the cache keeps it in Claims); the signature never does: with
// the payload it would make the token again.
func splitJWS(raw string) (jws, error) {
	var t jws
	d1 := strings.IndexByte(raw, '.')
	if d1 < 0 {
		return t, reject(ErrMalformed, "not a compact JWS (three dot-separated parts)")
	}
	d2 := strings.IndexByte(raw[d1+1:], '.')
	if d2 < 0 {
		return t, reject(ErrMalformed, "not a compact JWS (three dot-separated parts)")
	}
	d2 += d1 + 1
	if strings.IndexByte(raw[d2+1:], '.') >= 0 {
		return t, reject(ErrMalformed, "not a compact JWS (more than three parts)")
	}
	// Go's base64 decoders skip '\r' and '\n'; nothing else outside the
	// alphabet gets through Strict.
	if strings.IndexByte(raw, '\n') >= 0 || strings.IndexByte(raw, '\r') >= 0 {
		return t, reject(ErrMalformed, "line break in the token")
	}
	hs, ps, ss := raw[:d1], raw[d1+1:d2], raw[d2+1:]
	if b64.DecodedLen(len(hs)) > maxHeader {
		return t, reject(ErrMalformed, "header larger than %d bytes", maxHeader)
	}
	hbuf := make([]byte, b64.DecodedLen(len(hs)))
	n, err := b64.Decode(hbuf, bytesOf(hs))
	if err != nil || n == 0 {
		return t, reject(ErrMalformed, "header is not base64url")
	}
	h, err := readHeader(unsafe.String(&hbuf[0], n)) // hbuf is never written again
	if err != nil {
		return t, headerErr(err)
	}
	pbuf := make([]byte, b64.DecodedLen(len(ps)))
	n, err = b64.Decode(pbuf, bytesOf(ps))
	if err != nil || n == 0 {
		return t, reject(ErrMalformed, "payload is not base64url")
	}
	if b64.DecodedLen(len(ss)) > maxRSABits/8 {
		return t, reject(ErrSignature, "signature longer than any key allows")
	}
	sig := make([]byte, b64.DecodedLen(len(ss)))
	m, err := b64.Decode(sig, bytesOf(ss))
	if err != nil {
		return t, reject(ErrMalformed, "signature is not base64url")
	}
	t.header = h
	t.signing = raw[:d2]
	t.payload = unsafe.String(&pbuf[0], n) // pbuf is never written again
	t.sig = sig[:m]
	return t, nil
}

// headerErr turns a header reading error into a rejection.
func headerErr(err error) error {
	if se, ok := err.(*syntaxError); ok {
		return reject(ErrMalformed, "header: %s", se.msg)
	}
	return err
}

// bytesOf views s as bytes without copying, for reads only.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// verifySignature checks sig over signing with key under alg. sha256Sum,
// when not nil, is the SHA-256 of signing, already computed.
func verifySignature(alg *algorithm, k *key, signing string, sig []byte, sha256Sum *[32]byte) error {
	msg := bytesOf(signing)
	var sum []byte
	switch {
	case alg.hash == crypto.SHA256 && sha256Sum != nil:
		sum = sha256Sum[:]
	case alg.hash != 0:
		sum = digest(alg.hash, msg)
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		var err error
		if alg.pss {
			// RFC 7518 §3.5: the salt is as long as the hash output.
			err = rsa.VerifyPSS(pub, alg.hash, sum, sig, &rsa.PSSOptions{SaltLength: alg.hash.Size(), Hash: alg.hash})
		} else {
			err = rsa.VerifyPKCS1v15(pub, alg.hash, sum, sig)
		}
		if err != nil {
			return reject(ErrSignature, "")
		}
		return nil
	case *ecdsa.PublicKey:
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return reject(ErrSignature, "%s signature is %d bytes, want %d", alg.name, len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, sum, r, s) {
			return reject(ErrSignature, "")
		}
		return nil
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, msg, sig) {
			return reject(ErrSignature, "")
		}
		return nil
	}
	return reject(ErrAlgorithm, "key %s has no usable public key", quoted(k.kid))
}

// digest hashes msg with h.
func digest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA256 {
		s := sha256.Sum256(msg)
		return s[:]
	}
	d := h.New()
	d.Write(msg)
	return d.Sum(make([]byte, 0, 64))
}
