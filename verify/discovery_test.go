package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metadataServer serves authorization-server metadata at the paths set,
// the JWKS, and an introspection endpoint.
func metadataServer(t *testing.T, paths func(base string) map[string]any) (*httptest.Server, *introServer) {
	t.Helper()
	keys(t)
	jwks := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	intro := newIntroServer(t)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md, ok := paths(srv.URL)[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if m, isMap := md.(map[string]any); isMap {
			if _, set := m["jwks_uri"]; !set {
				m["jwks_uri"] = jwks.URL + "/jwks.json"
			}
			if _, set := m["introspection_endpoint"]; !set {
				m["introspection_endpoint"] = intro.URL + "/introspect"
			}
		}
		json.NewEncoder(w).Encode(md)
	}))
	t.Cleanup(srv.Close)
	return srv, intro
}

// TestDiscovery: Issuer alone is enough when the server publishes OpenID
// or RFC 8414 metadata whose issuer is exactly the configured one (issue
// item 9).
func TestDiscovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		paths func(base string) map[string]any
		err   string
	}{
		{"OpenID Connect", func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": base + "/auth"}}
		}, ""},
		{"RFC 8414", func(base string) map[string]any {
			return map[string]any{"/.well-known/oauth-authorization-server/auth": map[string]any{"issuer": base + "/auth"}}
		}, ""},
		{"issuer with a trailing slash", func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": base + "/auth/"}}
		}, "want \"http://"},
		{"another issuer", func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": "https://evil.test/auth"}}
		}, `names issuer "https://evil.test/auth"`},
		{"jwks_uri over plain http elsewhere", func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": base + "/auth", "jwks_uri": "http://evil.test/jwks"}}
		}, "jwks_uri is plain http"},
		{"no jwks_uri", func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": base + "/auth", "jwks_uri": ""}}
		}, "has no jwks_uri"},
		{"no metadata", func(string) map[string]any { return nil }, "no issuer metadata"},
		{"not JSON", func(string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": "nope"}
		}, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := metadataServer(t, tc.paths)
			v, err := newVerifier(context.Background(), Config{Issuer: srv.URL + "/auth", Audience: testAudience}, clock.NewFake(now))
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			defer v.Close()
			_, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["iss"] = srv.URL + "/auth" })))
			require.NoError(t, err)
			assert.Nil(t, v.intro, "no introspection without credentials")
		})
	}
	t.Run("introspection endpoint", func(t *testing.T) {
		t.Parallel()
		srv, intro := metadataServer(t, func(base string) map[string]any {
			return map[string]any{"/auth/.well-known/openid-configuration": map[string]any{"issuer": base + "/auth"}}
		})
		a := active()
		a["iss"] = srv.URL + "/auth"
		intro.set("opaque", a)
		v, err := newVerifier(context.Background(), Config{Issuer: srv.URL + "/auth", Audience: testAudience,
			IntrospectionClientID: introID, IntrospectionClientSecret: introSecret}, clock.NewFake(now))
		require.NoError(t, err)
		defer v.Close()
		_, err = v.Verify(context.Background(), "opaque")
		require.NoError(t, err)
		assert.EqualValues(t, 1, intro.hits.Load())
	})
}

// TestConfigHidesSecret: no fmt verb, slog or JSON shows the
// introspection secret.
func TestConfigHidesSecret(t *testing.T) {
	t.Parallel()
	cfg := Config{IntrospectionURL: "https://auth.test/i", IntrospectionClientID: "rs", IntrospectionClientSecret: "very-secret-value", Audience: "event"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "cfg", cfg)
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	v := &Verifier{cfg: cfg}
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v %#v %s %q", cfg, cfg, cfg, cfg), fmt.Sprintf("%v %+v %#v", v, v, v), logs.String(), string(j)} {
		assert.NotContains(t, out, "very-secret")
		assert.Contains(t, out, "auth.test")
	}
}
