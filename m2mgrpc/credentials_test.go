package m2mgrpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/m2mgrpc"
	"github.com/m2mauth/m2m/m2mgrpc/internal/authtest"
	"github.com/m2mauth/m2m/m2mgrpc/internal/calendarpb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func newCreds(t *testing.T, cfg m2mgrpc.CredentialsConfig) *m2mgrpc.Credentials {
	t.Helper()
	c, err := m2mgrpc.NewCredentials(cfg)
	require.NoError(t, err)
	return c
}

// Each connection's RPCs carry the token of its own audience, narrowed to
// the scopes of the method, and each (audience, scope set) is fetched once.
func TestTokenPerAudienceAndMethod(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	eventAddr, eventCal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes, Public: []string{calendarpb.Ping}}))
	holidayAddr, holidayCal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "holiday"),
		MethodScopes: map[string][]string{calendarpb.CreateEvent: {}, calendarpb.ListEvents: {"holiday.view"}}}))

	event, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "http://" + eventAddr})
	require.NoError(t, err)
	holiday, err := client.Source(m2m.Audience{Name: "holiday", Scopes: []string{"holiday.view"}, URL: "http://" + holidayAddr})
	require.NoError(t, err)
	eventConn := dial(t, eventAddr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: event, MethodScopes: eventScopes}))...)
	holidayConn := dial(t, holidayAddr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: holiday}))...)

	ctx := ctxT(t)
	for range 3 {
		got, err := eventConn.CreateEvent(ctx, "sync")
		require.NoError(t, err)
		assert.Equal(t, `created "sync" for task-service (scopes: event.create)`, got)
		list, err := eventConn.ListEvents(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, []string{"standup (scopes: event.view)", "retro (scopes: event.view)"}, list)
		pong, err := eventConn.Ping(ctx)
		require.NoError(t, err)
		assert.Equal(t, "pong, claims: false", pong, "a public method gets no claims")

		got, err = holidayConn.CreateEvent(ctx, "new year")
		require.NoError(t, err)
		assert.Equal(t, `created "new year" for task-service (scopes: holiday.view)`, got)
		_, err = holidayConn.ListEvents(ctx, "")
		require.NoError(t, err)
	}
	for _, r := range eventCal.seen() {
		if r.claims != nil {
			assert.Equal(t, []string{"event"}, r.claims.Audience, r.method)
		}
	}
	for _, r := range holidayCal.seen() {
		assert.Equal(t, []string{"holiday"}, r.claims.Audience, r.method)
	}
	assert.ElementsMatch(t, []authtest.Request{
		{Audience: "event", Scope: "event.create"},
		{Audience: "event", Scope: "event.view"},
		{Audience: "event", Scope: "event.create event.view"}, // Ping: not narrowed, all of the audience's scopes
		{Audience: "holiday", Scope: "holiday.view"},
	}, auth.Requests(), "one token request per (audience, scope set)")
}

// A token is never sent over a connection without transport security to a
// host that is not loopback, nor to an authority outside the audience.
func TestNoTokenOverInsecureChannel(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	v := newVerifier(t, auth, "event")
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: v, MethodScopes: eventScopes}))
	source := func(url string) *m2m.TokenSource {
		s, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: url})
		require.NoError(t, err)
		return s
	}
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())

	tests := []struct {
		name    string
		cfg     m2mgrpc.CredentialsConfig
		opts    []grpc.DialOption
		code    codes.Code
		message string
	}{
		{"loopback URL, but the authority is another host", m2mgrpc.CredentialsConfig{Source: source("http://" + addr)},
			[]grpc.DialOption{plain, grpc.WithAuthority("calendar.example.com")}, codes.Unauthenticated, m2mgrpc.ErrInsecureChannel.Error()},
		{"opted out, no URL, another host: sent", m2mgrpc.CredentialsConfig{Source: source(""), InsecureAllowPlaintext: true},
			[]grpc.DialOption{plain, grpc.WithAuthority("calendar.example.com")}, codes.OK, ""},
		{"opted out, but the authority is not the audience's", m2mgrpc.CredentialsConfig{Source: source("http://" + addr), InsecureAllowPlaintext: true},
			[]grpc.DialOption{plain, grpc.WithAuthority("files.example.com")}, codes.Unauthenticated, m2mgrpc.ErrWrongAuthority.Error()},
		{"loopback URL and authority: sent", m2mgrpc.CredentialsConfig{Source: source("http://" + addr)},
			[]grpc.DialOption{plain}, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(cal.seen())
			c := newCreds(t, tt.cfg)
			require.False(t, c.RequireTransportSecurity())
			conn := dial(t, addr, append(tt.opts, grpc.WithPerRPCCredentials(c))...)
			_, err := conn.CreateEvent(ctxT(t), "x")
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			assert.Contains(t, status.Convert(err).Message(), tt.message)
			if tt.code != codes.OK {
				assert.Len(t, cal.seen(), before, "the RPC must not reach the handler")
			}
		})
	}
}

