package m2m

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
)

// How the client proves itself on a token request: one credential (a
// secret, a signing key, a ready-made assertion, or a TLS client
// certificate alone), possibly re-read from files, and the certificate a
// TLS handshake presents.

// ErrCredentialUnavailable is wrapped when the client's credential cannot
// be used for a token request: a ready-made assertion that has expired
// with no newer one in its file, or a ClientAssertion function that failed.
var ErrCredentialUnavailable = errors.New("m2m: client credential unavailable")

// assertionType is client_assertion_type for JWT assertions (RFC 7523 §2.2).
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Credential timing.
const (
	// fileCheckEvery is the least time between two looks at a credential
	// file; looks happen only on the fetch path, never on the hot path.
	fileCheckEvery = 5 * time.Second
	// assertionLifetime is how long an assertion the SDK signs is valid.
	assertionLifetime = 60 * time.Second
	// assertionMargin is how long before its exp a ready-made assertion
	// makes its file be read again at once.
	assertionMargin = 10 * time.Second
)

// cryptoRand is the randomness for signatures and jti values.
var cryptoRand io.Reader = rand.Reader

// authMethod is how a credential authenticates the client.
type authMethod int

const (
	authSecret        authMethod = iota // client_secret_basic or client_secret_post
	authPrivateKeyJWT                   // private_key_jwt: an assertion signed per request
	authAssertion                       // a ready-made assertion (file or function)
	authTLS                             // tls_client_auth or self_signed_tls_client_auth
)

// credential is one version of the client's credential. It is immutable:
// a changed file makes a new one, so a request body cached for one stays
// right for it.
type credential struct {
	method authMethod
	secret string      // authSecret
	key    *signingKey // authPrivateKeyJWT
	header string      // its JOSE header, base64url
	// authAssertion: a ready-made assertion from a file, and its exp
	// (zero when it has none), or a function called per request.
	assertion    string
	assertionExp time.Time
	assertionFn  func(context.Context) (string, error)
	// scrubber removes the secret or the file's assertion from server
	// text; built on first use (only failures need it).
	scrubber func() *wire.Scrubber
}

func newCredential(c *credential, clientID string) *credential {
	hidden := c.secret
	if c.method == authAssertion {
		hidden = c.assertion
	}
	c.scrubber = sync.OnceValue(func() *wire.Scrubber { return wire.NewScrubber(clientID, hidden) })
	return c
}

// body returns the token request body, content type and Authorization
// header value for this credential: the secret in Basic or in the body,
// or client_id and, for a file's assertion, the assertion itself. What
// changes per request (a signed or called-for assertion) is added by
// perRequest.
func (c *credential) body(r wire.Request, secretInBody bool) (body []byte, ctype, basic string, err error) {
	r.SecretInBody, r.ClientSecret = false, ""
	if c.method == authSecret {
		r.SecretInBody, r.ClientSecret = secretInBody, c.secret
	}
	body, ctype, err = r.Body()
	if err != nil {
		return nil, "", "", err
	}
	switch {
	case c.method == authSecret && !secretInBody:
		basic = wire.BasicAuth(r.ClientID, c.secret)
	case c.method == authTLS:
		body = appendParam(body, r.JSON, "client_id", r.ClientID)
	case c.method == authPrivateKeyJWT, c.method == authAssertion:
		body = appendParam(body, r.JSON, "client_id", r.ClientID)
		body = appendParam(body, r.JSON, "client_assertion_type", assertionType)
		if c.assertion != "" {
			body = appendParam(body, r.JSON, "client_assertion", c.assertion)
		}
	}
	return body, ctype, basic, nil
}

// perRequest returns the assertion this request must add to the body, or
// "" when the body is complete: a fresh private_key_jwt assertion for
// audience, signed at now, or the ClientAssertion function's answer.
func (c *credential) perRequest(ctx context.Context, clientID, audience string, now time.Time) (string, error) {
	switch {
	case c.key != nil:
		jti, err := newJTI()
		if err != nil {
			return "", err
		}
		claims, err := json.Marshal(struct {
			Iss string `json:"iss"`
			Sub string `json:"sub"`
			Aud string `json:"aud"`
			Jti string `json:"jti"`
			Iat int64  `json:"iat"`
			Exp int64  `json:"exp"`
		}{clientID, clientID, audience, jti, now.Unix(), now.Add(assertionLifetime).Unix()})
		if err != nil {
			return "", err
		}
		return c.key.jws(c.header, claims)
	case c.assertionFn != nil:
		a, err := c.assertionFn(ctx)
		if err != nil {
			return "", fmt.Errorf("%w: ClientAssertion: %w", ErrCredentialUnavailable, err)
		}
		a = strings.TrimSpace(a)
		if err := checkAssertion(a); err != nil {
			return "", fmt.Errorf("%w: ClientAssertion returned an assertion that %v", ErrCredentialUnavailable, err)
		}
		if exp, ok := wire.JWTExpiry(a); ok && !now.Before(exp) {
			return "", fmt.Errorf("%w: ClientAssertion returned an assertion that expired at %s",
				ErrCredentialUnavailable, exp.UTC().Format(time.RFC3339))
		}
		return a, nil
	}
	return "", nil
}

