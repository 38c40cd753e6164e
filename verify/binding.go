package verify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"net/http"
)

// Sender-constrained tokens: the cnf claim (RFC 7800) binds a token to a
// TLS client certificate (x5t#S256, RFC 8705 §3) or to a DPoP key (jkt,
// RFC 9449 §6), so that a stolen token is useless without the
// certificate's or the key's private half. The verifier reads cnf from a
// JWT's claims and from an introspection answer alike (RFC 8705 §3.2,
// RFC 9449 §6.2), and checks the binding on every request, cached token
// or not: the cache knows the token, not the request.

// thumbprintLen is the length of a base64url SHA-256 digest.
const thumbprintLen = 43

// readCnf reads the cnf claim into p: an object whose members are the
// confirmation methods the verifier checks, each a base64url SHA-256.
func readCnf(r *jsonReader, p *payload) error {
	err := r.nestedObject(ErrConfirmation, "cnf", func(name string) error {
		var dst *string
		switch name {
		case "x5t#S256":
			dst = &p.x5t
		case "jkt":
			dst = &p.jkt
		default:
			if err := r.skip(); err != nil {
				return err
			}
			return reject(ErrConfirmation, "cnf has %s, a confirmation method the verifier does not check (only x5t#S256 and jkt)", quoted(name))
		}
		if err := r.stringValue(dst, ErrMalformed, "cnf "+name); err != nil {
			return err
		}
		if !isThumbprint(*dst) {
			return reject(ErrMalformed, "cnf %s must be a base64url SHA-256 (43 characters)", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.x5t == "" && p.jkt == "" {
		return reject(ErrConfirmation, "cnf names no confirmation method")
	}
	return nil
}

// isThumbprint reports whether s is a SHA-256 digest in strict unpadded
// base64url.
func isThumbprint(s string) bool {
	if len(s) != thumbprintLen {
		return false
	}
	var d [32]byte
	n, err := b64.Decode(d[:], bytesOf(s))
	return err == nil && n == len(d)
}

// thumbprintIs reports whether s is the base64url of sum.
func thumbprintIs(sum *[32]byte, s string) bool {
	var buf [thumbprintLen]byte
	b64.Encode(buf[:], sum[:])
	return string(buf[:]) == s
}

// bound reports whether the token is sender-constrained.
func (c *Claims) bound() bool { return c.CertificateThumbprint != "" || c.JWKThumbprint != "" }

// boundErr refuses a bound token presented as a bearer token with cert,
// the client's TLS certificate (nil when none), or returns nil when the
// token's binding holds.
func boundErr(c *Claims, cert *x509.Certificate) error {
	if c.JWKThumbprint != "" {
		return reject(ErrDPoPBinding, "the token is DPoP-bound (cnf jkt): it must come with the DPoP scheme and a proof (RFC 9449 §7.1)")
	}
	return checkCertificate(c, cert)
}

// checkCertificate checks the token's certificate binding, if any,
// against cert (nil when the client presented none).
func checkCertificate(c *Claims, cert *x509.Certificate) error {
	if c.CertificateThumbprint == "" {
		return nil
	}
	if cert == nil {
		return reject(ErrCertificateBinding, "the token is bound to a client certificate (cnf x5t#S256) and none was presented")
	}
	sum := sha256.Sum256(cert.Raw)
	if !thumbprintIs(&sum, c.CertificateThumbprint) {
		return reject(ErrCertificateBinding, "the client certificate's SHA-256 thumbprint is not the token's cnf x5t#S256")
	}
	return nil
}

// VerifyWithCertificate checks a raw token presented as a bearer token by
// a client that authenticated its TLS connection with cert (nil when it
// presented no certificate), for callers that are not net/http handlers,
// such as gRPC interceptors (the certificate is
// credentials.TLSInfo.State.PeerCertificates[0] of the peer's AuthInfo).
// A token bound to a certificate (cnf x5t#S256, RFC 8705 §3) passes only
// when the SHA-256 thumbprint of cert's DER bytes equals it, else the
// error wraps ErrCertificateBinding; a token without binding passes as
// with Verify; a DPoP-bound token is refused with ErrDPoPBinding (see
// VerifyDPoP). The binding is the thumbprint: cert need not chain to a
// CA the server trusts (RFC 8705 §2.2's self-signed certificates), but
// the TLS handshake must have proved that the client holds its key,
// which crypto/tls does whenever it reports a peer certificate.
func (v *Verifier) VerifyWithCertificate(ctx context.Context, raw string, cert *x509.Certificate) (*Claims, error) {
	c, err := v.verify(ctx, raw, nil)
	if err != nil {
		return nil, err
	}
	if err := boundErr(c, cert); err != nil {
		return nil, err
	}
	return c, nil
}

// clientCertificate returns the TLS client certificate of r, as
// Config.ClientCertificate says, or nil.
func (v *Verifier) clientCertificate(r *http.Request) *x509.Certificate {
	if v.cfg.ClientCertificate != nil {
		return v.cfg.ClientCertificate(r)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}
