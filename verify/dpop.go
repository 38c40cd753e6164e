package verify

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
)

// DPoP (RFC 9449): a token bound to a key (cnf.jkt) comes with the DPoP
// scheme and, on every request, a proof signed with that key for that
// request (htm, htu), recently (iat), once (jti), for that token (ath).

// DPoPRequest is what a request that presents its token with the DPoP
// scheme ("Authorization: DPoP <token>") carries beside the token, for
// VerifyDPoP. It is a plain value: VerifyDPoP reads it and keeps nothing
// of it.
type DPoPRequest struct {
	// Proof is the value of the request's DPoP header (RFC 9449 §4.1): a
	// compact JWS. Required: a request with no DPoP header (or more than
	// one, which callers must refuse themselves) has no valid proof.
	Proof string
	// Method is the request's HTTP method, which the proof's htm must
	// equal (for gRPC, "POST"). Required.
	Method string
	// URL is the URL the client addressed the request to, which the
	// proof's htu must name. Query and fragment are ignored; both are
	// compared after normalizing case, default ports, percent-encoding
	// and dot segments (RFC 3986 §6.2.2, §6.2.3). Required.
	URL string
	// Certificate is the TLS client certificate the request came with,
	// for a token bound both to a DPoP key and to a certificate. Optional.
	Certificate *x509.Certificate
}

// VerifyDPoP checks a raw token presented with the DPoP scheme together
// with its proof (RFC 9449 §4.3, §7.1), for callers that are not net/http
// handlers. The token must pass Verify's checks and be DPoP-bound (cnf
// jkt), else the error wraps ErrInvalidToken (with ErrDPoPBinding for a
// token that is not bound). The proof must be a compact JWS with typ
// "dpop+jwt", an alg of Config.DPoPAlgorithms and a jwk header holding a
// public key that verifies its signature and whose RFC 7638 thumbprint is
// the token's cnf jkt; its htm and htu must name req's method and URL,
// its iat lie within Config.DPoPProofWindow of the verifier's clock, its
// ath be the SHA-256 of the token, its nonce be current when
// Config.DPoPNonceInterval asks for nonces (see DPoPNonce), and its jti
// not have been seen with that key within the window. A refused proof
// wraps ErrInvalidDPoPProof and one specific error. ErrReplayCacheFull
// says nothing about the proof: retry later.
//
// A proof is spent by the call that accepts it: call VerifyDPoP once per
// request.
func (v *Verifier) VerifyDPoP(ctx context.Context, raw string, req DPoPRequest) (*Claims, error) {
	return v.verifyDPoP(ctx, raw, &req)
}

func (v *Verifier) verifyDPoP(ctx context.Context, raw string, req *DPoPRequest) (*Claims, error) {
	var sum [32]byte
	c, err := v.verify(ctx, raw, &sum)
	if err != nil {
		return nil, err
	}
	if c.JWKThumbprint == "" {
		return nil, reject(ErrDPoPBinding, "the DPoP scheme needs a DPoP-bound token (cnf jkt), and this one is not bound")
	}
	if err := checkCertificate(c, req.Certificate); err != nil {
		return nil, err
	}
	if err := v.checkProof(req, &sum, c.JWKThumbprint); err != nil {
		return nil, err
	}
	return c, nil
}

// DPoPNonce returns the nonce DPoP proofs must carry now (RFC 9449 §9),
// for callers of VerifyDPoP that answer ErrUseDPoPNonce themselves by
// sending it to the client; Middleware does so on its own. It returns ""
// when Config.DPoPNonceInterval does not ask for nonces.
func (v *Verifier) DPoPNonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.at(v.clock.Now()).now
}

// dpopAlgorithm returns the allowed proof algorithm named alg, or nil.
func (v *Verifier) dpopAlgorithm(alg string) *algorithm {
	for _, a := range v.dpopAlgs {
		if a.name == alg {
			return a
		}
	}
	return nil
}