// checkAssertion accepts a non-empty assertion of printable characters
// without white space; it never quotes it.
func checkAssertion(a string) error {
	if a == "" {
		return errors.New("is empty")
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f {
			return errors.New("holds white space or control characters")
		}
	}
	return nil
}

// newJTI returns a random JWT ID: 128 bits, base64url.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(cryptoRand, b[:]); err != nil {
		return "", fmt.Errorf("m2m: reading randomness: %w", err)
	}
	return b64.EncodeToString(b[:]), nil
}

// appendParam returns a copy of body with one more parameter, in the
// body's encoding (form or JSON object).
func appendParam(body []byte, isJSON bool, k, v string) []byte {
	out := make([]byte, 0, len(body)+len(k)+len(v)+16)
	if !isJSON {
		out = append(out, body...)
		if len(body) > 0 {
			out = append(out, '&')
		}
		return append(append(append(out, url.QueryEscape(k)...), '='), url.QueryEscape(v)...)
	}
	out = append(out, body[:len(body)-1]...) // the object without its '}'
	if len(body) > 2 {
		out = append(out, ',')
	}
	kb, _ := json.Marshal(k)
	vb, _ := json.Marshal(v)
	return append(append(append(append(out, kb...), ':'), vb...), '}')
}

// clientAuth is a Client's credential and TLS client certificate, each
// maybe re-read from files. It is safe for concurrent use.
type clientAuth struct {
	clientID string
	audience string // Config.AssertionAudience; "" means the token endpoint
	cred     *watched[credential]
	cert     *watched[tls.Certificate] // nil without TLSCertFile
	clock    clock.Clock
	log      *slog.Logger
	// onCert switches token requests to the current certificate.
	onCert func()
}

// newClientAuth builds the credential cfg names, reading its files.
func newClientAuth(cfg *Config, clk clock.Clock, log *slog.Logger) (*clientAuth, error) {
	a := &clientAuth{clientID: cfg.ClientID, audience: cfg.AssertionAudience, clock: clk, log: log, onCert: func() {}}
	now := clk.Now()
	id := cfg.ClientID
	var err error
	signer := func(kid, alg string) func([][]byte) (*credential, error) {
		return func(data [][]byte) (*credential, error) {
			s, fileKid, fileAlg, err := parseKey(data[0])
			if err != nil {
				return nil, err
			}
			return newKeyCredential(s, id, cmp(kid, fileKid), cmp(alg, fileAlg))
		}
	}
	switch {
	case cfg.ClientSecret != "":
		a.cred = constant(newCredential(&credential{method: authSecret, secret: cfg.ClientSecret}, id))
	case cfg.ClientSecretFile != "":
		a.cred, err = newWatched("ClientSecretFile", now, func(data [][]byte) (*credential, error) {
			s := strings.TrimRight(string(data[0]), "\r\n")
			if s == "" || !printable(s) {
				return nil, errors.New("holds no secret on one line of printable characters")
			}
			return newCredential(&credential{method: authSecret, secret: s}, id), nil
		}, cfg.ClientSecretFile)
	case cfg.PrivateKey != nil:
		var c *credential
		if c, err = newKeyCredential(cfg.PrivateKey, id, cfg.KeyID, cfg.SigningAlgorithm); err != nil {
			return nil, configErr("PrivateKey: %v", err)
		}
		a.cred = constant(c)
	case cfg.PrivateKeyFile != "":
		a.cred, err = newWatched("PrivateKeyFile", now, signer(cfg.KeyID, cfg.SigningAlgorithm), cfg.PrivateKeyFile)
	case cfg.ClientAssertion != nil:
		a.cred = constant(newCredential(&credential{method: authAssertion, assertionFn: cfg.ClientAssertion}, id))
	case cfg.ClientAssertionFile != "":
		a.cred, err = newWatched("ClientAssertionFile", now, func(data [][]byte) (*credential, error) {
			s := strings.TrimSpace(string(data[0]))
			if err := checkAssertion(s); err != nil {
				return nil, errors.New("holds no assertion: it " + err.Error())
			}
			exp, _ := wire.JWTExpiry(s)
			return newCredential(&credential{method: authAssertion, assertion: s, assertionExp: exp}, id), nil
		}, cfg.ClientAssertionFile)
	default:
		a.cred = constant(newCredential(&credential{method: authTLS}, id))
	}
	if err != nil {
		return nil, err
	}
	if cfg.TLSCertFile != "" {
		paths := []string{cfg.TLSCertFile}
		if cfg.TLSKeyFile != "" {
			paths = append(paths, cfg.TLSKeyFile)
		}
		a.cert, err = newWatched("TLSCertFile", now, func(data [][]byte) (*tls.Certificate, error) {
			key := data[0]
			if len(data) > 1 {
				key = data[1]
			}
			c, err := tls.X509KeyPair(data[0], key)
			if err != nil {
				return nil, errors.New("holds no PEM certificate whose private key is in TLSKeyFile (or the same file)")
			}
			return &c, nil
		}, paths...)
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// cmp returns a unless it is empty, else b.
func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// newKeyCredential builds a private_key_jwt credential; kid "" is the
// key's RFC 7638 thumbprint.
func newKeyCredential(s crypto.Signer, clientID, kid, alg string) (*credential, error) {
	k, err := newSigningKey(s, alg)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = JWKThumbprint(s.Public()); err != nil {
			return nil, err
		}
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.alg, kid, "JWT"})
	if err != nil {
		return nil, err
	}
	return newCredential(&credential{method: authPrivateKeyJWT, key: k, header: b64.EncodeToString(h)}, clientID), nil
}

