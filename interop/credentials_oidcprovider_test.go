package interop

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Client authentication and sender-constrained tokens against
// node-oidc-provider (interop/oidcprovider/credentials.mjs):
// private_key_jwt, tls_client_auth, self_signed_tls_client_auth with a
// certificate rotated on disk, certificate-bound tokens (cnf.x5t#S256),
// and DPoP with server nonces at the token endpoint and at a callee
// (cnf.jkt). They run when $OIDC_PROVIDER_DIR names an installed
// oidc-provider (scripts/oidc-provider.sh prints it).

// pki is a test CA, the provider's server certificate, and helpers to
// issue client certificates.
type pki struct {
	dir    string
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	caFile string
	pool   *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "m2m interop CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, p.caKey.Public(), p.caKey)
	require.NoError(t, err)
	p.ca, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	p.caFile = p.write(t, "ca.pem", pemBlock("CERTIFICATE", der))
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *pki) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	writeAtomic(t, path, data)
	return path
}

// issue returns a certificate for key: signed by the CA, or self-signed.
func (p *pki) issue(t *testing.T, key *ecdsa.PrivateKey, cn string, selfSigned bool, mod func(*x509.Certificate)) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if mod != nil {
		mod(tmpl)
	}
	parent, signer := p.ca, crypto.Signer(p.caKey)
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	require.NoError(t, err)
	return der
}

func keyPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return pemBlock("PRIVATE KEY", der)
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// certProvider is a running credentials.mjs.
type certProvider struct {
	issuer string
	hc     *http.Client // trusts the provider's certificate
}

// startCertProvider runs credentials.mjs with clients, over TLS with a
// server certificate from p, and stops it when t ends.
func startCertProvider(t *testing.T, p *pki, clients []map[string]any) *certProvider {
	t.Helper()
	dir := os.Getenv("OIDC_PROVIDER_DIR")
	if dir == "" {
		t.Skip("OIDC_PROVIDER_DIR is not set: skipping the node-oidc-provider client-authentication tests")
	}
	script, err := filepath.Abs(filepath.Join("oidcprovider", "credentials.mjs"))
	require.NoError(t, err)
	port, err := freePort()
	require.NoError(t, err)
	serverKey := newECKey(t)
	serverCert := p.issue(t, serverKey, "127.0.0.1", false, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	raw, err := json.Marshal(clients)
	require.NoError(t, err)
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(),
		"OIDC_PROVIDER_DIR="+dir,
		fmt.Sprintf("PORT=%d", port),
		"TLS_CERT="+p.write(t, "server.pem", pemBlock("CERTIFICATE", serverCert)),
		"TLS_KEY="+p.write(t, "server.key", keyPEM(t, serverKey)),
		"CLIENT_CA="+p.caFile,
		"CLIENTS="+p.write(t, "clients.json", raw),
	)
	var logs lockedBuffer
	cmd.Stderr = &logs
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		ready <- errors.New("exited before it was ready")
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("credentials.mjs stderr:\n%s", logs.String())
		}
	})
	select {
	case err := <-ready:
		require.NoError(t, err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("credentials.mjs not ready after 60 s:\n%s", logs.String())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: p.pool}
	t.Cleanup(tr.CloseIdleConnections)
	return &certProvider{issuer: fmt.Sprintf("https://127.0.0.1:%d", port), hc: &http.Client{Transport: tr}}
}