// Without an audience URL, transport security is required, and gRPC
// refuses a plaintext connection.
func TestPlaintextRefusedByGRPC(t *testing.T) {
	auth := startAuth(t)
	src, err := newClient(t, auth, nil).Source(m2m.Audience{Name: "event"})
	require.NoError(t, err)
	c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src})
	require.True(t, c.RequireTransportSecurity())
	_, err = grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(c))
	assert.ErrorContains(t, err, "transport level security")
	assert.Empty(t, auth.Requests())
}

// Over TLS a token goes to a host that is not loopback, and only if it is
// where the audience lives.
func TestTLS(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	serverTLS, pool := selfSigned(t, "calendar.example.com")
	addr, _ := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}),
		grpc.Creds(credentials.NewTLS(serverTLS)))
	clientTLS := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool}))

	for _, tt := range []struct {
		name, url string
		code      codes.Code
	}{
		{"the audience's host", "https://calendar.example.com", codes.OK},
		{"no URL: any host over TLS", "", codes.OK},
		{"another audience's host", "https://files.example.com", codes.Unauthenticated},
		{"the audience's host on another port", "https://calendar.example.com:8443", codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: tt.url})
			require.NoError(t, err)
			c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src})
			assert.True(t, c.RequireTransportSecurity())
			conn := dial(t, addr, clientTLS, grpc.WithAuthority("calendar.example.com"), grpc.WithPerRPCCredentials(c))
			_, err = conn.CreateEvent(ctxT(t), "x")
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
		})
	}
}

// GetRequestMetadata decides on the connection each RPC uses.
func TestGetRequestMetadata(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}})
	require.NoError(t, err)
	c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src, MethodScopes: eventScopes})
	tlsInfo := credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	plainInfo := insecureInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}

	for _, tt := range []struct {
		name  string
		ai    credentials.AuthInfo
		uri   []string
		scope string // "" when refused
	}{
		{"TLS, remote host", tlsInfo, []string{"https://calendar.example.com/calendar.v1.Calendar"}, "event.create"},
		{"plaintext, 127.0.0.1", plainInfo, []string{"https://127.0.0.1:5000/calendar.v1.Calendar"}, "event.create"},
		{"plaintext, [::1]", plainInfo, []string{"https://[::1]:5000/calendar.v1.Calendar"}, "event.create"},
		{"plaintext, localhost", plainInfo, []string{"https://localhost:5000/calendar.v1.Calendar"}, "event.create"},
		{"plaintext, remote host", plainInfo, []string{"https://calendar.example.com/calendar.v1.Calendar"}, ""},
		{"plaintext, 127.0.0.1 as a name's prefix", plainInfo, []string{"https://127.0.0.1.example.com/calendar.v1.Calendar"}, ""},
		{"no AuthInfo, remote host", nil, []string{"https://calendar.example.com/calendar.v1.Calendar"}, ""},
		{"plaintext, no audience URI", plainInfo, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := credentials.NewContextWithRequestInfo(ctxT(t), credentials.RequestInfo{Method: calendarpb.CreateEvent, AuthInfo: tt.ai})
			md, err := c.GetRequestMetadata(ctx, tt.uri...)
			if tt.scope == "" {
				assert.Equal(t, codes.Unauthenticated, status.Code(err))
				assert.Contains(t, status.Convert(err).Message(), m2mgrpc.ErrInsecureChannel.Error())
				assert.Nil(t, md)
				return
			}
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(md["authorization"], "Bearer "))
			assert.Equal(t, []string{"event.create"}, scopesOf(t, auth, md["authorization"]))
		})
	}
}

// A DPoP-bound token is not sent as a bearer token: without its proof it
// is refused by the server, and the RPC fails here with a clear reason.
func TestDPoPBoundTokenIsNotSentAsBearer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NotEmpty(t, r.Header.Get("DPoP"), "the token request carries a proof")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"bound-token","token_type":"DPoP","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	client, err := m2m.New(m2m.Config{TokenURL: srv.URL, ClientID: "task", ClientSecret: "s3cr3t", DPoPKey: key})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	src, err := client.Source(m2m.Audience{Name: "event"})
	require.NoError(t, err)
	c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src})
	ctx := credentials.NewContextWithRequestInfo(ctxT(t), credentials.RequestInfo{Method: calendarpb.CreateEvent,
		AuthInfo: credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}})
	md, err := c.GetRequestMetadata(ctx, "https://calendar.example.com/calendar.v1.Calendar")
	assert.Nil(t, md)
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), m2mgrpc.ErrNotBearer.Error())
	assert.NotContains(t, status.Convert(err).Message(), "bound-token")
}

