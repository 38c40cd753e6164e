package verify

import (
	"strings"
)

// Reading a DPoP proof (RFC 9449 §4.2): a JWS whose header carries the
// public key it is signed with, read by the same strict JSON reader as
// tokens.

const (
	// maxProofSize bounds a DPoP proof: an RSA-8192 jwk and signature fit.
	maxProofSize = 8 << 10
	// maxProofHeader bounds a proof's decoded header, which holds its jwk.
	maxProofHeader = 4 << 10
)

// proofHeader is what the verifier reads from a DPoP proof's JOSE header.
type proofHeader struct {
	alg, typ string
	jwk      jwkJSON
	hasJWK   bool
}

// privateMembers are JWK members of private or symmetric keys (RFC 7518
// §6.2.2, §6.3.2, §6.4): a proof's jwk must hold none.
var privateMembers = map[string]bool{"d": true, "p": true, "q": true, "dp": true, "dq": true, "qi": true, "oth": true, "k": true}

// readProofHeader reads a proof's JOSE header (exactly one JSON object).
// It refuses what readHeader refuses, except jwk, which it reads.
func readProofHeader(s string, h *proofHeader) error {
	r := jsonReader{s: s}
	err := r.object(func(name string) error {
		switch name {
		case "alg":
			return r.stringValue(&h.alg, ErrMalformed, name)
		case "typ":
			return r.stringValue(&h.typ, ErrMalformed, name)
		case "jwk":
			h.hasJWK = true
			return readProofJWK(&r, &h.jwk)
		case "cty":
			if r.kind() == '"' {
				cty, err := r.str()
				if err != nil {
					return err
				}
				if strings.EqualFold(cty, "JWT") {
					return reject(ErrUnsupportedHeader, `cty "JWT" (a nested token)`)
				}
				return nil
			}
		default:
			if refusedHeaders[name] {
				return reject(ErrUnsupportedHeader, "the header has %q", name)
			}
		}
		return r.skip()
	})
	if err != nil {
		return err
	}
	return r.end()
}

// readProofJWK reads the jwk header member: a public key, with no private
// or symmetric key member.
func readProofJWK(r *jsonReader, j *jwkJSON) error {
	return r.nestedObject(ErrProofKey, "jwk", func(name string) error {
		var dst *string
		switch name {
		case "kty":
			dst = &j.Kty
		case "crv":
			dst = &j.Crv
		case "x":
			dst = &j.X
		case "y":
			dst = &j.Y
		case "n":
			dst = &j.N
		case "e":
			dst = &j.E
		case "alg":
			dst = &j.Alg
		default:
			if err := r.skip(); err != nil {
				return err
			}
			if privateMembers[name] {
				return reject(ErrProofKey, "the jwk holds %q: a proof carries a public key only", name)
			}
			return nil
		}
		return r.stringValue(dst, ErrProofKey, "jwk "+name)
	})
}

// Proof claims read, as bits of proofClaims.has.
const (
	hasProofJTI = 1 << iota
	hasProofHTM
	hasProofHTU
	hasProofIat
	hasProofAth
	hasProofNonce
)

// proofClaims are the claims of a DPoP proof (RFC 9449 §4.2).
type proofClaims struct {
	has                       int
	jti, htm, htu, ath, nonce string
	iat                       numericTime
}

// readProofClaims reads a proof's claims (exactly one JSON object).
func readProofClaims(s string, c *proofClaims) error {
	r := jsonReader{s: s}
	err := r.object(func(name string) error {
		var dst *string
		bit := 0
		switch name {
		case "jti":
			dst, bit = &c.jti, hasProofJTI
		case "htm":
			dst, bit = &c.htm, hasProofHTM
		case "htu":
			dst, bit = &c.htu, hasProofHTU
		case "ath":
			dst, bit = &c.ath, hasProofAth
		case "nonce":
			dst, bit = &c.nonce, hasProofNonce
		case "iat":
			if r.kind() != '0' {
				if err := r.skip(); err != nil {
					return err
				}
				return reject(ErrMalformed, "iat must be a NumericDate (a number)")
			}
			lit, err := r.number()
			if err != nil {
				return err
			}
			t, ok := numericDate(lit)
			if !ok {
				return reject(ErrMalformed, "iat %s is not a NumericDate between 1970 and 9999", shown(lit))
			}
			c.iat, c.has = t, c.has|hasProofIat
			return nil
		default:
			return r.skip()
		}
		if err := r.stringValue(dst, ErrMalformed, name); err != nil {
			return err
		}
		c.has |= bit
		return nil
	})
	if err != nil {
		return err
	}
	return r.end()
}

// jwkThumbprint returns the RFC 7638 thumbprint of a public JWK that
// publicJWK accepted, whose members are then canonical (minimal RSA
// integers, full-length EC coordinates, strict base64url): the SHA-256
// of its required members in lexicographic order, without white space.
func jwkThumbprint(j *jwkJSON) [32]byte {
	hs := hashers.Get().(*hasher)
	h := hs.h
	h.Reset()
	w := func(s string) { h.Write(bytesOf(s)) }
	switch j.Kty {
	case "RSA":
		w(`{"e":"`)
		w(j.E)
		w(`","kty":"RSA","n":"`)
		w(j.N)
		w(`"}`)
	case "EC":
		w(`{"crv":"`)
		w(j.Crv)
		w(`","kty":"EC","x":"`)
		w(j.X)
		w(`","y":"`)
		w(j.Y)
		w(`"}`)
	default: // OKP
		w(`{"crv":"`)
		w(j.Crv)
		w(`","kty":"OKP","x":"`)
		w(j.X)
		w(`"}`)
	}
	sum := [32]byte(h.Sum(hs.out[:0]))
	hashers.Put(hs)
	return sum
}

// minimalInt reports whether s, the base64url of an RSA integer, has no
// leading zero octet (RFC 7518 §2's Base64urlUInt), so that the
// thumbprint of the key is the one its holder computes.
func minimalInt(s string) bool {
	var first [3]byte
	n, err := b64.Decode(first[:], bytesOf(s[:min(len(s), 4)]))
	return err != nil || n == 0 || first[0] != 0 // publicJWK refuses the first two
}
