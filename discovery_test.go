package m2m

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metadataServer serves a token endpoint (through ts) and metadata
// documents built by doc for the paths it lists.
type metadataServer struct {
	*httptest.Server
	reads atomic.Int64
}

func newMetadataServer(t *testing.T, ts *tokenServer, paths []string, doc func(issuer string) map[string]any) *metadataServer {
	t.Helper()
	ms := &metadataServer{}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			ms.reads.Add(1)
			json.NewEncoder(w).Encode(doc(ms.URL))
		})
	}
	mux.Handle("POST /token", ts.Config.Handler)
	ms.Server = httptest.NewServer(mux)
	t.Cleanup(ms.Close)
	return ms
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	standard := func(extra map[string]any) func(string) map[string]any {
		return func(issuer string) map[string]any {
			m := map[string]any{"issuer": issuer, "token_endpoint": issuer + "/token"}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
	}
	tests := []struct {
		name       string
		paths      []string
		doc        func(string) map[string]any
		issuerPath string
		inBody     bool   // the secret is expected in the body
		err        string // a DiscoveryError holding this
	}{
		{name: "RFC 8414", paths: []string{"/.well-known/oauth-authorization-server"}, doc: standard(nil)},
		{name: "OpenID only", paths: []string{"/.well-known/openid-configuration"}, doc: standard(nil)},
		{name: "RFC 8414 with an issuer path", paths: []string{"/.well-known/oauth-authorization-server/tenant"}, issuerPath: "/tenant",
			doc: func(issuer string) map[string]any {
				return map[string]any{"issuer": issuer + "/tenant", "token_endpoint": issuer + "/token"}
			}},
		{name: "OpenID with an issuer path", paths: []string{"/tenant/.well-known/openid-configuration"}, issuerPath: "/tenant",
			doc: func(issuer string) map[string]any {
				return map[string]any{"issuer": issuer + "/tenant", "token_endpoint": issuer + "/token"}
			}},
		{name: "basic preferred", paths: []string{"/.well-known/oauth-authorization-server"},
			doc: standard(map[string]any{"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"}})},
		{name: "post only", paths: []string{"/.well-known/oauth-authorization-server"}, inBody: true,
			doc: standard(map[string]any{"token_endpoint_auth_methods_supported": []string{"private_key_jwt", "client_secret_post"}})},
		{name: "another issuer", paths: []string{"/.well-known/oauth-authorization-server"}, err: "is not the configured",
			doc: func(issuer string) map[string]any {
				return map[string]any{"issuer": issuer + "/", "token_endpoint": issuer + "/token"}
			}},
		{name: "no token endpoint", paths: []string{"/.well-known/openid-configuration"}, err: "no token_endpoint",
			doc: func(issuer string) map[string]any { return map[string]any{"issuer": issuer} }},
		{name: "plain http token endpoint elsewhere", paths: []string{"/.well-known/openid-configuration"}, err: "plain http",
			doc: func(issuer string) map[string]any {
				return map[string]any{"issuer": issuer, "token_endpoint": "http://auth.test/token"}
			}},
		{name: "no metadata", paths: nil, doc: standard(nil), err: "openid-configuration"},
		{name: "oversized", paths: []string{"/.well-known/oauth-authorization-server"}, err: "larger than",
			doc: standard(map[string]any{"padding": strings.Repeat("x", maxMetadata)})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			ms := newMetadataServer(t, ts, tc.paths, tc.doc)
			c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.TokenURL = ""; cfg.Issuer = ms.URL + tc.issuerPath })
			_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
			if tc.err != "" {
				var de *DiscoveryError
				require.ErrorAs(t, err, &de)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), ms.URL, "the error names the URL tried")
				assert.Equal(t, FailureDiscovery, ClassifyError(err))
				return
			}
			require.NoError(t, err)
			assert.EqualValues(t, 1, ts.hits.Load())
			assert.Equal(t, tc.inBody, ts.form(0).Get("client_secret") != "")
		})
	}
}

// A client that authenticates with a certificate sends its token
// requests to the mTLS alias of the token endpoint, when the metadata
// names one (RFC 8705 §5); other clients to the token endpoint.
func TestDiscoveryMTLSAlias(t *testing.T) {
	t.Parallel()
	md := &metadata{Issuer: "https://auth.test", TokenEndpoint: "https://auth.test/token"}
	md.MTLSAliases.TokenEndpoint = "https://mtls.auth.test/token"
	for _, tc := range []struct {
		name, cert, alias, want, err string
	}{
		{"certificate", "client.pem", md.MTLSAliases.TokenEndpoint, "https://mtls.auth.test/token", ""},
		{"certificate, no alias", "client.pem", "", "https://auth.test/token", ""},
		{"secret", "", md.MTLSAliases.TokenEndpoint, "https://auth.test/token", ""},
		{"plain http alias", "client.pem", "http://mtls.auth.test/token", "", "mtls_endpoint_aliases.token_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{cfg: Config{Issuer: md.Issuer, TLSCertFile: tc.cert}, clock: clock.NewFake(epoch)}
			m := *md
			m.MTLSAliases.TokenEndpoint = tc.alias
			info, err := newEndpoint(e).use(&m)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrInvalidResponse)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, info.tokenURL)
			assert.Equal(t, md.TokenEndpoint, info.assertionAud, "assertions name the token endpoint, not its alias")
		})
	}
}

func TestDiscoveryIsSharedCachedAndRenewed(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ms := newMetadataServer(t, ts, []string{"/.well-known/oauth-authorization-server"}, func(issuer string) map[string]any {
		return map[string]any{"issuer": issuer, "token_endpoint": issuer + "/token"}
	})
	c, fc := newTestClient(t, ts, func(cfg *Config) { cfg.TokenURL = ""; cfg.Issuer = ms.URL })
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := mustSource(t, c, Audience{Name: fmt.Sprintf("aud-%d", i)}).TokenContext(context.Background())
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, ms.reads.Load(), "one metadata read for every key")
	fc.Advance(rediscoverEvery)
	_, err := mustSource(t, c, Audience{Name: "later"}).TokenContext(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 2, ms.reads.Load(), "read again after a day")
	ms.Close() // the metadata is gone: the old endpoint stays in use
	fc.Advance(rediscoverEvery)
	_, err = mustSource(t, c, Audience{Name: "after"}).TokenContext(context.Background())
	require.Error(t, err, "the token endpoint is on the same server, which is closed")
	var de *DiscoveryError
	assert.False(t, errors.As(err, &de), "a failed re-read keeps the old endpoint: the error is the token request's")
}

func TestMetadataURLs(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{
		"https://auth.test/.well-known/oauth-authorization-server",
		"https://auth.test/.well-known/openid-configuration",
	}, metadataURLs("https://auth.test"))
	assert.Equal(t, []string{
		"https://auth.test/.well-known/oauth-authorization-server/auth",
		"https://auth.test/auth/.well-known/openid-configuration",
	}, metadataURLs("https://auth.test/auth/"))
}