// clientMetadata is the metadata of a client_credentials client.
func clientMetadata(id, method string, extra map[string]any) map[string]any {
	c := map[string]any{"client_id": id, "grant_types": []string{"client_credentials"}, "redirect_uris": []string{},
		"response_types": []string{}, "token_endpoint_auth_method": method, "scope": "event.view event.create"}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// jwksOf returns the public JWK Set of keys (kid: the thumbprint), each
// with its certificate when one is given (self_signed_tls_client_auth).
func jwksOf(t *testing.T, keys []crypto.Signer, certs [][]byte) map[string]any {
	t.Helper()
	var set []map[string]any
	for i, k := range keys {
		kid, err := m2m.JWKThumbprint(k.Public())
		require.NoError(t, err)
		raw, err := m2m.PublicJWK(k.Public(), kid, "")
		require.NoError(t, err)
		var jwk map[string]any
		require.NoError(t, json.Unmarshal(raw, &jwk))
		if certs != nil {
			jwk["x5c"] = []string{base64.StdEncoding.EncodeToString(certs[i])}
		}
		set = append(set, jwk)
	}
	return map[string]any{"keys": set}
}

// claimsOf decodes a JWT access token's claims, unverified: the tests
// look at what the server bound the token to.
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3, "a JWT access token")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(raw, &c))
	return c
}

func cnfOf(t *testing.T, tok, member string) string {
	t.Helper()
	cnf, _ := claimsOf(t, tok)["cnf"].(map[string]any)
	s, _ := cnf[member].(string)
	return s
}

