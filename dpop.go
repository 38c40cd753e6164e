package m2m

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DPoP (RFC 9449): the client holds a key pair, every token request and
// every request to an audience carries a proof signed with it, and the
// tokens are bound to the key, so a stolen token is useless without it.

// maxNonces bounds the DPoP nonces remembered, one per origin.
const maxNonces = 256

// dpopSigner makes DPoP proofs with the client's DPoP key and remembers
// the nonce each server gave last. It is safe for concurrent use.
type dpopSigner struct {
	key    *signingKey
	header string // base64url of {"alg","jwk","typ":"dpop+jwt"}
	jkt    string // RFC 7638 thumbprint of the public key (RFC 9449 §6.1)
	nonces sync.Map
	count  atomic.Int32          // entries in nonces, about
	ath    atomic.Pointer[athOf] // the last token's hash: a token is used for many requests
}

// athOf is an access token and its ath (RFC 9449 §4.2).
type athOf struct{ token, ath string }

// newDPoP checks the DPoP key and precomputes the proof header.
func newDPoP(s crypto.Signer) (*dpopSigner, error) {
	k, err := newSigningKey(s, "")
	if err != nil {
		return nil, err
	}
	jwk, err := jwkMembers(s.Public())
	if err != nil {
		return nil, err
	}
	jkt, err := JWKThumbprint(s.Public())
	if err != nil {
		return nil, err
	}
	header := fmt.Appendf(nil, `{"alg":%q,"jwk":%s,"typ":"dpop+jwt"}`, k.alg, jwk)
	return &dpopSigner{key: k, header: b64.EncodeToString(header), jkt: jkt}, nil
}

// target returns the origin of u (scheme and host, lower case) and its
// htu: the origin and the escaped path, without query and fragment
// (RFC 9449 §4.2), with "/" for an empty path.
func target(u *url.URL) (origin, htu string) {
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	htu = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + path
	return htu[:len(htu)-len(path)], htu
}

// proof returns a DPoP proof JWT for a request of method to u, at now.
// accessToken is the token the request carries ("" on token requests):
// its hash goes in ath. The nonce u's origin gave last goes in nonce.
func (d *dpopSigner) proof(method string, u *url.URL, accessToken string, now time.Time) (string, error) {
	if method == "" {
		method = http.MethodGet
	}
	origin, htu := target(u)
	var rnd [16]byte
	if _, err := io.ReadFull(cryptoRand, rnd[:]); err != nil {
		return "", fmt.Errorf("m2m: reading randomness: %w", err)
	}
	claims := make([]byte, 0, 160+len(htu))
	claims = append(claims, `{"jti":"`...)
	claims = b64.AppendEncode(claims, rnd[:])
	claims = append(claims, `","htm":`...)
	claims = appendJSONString(claims, method)
	claims = append(claims, `,"htu":`...)
	claims = appendJSONString(claims, htu)
	claims = append(claims, `,"iat":`...)
	claims = strconv.AppendInt(claims, now.Unix(), 10)
	if accessToken != "" {
		a := d.ath.Load()
		if a == nil || a.token != accessToken {
			sum := sha256.Sum256([]byte(accessToken))
			a = &athOf{accessToken, b64.EncodeToString(sum[:])}
			d.ath.Store(a)
		}
		claims = append(claims, `,"ath":"`...)
		claims = append(claims, a.ath...)
		claims = append(claims, '"')
	}
	if n, ok := d.nonces.Load(origin); ok {
		claims = append(claims, `,"nonce":"`...)
		claims = append(claims, n.(string)...) // NQCHAR only: no escaping needed
		claims = append(claims, '"')
	}
	claims = append(claims, '}')
	return d.key.jws(d.header, claims)
}

// sawNonce remembers the DPoP-Nonce a response from u's origin carries,
// if any (RFC 9449 §8, §9). It reports whether there was one.
func (d *dpopSigner) sawNonce(u *url.URL, h http.Header) bool {
	n := h.Get("DPoP-Nonce")
	if n == "" || !validNonce(n) {
		return false
	}
	origin, _ := target(u)
	if old, ok := d.nonces.Load(origin); ok && old.(string) == n {
		return true
	}
	if _, loaded := d.nonces.Swap(origin, n); !loaded && d.count.Add(1) > maxNonces {
		d.nonces.Clear() // many origins: start over rather than grow
		d.count.Store(0)
	}
	return true
}

// validNonce accepts a nonce of 1*NQCHAR (RFC 9449 §8.1), at most 1 KiB.
func validNonce(n string) bool {
	if n == "" || len(n) > 1024 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// isDPoP reports whether st is a DPoP-bound token.
func (st *tokenState) isDPoP() bool { return st.tok.TokenType == "DPoP" }

// authorize returns a copy of req carrying st: its Authorization header
// and, for a DPoP-bound token, a proof for this very request.
func (e *env) authorize(req *http.Request, st *tokenState) (*http.Request, error) {
	r2 := withAuth(req, st.auth)
	if e.dpop == nil || !st.isDPoP() {
		return r2, nil
	}
	proof, err := e.dpop.proof(req.Method, req.URL, st.tok.AccessToken, e.clock.Now())
	if err != nil {
		return nil, err
	}
	r2.Header["Dpop"] = []string{proof}
	return r2, nil
}

// nonceChallenge reports whether resp asks for a DPoP proof with the
// nonce it carries (401 with a DPoP challenge of error="use_dpop_nonce",
// RFC 9449 §9).
func nonceChallenge(resp *http.Response) bool {
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("DPoP-Nonce") == "" {
		return false
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if strings.Contains(v, "use_dpop_nonce") {
			return true
		}
	}
	return false
}

// replayWithNonce sends req once more with st and a proof that carries
// the nonce the callee just gave, if the body can be sent again;
// otherwise it returns resp as it came.
func (t *Transport) replayWithNonce(req *http.Request, e *entry, st *tokenState, resp *http.Response) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil
	}
	r2, err := e.env.authorize(req, st)
	if err != nil {
		return resp, nil
	}
	if req.GetBody != nil {
		if r2.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	drain(resp)
	e.log(slog.LevelDebug, "m2m: callee asked for a DPoP nonce; request sent again with it")
	resp2, err := t.base.RoundTrip(r2)
	if err == nil && resp2 != nil {
		e.env.dpop.sawNonce(req.URL, resp2.Header)
	}
	return resp2, err
}

// drain reads a little of a body that will not be used, so the
// connection can be reused, and closes it.
func drain(resp *http.Response) {
	if resp.Body != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}
}