type insecureInfo struct{ credentials.CommonAuthInfo }

func (insecureInfo) AuthType() string { return "insecure" }

// scopesOf returns the scp claim of a "Bearer <jwt>" value, checked by a
// verifier.
func scopesOf(t *testing.T, auth *authtest.Server, authz string) []string {
	t.Helper()
	cl, err := newVerifier(t, auth, "event").Verify(ctxT(t), strings.TrimPrefix(authz, "Bearer "))
	require.NoError(t, err)
	return cl.Scopes
}

// Token endpoint failures become status errors that say what failed and
// hold no secret.
func TestTokenEndpointFailures(t *testing.T) {
	auth := startAuth(t)
	addr, _ := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))

	for _, tt := range []struct {
		name, tokenURL, secret string
		code                   codes.Code
		message                string
	}{
		{"wrong secret", auth.TokenURL, "wrong-secret-value", codes.Unauthenticated, "invalid_client"},
		{"endpoint down", "http://127.0.0.1:1/auth/oauth/token", authtest.ClientSecret, codes.Unavailable, "m2mgrpc: no token"},
		{"no client credential yet", auth.TokenURL, "", codes.Unavailable, "client credential unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := m2m.Config{TokenURL: tt.tokenURL, ClientID: authtest.ClientID, ClientSecret: tt.secret,
				MaxRetries: -1, RetryBaseDelay: time.Millisecond}
			if tt.secret == "" {
				cfg.ClientAssertion = func(context.Context) (string, error) {
					return "", errors.New("the workload identity token is not mounted yet")
				}
			}
			client, err := m2m.New(cfg)
			require.NoError(t, err)
			defer client.Close()
			src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: "http://" + addr})
			require.NoError(t, err)
			conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src}))...)
			_, err = conn.CreateEvent(ctxT(t), "x")
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			assert.Contains(t, status.Convert(err).Message(), tt.message)
			if tt.secret != "" {
				assert.NotContains(t, status.Convert(err).Message(), tt.secret)
			}
		})
	}
}

func TestNewCredentials(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	src := func(url string) *m2m.TokenSource {
		s, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view"}, URL: url})
		require.NoError(t, err)
		return s
	}
	for _, tt := range []struct {
		name string
		cfg  m2mgrpc.CredentialsConfig
		want error
	}{
		{"no source", m2mgrpc.CredentialsConfig{}, m2mgrpc.ErrInvalidConfig},
		{"not a full method", m2mgrpc.CredentialsConfig{Source: src(""), MethodScopes: map[string][]string{"CreateEvent": {"event.view"}}}, m2mgrpc.ErrInvalidConfig},
		{"undeclared scope", m2mgrpc.CredentialsConfig{Source: src(""), MethodScopes: map[string][]string{calendarpb.CreateEvent: {"event.create"}}}, m2m.ErrUndeclaredScope},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m2mgrpc.NewCredentials(tt.cfg)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorIs(t, err, m2mgrpc.ErrInvalidConfig)
		})
	}

	for _, tt := range []struct {
		name     string
		cfg      m2mgrpc.CredentialsConfig
		required bool
	}{
		{"no URL", m2mgrpc.CredentialsConfig{Source: src("")}, true},
		{"https URL", m2mgrpc.CredentialsConfig{Source: src("https://calendar.example.com")}, true},
		{"loopback URL", m2mgrpc.CredentialsConfig{Source: src("http://127.0.0.1:5000")}, false},
		{"localhost URL", m2mgrpc.CredentialsConfig{Source: src("http://localhost:5000")}, false},
		{"opted out", m2mgrpc.CredentialsConfig{Source: src("https://calendar.example.com"), InsecureAllowPlaintext: true}, false},
	} {
		t.Run("RequireTransportSecurity/"+tt.name, func(t *testing.T) {
			assert.Equal(t, tt.required, newCreds(t, tt.cfg).RequireTransportSecurity())
		})
	}

	c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src(""), MethodScopes: map[string][]string{calendarpb.ListEvents: {"event.view"}}})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assert.Equal(t, `m2mgrpc.Credentials{audience: "event", methods: 1}`, fmt.Sprintf(verb, c))
	}
}

// selfSigned returns a server TLS config for host and a pool trusting it.
func selfSigned(t *testing.T, host string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}