func x5t(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var calendarAudience = m2m.Audience{Name: "event", Resource: "https://calendar.test/", Scopes: []string{"event.view"}}

func TestClientAuthNodeOIDCProvider(t *testing.T) {
	p := newPKI(t)
	ecKey := newECKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tlsKey := newECKey(t)
	tlsCert := p.issue(t, tlsKey, "m2m-tls", false, func(c *x509.Certificate) { c.DNSNames = []string{"m2m-tls.test"} })
	otherTLSCert := p.issue(t, tlsKey, "someone-else", false, func(c *x509.Certificate) { c.DNSNames = []string{"other.test"} })
	selfKey1, selfKey2 := newECKey(t), newECKey(t)
	self1 := p.issue(t, selfKey1, "m2m-self-1", true, nil)
	self2 := p.issue(t, selfKey2, "m2m-self-2", true, nil)
	dpopKey := newECKey(t)

	prov := startCertProvider(t, p, []map[string]any{
		clientMetadata("m2m-pkjwt-es256", "private_key_jwt", map[string]any{"jwks": jwksOf(t, []crypto.Signer{ecKey}, nil)}),
		clientMetadata("m2m-pkjwt-ps256", "private_key_jwt", map[string]any{"jwks": jwksOf(t, []crypto.Signer{rsaKey}, nil),
			"token_endpoint_auth_signing_alg": "PS256"}),
		clientMetadata("m2m-tls", "tls_client_auth", map[string]any{"tls_client_auth_san_dns": "m2m-tls.test",
			"tls_client_certificate_bound_access_tokens": true}),
		clientMetadata("m2m-self", "self_signed_tls_client_auth", map[string]any{
			"jwks": jwksOf(t, []crypto.Signer{selfKey1, selfKey2}, [][]byte{self1, self2}), "tls_client_certificate_bound_access_tokens": true}),
		clientMetadata("m2m-dpop-nonce", "private_key_jwt", map[string]any{"jwks": jwksOf(t, []crypto.Signer{ecKey}, nil),
			"dpop_bound_access_tokens": true}),
	})
	tokenURL := prov.issuer + "/token"
	newM2M := func(t *testing.T, id string, mod func(*m2m.Config)) *m2m.Client {
		t.Helper()
		cfg := m2m.Config{TokenURL: tokenURL, ClientID: id, HTTPClient: prov.hc}
		mod(&cfg)
		mc, err := m2m.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { mc.Close() })
		return mc
	}
	get := func(t *testing.T, mc *m2m.Client, a m2m.Audience) (string, error) {
		t.Helper()
		src, err := mc.Source(a)
		require.NoError(t, err)
		tok, err := src.TokenContext(context.Background())
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	}

	t.Run("private_key_jwt", func(t *testing.T) {
		for _, tc := range []struct {
			id  string
			mod func(*m2m.Config)
		}{
			{"m2m-pkjwt-es256", func(c *m2m.Config) { c.PrivateKey = ecKey }},
			{"m2m-pkjwt-ps256", func(c *m2m.Config) { c.PrivateKey, c.SigningAlgorithm = rsaKey, m2m.AlgPS256 }},
			{"m2m-pkjwt-es256", func(c *m2m.Config) { c.PrivateKey, c.AssertionAudience = ecKey, prov.issuer }},
		} {
			tok, err := get(t, newM2M(t, tc.id, tc.mod), calendarAudience)
			require.NoError(t, err, tc.id)
			c := claimsOf(t, tok)
			assert.Equal(t, tc.id, c["client_id"])
			assert.Equal(t, "https://calendar.test/", c["aud"])
		}
		_, err := get(t, newM2M(t, "m2m-pkjwt-es256", func(c *m2m.Config) { c.PrivateKey = rsaKey }), calendarAudience)
		var te *m2m.TokenError
		require.ErrorAs(t, err, &te, "a key the client did not register")
		assert.Equal(t, "invalid_client", te.ErrorCode)
	})

	t.Run("tls_client_auth, certificate-bound token", func(t *testing.T) {
		certFile := p.write(t, "tls.pem", pemBlock("CERTIFICATE", tlsCert))
		keyFile := p.write(t, "tls.key", keyPEM(t, tlsKey))
		tok, err := get(t, newM2M(t, "m2m-tls", func(c *m2m.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile }), calendarAudience)
		require.NoError(t, err)
		assert.Equal(t, x5t(tlsCert), cnfOf(t, tok, "x5t#S256"), "the token is bound to the certificate")

		other := p.write(t, "other.pem", pemBlock("CERTIFICATE", otherTLSCert))
		_, err = get(t, newM2M(t, "m2m-tls", func(c *m2m.Config) { c.TLSCertFile, c.TLSKeyFile = other, keyFile }), calendarAudience)
		var te *m2m.TokenError
		require.ErrorAs(t, err, &te, "a certificate with another subject")
		assert.Equal(t, "invalid_client", te.ErrorCode)
	})

	t.Run("self_signed_tls_client_auth, certificate rotated on disk", func(t *testing.T) {
		certFile := p.write(t, "self.pem", append(pemBlock("CERTIFICATE", self1), keyPEM(t, selfKey1)...))
		mc := newM2M(t, "m2m-self", func(c *m2m.Config) { c.TLSCertFile = certFile })
		short := m2m.Audience{Name: "short", Resource: "https://short.test/", Scopes: []string{"event.view"}}
		tok, err := get(t, mc, short)
		require.NoError(t, err)
		assert.Equal(t, x5t(self1), cnfOf(t, tok, "x5t#S256"))

		// The second registered certificate replaces the first on disk:
		// once the file is looked at again, new tokens are bound to it.
		p.write(t, "self.pem", append(pemBlock("CERTIFICATE", self2), keyPEM(t, selfKey2)...))
		deadline := time.Now().Add(30 * time.Second)
		for cnfOf(t, tok, "x5t#S256") != x5t(self2) {
			require.True(t, time.Now().Before(deadline), "no token bound to the new certificate")
			time.Sleep(200 * time.Millisecond)
			tok, err = get(t, mc, short)
			require.NoError(t, err)
		}
	})

	t.Run("DPoP with nonces at the token endpoint and the callee", func(t *testing.T) {
		jkt, err := m2m.JWKThumbprint(dpopKey.Public())
		require.NoError(t, err)
		callee := newDPoPCallee(t, "callee-nonce-1")
		aud := calendarAudience
		aud.URL = callee.URL
		fetches := &fetchCounter{}
		mc := newM2M(t, "m2m-dpop-nonce", func(c *m2m.Config) { c.PrivateKey, c.DPoPKey, c.Observer = ecKey, dpopKey, fetches })
		src, err := mc.Source(aud)
		require.NoError(t, err)
		tok, err := src.TokenContext(context.Background())
		require.NoError(t, err, "the provider's use_dpop_nonce is answered with its nonce")
		assert.Equal(t, "DPoP", tok.TokenType)
		assert.Equal(t, jkt, cnfOf(t, tok.AccessToken, "jkt"), "the token is bound to the DPoP key")
		assert.Equal(t, []int{2}, fetches.attempts(), "one fetch: refused for want of a nonce, then sent with it")

		hc := &http.Client{Transport: m2m.NewTransport(nil, src)}
		for i := range 3 {
			resp, err := hc.Get(callee.URL + "/events?n=" + fmt.Sprint(i))
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		}
		callee.mu.Lock()
		defer callee.mu.Unlock()
		assert.Equal(t, []int{401, 200, 200, 200}, callee.codes, "one nonce challenge, then the nonce is remembered")
		assert.Equal(t, jkt, callee.jkt)

		// Without DPoP the client cannot get a token at all.
		_, err = get(t, newM2M(t, "m2m-dpop-nonce", func(c *m2m.Config) { c.PrivateKey = ecKey }), calendarAudience)
		var te *m2m.TokenError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, "invalid_grant", te.ErrorCode)
	})
}