// current returns the credential to use now, after looking at its files
// if a look is due. A ready-made assertion about to expire makes its file
// be read at once, and is never used past its exp.
func (a *clientAuth) current() (*credential, error) {
	now := a.clock.Now()
	c, changed, err := a.cred.get(now, false)
	a.report(a.cred.field, changed, err)
	if !c.assertionExp.IsZero() && !now.Before(c.assertionExp.Add(-assertionMargin)) {
		c, changed, err = a.cred.get(now, true)
		a.report(a.cred.field, changed, err)
		if !now.Before(c.assertionExp) {
			return nil, fmt.Errorf("%w: the assertion in ClientAssertionFile expired at %s and the file holds no newer one",
				ErrCredentialUnavailable, c.assertionExp.UTC().Format(time.RFC3339))
		}
	}
	if a.cert != nil {
		_, changed, err := a.cert.get(now, false)
		a.certChanged(changed, err)
	}
	return c, nil
}

// reload reads the credential files again at once, after the server
// refused used (invalid_client), and reports whether there is now another
// credential or certificate to try.
func (a *clientAuth) reload(used *credential) bool {
	now := a.clock.Now()
	c, changed, err := a.cred.get(now, true)
	a.report(a.cred.field, changed, err)
	retry := c != used
	if a.cert != nil {
		_, changed, err := a.cert.get(now, true)
		a.certChanged(changed, err)
		retry = retry || changed
	}
	return retry
}

func (a *clientAuth) certChanged(changed bool, err error) {
	a.report(a.cert.field, changed, err)
	if changed {
		a.onCert()
	}
}

// report logs a credential re-read from its file, or a failed look.
func (a *clientAuth) report(field string, changed bool, err error) {
	switch {
	case err != nil:
		a.log.Warn("m2m: client credential file could not be used; keeping the last good one", slog.String("error", err.Error()))
	case changed:
		a.log.Info("m2m: client credential re-read from its changed file", slog.String("field", field))
	}
}

// recovery counts the immediate retries one fetch has made.
type recovery struct{ nonce, reload bool }

// retryNow reports whether a failed token request should be sent again
// at once, without counting as a retry: once per fetch when the server
// asked for a DPoP nonce (and gave one), and once when it refused the
// client and the credential files changed since used was read. Refusals
// are invalid_client, or any other 400 or 401: Ory Hydra answers an
// assertion signed by a key it does not know with invalid_request.
func (e *env) retryNow(err error, used *credential, r *recovery) bool {
	var te *TokenError
	if !errors.As(err, &te) {
		return false
	}
	switch {
	case te.ErrorCode == "use_dpop_nonce" && e.dpop != nil && !r.nonce:
		r.nonce = true
		return true
	case (te.ErrorCode == "invalid_client" || te.StatusCode == http.StatusBadRequest || te.StatusCode == http.StatusUnauthorized) && !r.reload:
		r.reload = true
		return e.auth.reload(used)
	}
	return false
}

// storeMaterial returns the secret the shared-store key material is
// derived from: the client secret, else the private key, else the TLS
// key, as first read; nil when there is none (a ready-made assertion
// alone, or a key that neither exports nor signs deterministically).
func (a *clientAuth) storeMaterial() []byte {
	c := a.cred.cur.Load()
	switch {
	case c.method == authSecret:
		return []byte(c.secret)
	case c.key != nil:
		return keyMaterial(c.key.signer)
	case a.cert != nil:
		if s, ok := a.cert.cur.Load().PrivateKey.(crypto.Signer); ok {
			return keyMaterial(s)
		}
	}
	return nil
}

// keyMaterial returns a secret only the holder of s knows: the key
// itself, or, for an RSA key kept in hardware, its PKCS #1 v1.5 signature
// of a fixed digest (deterministic, unlike ECDSA).
func keyMaterial(s crypto.Signer) []byte {
	if der, err := x509.MarshalPKCS8PrivateKey(s); err == nil {
		return der
	}
	if _, ok := s.Public().(*rsa.PublicKey); ok {
		digest := sha256.Sum256([]byte("m2m store key material v1"))
		if sig, err := s.Sign(cryptoRand, digest[:], crypto.SHA256); err == nil {
			return sig
		}
	}
	return nil
}

// scrubberFor returns the scrubber of what a request with c carried: the
// assertion added to it (sent), else c's secret or file assertion.
func (c *credential) scrubberFor(clientID, sent string) *wire.Scrubber {
	if sent != "" {
		return wire.NewScrubber(clientID, sent)
	}
	return c.scrubber()
}
