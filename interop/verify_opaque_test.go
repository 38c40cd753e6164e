package interop

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVerifyOpaqueHydra proves RFC 7662 introspection against a second
// Hydra that issues opaque access tokens (strategies.access_token opaque):
// the answer must say active and pass the audience, scope and issuer
// rules; one request per token is in flight however many callers ask;
// user-delegated and refresh tokens are told apart; a revoked token is
// refused once the cached answer is not reused.
func TestVerifyOpaqueHydra(t *testing.T) {
	srv, stop, err := runHydra(os.Getenv("HYDRA_BIN"), "STRATEGIES_ACCESS_TOKEN=opaque")
	require.NoError(t, err)
	t.Cleanup(stop)
	ctx := context.Background()

	// Count the introspection requests on their way to Hydra's admin API.
	admin, err := url.Parse(srv.admin)
	require.NoError(t, err)
	var introspections atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(admin)
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admin/oauth2/introspect" {
			introspections.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counted.Close)
	newOpaqueVerifier := func(t *testing.T, mod func(*verify.Config)) *verify.Verifier {
		cfg := verify.Config{IntrospectionURL: counted.URL + "/admin/oauth2/introspect", IntrospectionClientID: "calendar",
			IntrospectionClientSecret: "calendar-secret", Issuer: srv.issuer, Audience: "event", Profile: verify.ProfileHydra}
		if mod != nil {
			mod(&cfg)
		}
		v, err := verify.New(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { v.Close() })
		return v
	}

	var cl struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	require.NoError(t, adminAt(ctx, srv.admin, http.MethodPost, "/admin/clients", map[string]any{
		"client_name": "task-service", "grant_types": []string{"client_credentials"}, "scope": allScopes,
		"audience": []string{"event", "file"}, "token_endpoint_auth_method": "client_secret_basic",
	}, http.StatusCreated, &cl))
	mc, err := m2m.New(m2m.Config{TokenURL: srv.public + "/oauth2/token", ClientID: cl.ClientID, ClientSecret: cl.ClientSecret})
	require.NoError(t, err)
	t.Cleanup(func() { mc.Close() })
	tok := token(t, mc, event, "event.create")
	require.True(t, strings.HasPrefix(tok, "ory_at_"), "Hydra issues opaque tokens")

	t.Run("a client-credentials token", func(t *testing.T) {
		v := newOpaqueVerifier(t, nil)
		claims, err := v.Verify(ctx, tok)
		require.NoError(t, err)
		assert.Equal(t, verify.KindClientCredentials, claims.Kind)
		assert.Equal(t, cl.ClientID, claims.ClientID)
		assert.Equal(t, []string{"event.create"}, claims.Scopes)
		assert.Contains(t, claims.Audience, "event")
		assert.False(t, claims.ExpiresAt.IsZero())
	})
	t.Run("the wrong audience", func(t *testing.T) {
		_, err := newOpaqueVerifier(t, func(c *verify.Config) { c.Audience = "calendar" }).Verify(ctx, tok)
		require.ErrorIs(t, err, verify.ErrAudience)
	})
	t.Run("a missing scope", func(t *testing.T) {
		v := newOpaqueVerifier(t, nil)
		h := v.Middleware("event.delete")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		req := httptest.NewRequest(http.MethodDelete, "/events/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusForbidden, rec.Code)
	})
	t.Run("an unknown token", func(t *testing.T) {
		_, err := newOpaqueVerifier(t, nil).Verify(ctx, "ory_at_nothing.here")
		require.ErrorIs(t, err, verify.ErrInactive)
	})
	t.Run("one introspection in flight per token", func(t *testing.T) {
		v := newOpaqueVerifier(t, nil)
		fresh := token(t, newHydraClient(t, srv, cl.ClientID, cl.ClientSecret), file, "file.view")
		fileV := newOpaqueVerifier(t, func(c *verify.Config) { c.Audience = "file" })
		before := introspections.Load()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := fileV.Verify(ctx, fresh)
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		assert.EqualValues(t, 1, introspections.Load()-before)
		_, err := fileV.Verify(ctx, fresh)
		require.NoError(t, err)
		assert.EqualValues(t, 1, introspections.Load()-before, "the answer is reused")
		_, err = v.Verify(ctx, fresh)
		require.ErrorIs(t, err, verify.ErrAudience, "another verifier, another audience")
	})
	t.Run("user-delegated and refresh tokens", func(t *testing.T) {
		access, refresh := userToken(t, srv, "event.create offline_access")
		require.NotEmpty(t, refresh)
		v := newOpaqueVerifier(t, nil)
		claims, err := v.Verify(ctx, access)
		require.NoError(t, err)
		assert.Equal(t, verify.KindUserDelegated, claims.Kind)
		assert.Equal(t, "user-1", claims.Subject)
		_, err = newOpaqueVerifier(t, func(c *verify.Config) { c.ClientCredentialsOnly = true }).Verify(ctx, access)
		require.ErrorIs(t, err, verify.ErrTokenType)
		_, err = v.Verify(ctx, refresh)
		require.ErrorIs(t, err, verify.ErrTokenType, "a refresh token is not an access token")
	})
	t.Run("a revoked token", func(t *testing.T) {
		c := newHydraClient(t, srv, cl.ClientID, cl.ClientSecret)
		revoked := token(t, c, event, "event.view")
		v := newOpaqueVerifier(t, func(c *verify.Config) { c.IntrospectionCacheTTL = -1 })
		_, err := v.Verify(ctx, revoked)
		require.NoError(t, err)
		form := url.Values{"token": {revoked}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.public+"/oauth2/revoke", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(cl.ClientID), url.QueryEscape(cl.ClientSecret))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		_, err = v.Verify(ctx, revoked)
		require.ErrorIs(t, err, verify.ErrInactive)
	})
}

// newHydraClient is an m2m client of the Hydra at srv.
func newHydraClient(t *testing.T, srv hydraServer, id, secret string) *m2m.Client {
	t.Helper()
	mc, err := m2m.New(m2m.Config{TokenURL: srv.public + "/oauth2/token", ClientID: id, ClientSecret: secret})
	require.NoError(t, err)
	t.Cleanup(func() { mc.Close() })
	return mc
}