// fetchCounter records how many requests each token fetch took.
type fetchCounter struct {
	mu sync.Mutex
	n  []int
}

func (f *fetchCounter) Observe(ev m2m.Event) {
	if ev.Kind == m2m.EventFetch {
		f.mu.Lock()
		f.n = append(f.n, ev.Attempts)
		f.mu.Unlock()
	}
}

func (f *fetchCounter) attempts() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.n...)
}

// dpopCallee is a service that accepts a DPoP-bound JWT only with a valid
// proof of the request (RFC 9449 §7: signature by the key in its header,
// typ, htm, htu, iat, ath, the key's thumbprint equal to the token's
// cnf.jkt), and demands a nonce of its own.
type dpopCallee struct {
	*httptest.Server
	nonce string

	mu    sync.Mutex
	codes []int
	jkt   string
	jtis  map[string]bool
}

func newDPoPCallee(t *testing.T, nonce string) *dpopCallee {
	c := &dpopCallee{nonce: nonce, jtis: map[string]bool{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		code := c.check(w, r)
		c.codes = append(c.codes, code)
		w.WriteHeader(code)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *dpopCallee) check(w http.ResponseWriter, r *http.Request) int {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
	proofs := r.Header.Values("DPoP")
	if !ok || len(proofs) != 1 {
		return http.StatusUnauthorized
	}
	parts := strings.Split(proofs[0], ".")
	if len(parts) != 3 {
		return http.StatusUnauthorized
	}
	var header struct {
		Typ, Alg string
		JWK      map[string]string
	}
	var claims struct {
		Jti, Htm, Htu, Ath, Nonce string
		Iat                       int64
	}
	for i, dst := range []any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, dst) != nil {
			return http.StatusUnauthorized
		}
	}
	x, _ := base64.RawURLEncoding.DecodeString(header.JWK["x"])
	y, _ := base64.RawURLEncoding.DecodeString(header.JWK["y"])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sum := sha256.Sum256([]byte(tok))
	jkt, _ := m2m.JWKThumbprint(pub)
	var bound struct {
		Cnf struct{ Jkt string }
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok+"..", ".")[1])
	json.Unmarshal(raw, &bound)
	if err != nil || header.Typ != "dpop+jwt" || header.Alg != "ES256" || len(sig) != 64 ||
		!ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) ||
		claims.Htm != r.Method || claims.Htu != "http://"+r.Host+r.URL.EscapedPath() ||
		time.Since(time.Unix(claims.Iat, 0)).Abs() > time.Minute || claims.Jti == "" || c.jtis[claims.Jti] ||
		claims.Ath != base64.RawURLEncoding.EncodeToString(sum[:]) || bound.Cnf.Jkt == "" || bound.Cnf.Jkt != jkt {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
		return http.StatusUnauthorized
	}
	c.jtis[claims.Jti] = true
	c.jkt = jkt
	if claims.Nonce != c.nonce {
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
		w.Header().Set("DPoP-Nonce", c.nonce)
		return http.StatusUnauthorized
	}
	return http.StatusOK
}