// checkProof checks req's proof for the token whose SHA-256 is tokenSum
// and whose cnf jkt is jkt, and records it as spent. The cheap checks
// come before the signature, the replay cache last, so that only a proof
// that passes everything else is remembered.
func (v *Verifier) checkProof(req *DPoPRequest, tokenSum *[32]byte, jkt string) error {
	proof := req.Proof
	switch {
	case proof == "":
		return rejectProof(ErrMalformed, "the request has no DPoP proof")
	case len(proof) > maxProofSize:
		return rejectProof(ErrTokenTooLarge, "%d bytes, more than %d", len(proof), maxProofSize)
	}
	hjson, d2, err := jwsHeader(proof, maxProofHeader)
	if err != nil {
		return asProof(err)
	}
	var h proofHeader
	if err := readProofHeader(hjson, &h); err != nil {
		return asProof(headerErr(err))
	}
	if !strings.EqualFold(h.typ, "dpop+jwt") && !strings.EqualFold(h.typ, "application/dpop+jwt") {
		if h.typ == "" {
			return rejectProof(ErrTokenType, `want typ "dpop+jwt", the proof has none`)
		}
		return rejectProof(ErrTokenType, `want typ "dpop+jwt", the proof has %s`, quoted(h.typ))
	}
	alg := v.dpopAlgorithm(h.alg)
	if alg == nil {
		return rejectProof(ErrAlgorithm, "want one of %v, the proof has %s", v.cfg.DPoPAlgorithms, quoted(h.alg))
	}
	if !h.hasJWK {
		return rejectProof(ErrProofKey, "the proof has no jwk header")
	}
	if h.jwk.Kty == "RSA" && (!minimalInt(h.jwk.N) || !minimalInt(h.jwk.E)) {
		return rejectProof(ErrProofKey, "the jwk's n or e has a leading zero octet")
	}
	k, _, reason := publicJWK(h.jwk)
	if reason != "" {
		return rejectProof(ErrProofKey, "jwk: %s", reason)
	}
	if !alg.fits(k) || (k.alg != "" && k.alg != alg.name) {
		return rejectProof(ErrProofKey, "alg %s does not fit the jwk (%s %s)", alg.name, k.kty, quoted(k.alg))
	}
	payload, sig, err := jwsBody(proof, d2)
	if err != nil {
		return asProof(err)
	}
	var c proofClaims
	if err := readProofClaims(payload, &c); err != nil {
		if se, ok := err.(*syntaxError); ok {
			return rejectProof(ErrMalformed, "payload: %s", se.msg)
		}
		return asProof(err)
	}
	for _, m := range [...]struct {
		bit  int
		name string
	}{{hasProofJTI, "jti"}, {hasProofHTM, "htm"}, {hasProofHTU, "htu"}, {hasProofIat, "iat"}, {hasProofAth, "ath"}} {
		if c.has&m.bit == 0 {
			return rejectProof(ErrMissingClaim, "%s (RFC 9449 §4.2)", m.name)
		}
	}
	if c.jti == "" {
		return rejectProof(ErrMalformed, "jti is empty")
	}
	if c.htm != req.Method {
		return rejectProof(ErrProofTarget, "htm %s is not the request's method %s", quoted(c.htm), quoted(req.Method))
	}
	if !sameHTU(c.htu, req.URL) {
		return rejectProof(ErrProofTarget, "htu %s is not the request's URL %s", quoted(c.htu), quoted(req.URL))
	}
	// Compared as times: iat may lie centuries away, beyond what Unix
	// nanoseconds hold.
	now, iat, w := v.clock.Now(), c.iat.toTime(), v.cfg.DPoPProofWindow
	switch {
	case iat.Before(now.Add(-w)):
		return rejectProof(ErrExpired, "iat %s is more than %s before now %s", stamp(iat), w, stamp(now))
	case iat.After(now.Add(w)):
		return rejectProof(ErrNotYetValid, "iat %s is more than %s after now %s", stamp(iat), w, stamp(now))
	}
	if !thumbprintIs(tokenSum, c.ath) {
		return rejectProof(ErrDPoPBinding, "ath is not the SHA-256 of the access token")
	}
	if tp := jwkThumbprint(&h.jwk); !thumbprintIs(&tp, jkt) {
		return rejectProof(ErrDPoPBinding, "the thumbprint of the proof's jwk is not the token's cnf jkt")
	}
	if err := verifySignature(alg, k, proof[:d2], sig, nil); err != nil {
		return asProof(err)
	}
	if v.nonces != nil && !v.nonces.valid(c.nonce, now) {
		if c.has&hasProofNonce == 0 {
			return rejectProof(ErrUseDPoPNonce, "the proof has no nonce")
		}
		return rejectProof(ErrUseDPoPNonce, "the proof's nonce is not current")
	}
	return v.replay.add(replayKey(jkt, c.jti), iat.Add(w).UnixNano(), now.UnixNano())
}

// requestProof returns what r carries for VerifyDPoP, or a rejection
// when it carries more than one proof (RFC 9449 §4.3).
func (v *Verifier) requestProof(r *http.Request) (DPoPRequest, error) {
	req := DPoPRequest{Method: r.Method, Certificate: v.clientCertificate(r)}
	proofs := r.Header.Values("DPoP")
	if len(proofs) > 1 {
		return req, rejectProof(ErrMalformed, "more than one DPoP header")
	}
	if len(proofs) == 1 {
		req.Proof = proofs[0]
	}
	req.URL = v.requestURL(r)
	return req, nil
}
