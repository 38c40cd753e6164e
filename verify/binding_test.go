package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCertificateBound: RFC 8705 §3 for callers without net/http.
func TestCertificateBound(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	cert, _, x5t := newCert(t, "client")
	other, _, _ := newCert(t, "client")
	bound := boundToken(t, map[string]any{"x5t#S256": x5t})
	plain := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())

	c, err := v.VerifyWithCertificate(context.Background(), bound, cert)
	require.NoError(t, err)
	assert.Equal(t, x5t, c.CertificateThumbprint)
	assert.Empty(t, c.JWKThumbprint)
	c, err = v.VerifyWithCertificate(context.Background(), plain, cert)
	require.NoError(t, err, "a token without binding needs no certificate, and ignores one")
	assert.Empty(t, c.CertificateThumbprint)
	_, err = v.VerifyWithCertificate(context.Background(), plain, nil)
	require.NoError(t, err)

	tests := []struct {
		name string
		call func() error
	}{
		{"another certificate", func() error { _, err := v.VerifyWithCertificate(context.Background(), bound, other); return err }},
		{"no certificate", func() error { _, err := v.VerifyWithCertificate(context.Background(), bound, nil); return err }},
		{"Verify, which sees none", func() error { _, err := v.Verify(context.Background(), bound); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			assert.ErrorIs(t, err, ErrInvalidToken)
			assert.ErrorIs(t, err, ErrCertificateBinding)
			assert.NotContains(t, err.Error(), x5t)
		})
	}
}

// TestCertificateBoundIntrospected: an introspection answer's cnf binds
// the opaque token just as a JWT's does (RFC 8705 §3.2).
func TestCertificateBoundIntrospected(t *testing.T) {
	t.Parallel()
	s := newIntroServer(t)
	v, _ := newIntroVerifier(t, s, nil)
	cert, _, x5t := newCert(t, "client")
	answer := active()
	answer["cnf"] = map[string]any{"x5t#S256": x5t}
	s.set("opaque-bound", answer)
	_, err := v.Verify(context.Background(), "opaque-bound")
	assert.ErrorIs(t, err, ErrCertificateBinding)
	c, err := v.VerifyWithCertificate(context.Background(), "opaque-bound", cert)
	require.NoError(t, err)
	assert.Equal(t, x5t, c.CertificateThumbprint)
}

// TestMiddlewareCertificateBound: over a real TLS connection, the
// middleware takes the client certificate from the handshake.
func TestMiddlewareCertificateBound(t *testing.T) {
	t.Parallel()
	keys(t)
	jwks := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, jwks, nil)
	cert, priv, x5t := newCert(t, "client")
	_, _, otherX5t := newCert(t, "other")
	api := httptest.NewUnstartedServer(v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := ClaimsFromContext(r.Context())
		io.WriteString(w, "hello "+c.ClientID)
	})))
	api.TLS = &tls.Config{ClientAuth: tls.RequestClientCert} // self-signed client certificates, bound by thumbprint
	api.StartTLS()
	t.Cleanup(api.Close)
	clientCert := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: priv}
	withoutCert := api.Client()
	tr := withoutCert.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{clientCert}
	withCert := &http.Client{Transport: tr}
	t.Cleanup(withCert.CloseIdleConnections)

	tests := []struct {
		name      string
		client    *http.Client
		token     string
		status    int
		challenge string
	}{
		{"bound to this certificate", withCert, boundToken(t, map[string]any{"x5t#S256": x5t}), 200, ""},
		{"bound to another", withCert, boundToken(t, map[string]any{"x5t#S256": otherX5t}), 401, `Bearer error="invalid_token", error_description="certificate binding not met: the client certificate's SHA-256 thumbprint is not the token's cnf x5t#S256"`},
		{"no certificate", withoutCert, boundToken(t, map[string]any{"x5t#S256": x5t}), 401, `Bearer error="invalid_token", error_description="certificate binding not met: the token is bound to a client certificate (cnf x5t#S256) and none was presented"`},
		{"not bound, no certificate", withoutCert, mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", api.URL+"/events", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := tc.client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tc.status, resp.StatusCode, string(body))
			assert.Equal(t, tc.challenge, resp.Header.Get("WWW-Authenticate"))
			if tc.status == 200 {
				assert.Equal(t, "hello "+testClientID, string(body))
			}
		})
	}
}

// TestMiddlewareClientCertificateFromProxy: Config.ClientCertificate
// reads the certificate a TLS-terminating proxy forwards.
func TestMiddlewareClientCertificateFromProxy(t *testing.T) {
	t.Parallel()
	keys(t)
	jwks := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	calls := 0
	v, _ := newTestVerifier(t, jwks, func(c *Config) {
		c.ClientCertificate = func(r *http.Request) *x509.Certificate {
			calls++
			p, _ := url.QueryUnescape(r.Header.Get("X-Client-Cert"))
			b, _ := pem.Decode([]byte(p))
			if b == nil {
				return nil
			}
			cert, _ := x509.ParseCertificate(b.Bytes)
			return cert
		}
	})
	cert, _, x5t := newCert(t, "client")
	h := v.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	serve := func(token, forwarded string) int {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		if forwarded != "" {
			r.Header.Set("X-Client-Cert", forwarded)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	forwarded := url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})))
	bound := boundToken(t, map[string]any{"x5t#S256": x5t})
	assert.Equal(t, 200, serve(bound, forwarded))
	assert.Equal(t, 401, serve(bound, ""))
	assert.Equal(t, 2, calls)
	assert.Equal(t, 200, serve(mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()), ""))
	assert.Equal(t, 2, calls, "not asked for a token without binding")
}
