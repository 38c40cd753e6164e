package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/m2mauth/m2m"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Config.Issuer without TokenURL against node-oidc-provider: the token
// endpoint and the auth style come from its metadata. It accepts either
// style from any client, so the recorder shows which one the SDK chose.
func TestDiscoveryNode(t *testing.T) {
	needNode(t)
	for _, tc := range []struct {
		name, issuer, client string
		basic                bool
	}{
		{"metadata lists client_secret_basic", node.issuer, "m2m-basic", true},
		{"metadata lists only client_secret_post", node.postOnly, "m2m-post", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			mc, err := m2m.New(m2m.Config{Issuer: tc.issuer, ClientID: tc.client, ClientSecret: node.secret,
				HTTPClient: rec.client()})
			require.NoError(t, err)
			defer mc.Close()
			_, claims := decodeJWT(t, token(t, mc, calendar, "event.create"))
			assert.Equal(t, tc.issuer, claims["iss"])
			assert.Equal(t, calendarResource, claims["aud"])
			assert.Equal(t, "event.create", claims["scope"])

			assert.Equal(t, []string{tc.issuer + "/.well-known/oauth-authorization-server"}, rec.metadataRequests())
			// A slow answer may be retried: every attempt is checked.
			reqs := rec.tokenRequests()
			require.NotEmpty(t, reqs)
			for _, r := range reqs {
				assert.Equal(t, tc.issuer+"/token", r.url)
				assert.Equal(t, tc.basic, r.basic, "Authorization: Basic")
				assert.Equal(t, !tc.basic, r.inBody, "client_secret in the body")
			}
		})
	}
}

// Config.Issuer without TokenURL against Hydra, which has only the OpenID
// metadata and lists both secret styles: basic is chosen unless AuthStyle
// says otherwise, and Hydra enforces the registered one.
func TestDiscoveryHydra(t *testing.T) {
	basic, post := createClient(t, "basic"), createClient(t, "post")
	for _, tc := range []struct {
		name  string
		c     client
		style m2m.AuthStyle
		code  string // the expected error code; "" for a token
		hint  string
	}{
		{"basic client, style from metadata", basic, m2m.AuthStyleAuto, "", ""},
		{"post client, style from metadata", post, m2m.AuthStyleAuto, "invalid_client", "AuthStyleInBody"},
		{"post client, AuthStyleInBody", post, m2m.AuthStyleInBody, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			mc, err := m2m.New(m2m.Config{Issuer: hydra.issuer, ClientID: tc.c.id, ClientSecret: tc.c.secret,
				AuthStyle: tc.style, HTTPClient: rec.client()})
			require.NoError(t, err)
			defer mc.Close()
			src, err := mc.Source(event)
			require.NoError(t, err)
			tok, err := src.TokenContext(context.Background())
			if tc.code != "" {
				var te *m2m.TokenError
				require.ErrorAs(t, err, &te)
				assert.Equal(t, tc.code, te.ErrorCode)
				assert.Contains(t, te.Hint, tc.hint)
			} else {
				require.NoError(t, err)
				claims, err := newVerifier(t, "event").Verify(context.Background(), tok.AccessToken)
				require.NoError(t, err)
				assert.Equal(t, tc.c.id, claims.ClientID)
			}
			// Hydra serves no RFC 8414 document: the OpenID one is used.
			assert.Equal(t, []string{hydra.issuer + "/.well-known/oauth-authorization-server",
				hydra.issuer + "/.well-known/openid-configuration"}, rec.metadataRequests())
			// Hydra's first token request of a run creates its signing
			// keys and may be slow enough to be retried: every attempt is
			// checked.
			reqs := rec.tokenRequests()
			require.NotEmpty(t, reqs)
			for _, r := range reqs {
				assert.Equal(t, hydra.public+"/oauth2/token", r.url)
				assert.Equal(t, tc.style != m2m.AuthStyleInBody, r.basic)
			}
		})
	}
}

// An issuer that is not the server's own, or that nothing serves, is a
// *m2m.DiscoveryError naming the URL tried, and no token request is sent.
func TestDiscoveryWrongIssuer(t *testing.T) {
	port, err := freePort()
	require.NoError(t, err)
	nothing := fmt.Sprintf("http://127.0.0.1:%d", port)
	tests := []struct {
		name, server, issuer string
		url                  string // the URL the error names
		status               int
		invalid              bool // wraps m2m.ErrInvalidResponse: the metadata's issuer differs
	}{
		{"node, trailing slash", "node", node.issuer + "/",
			node.issuer + "/.well-known/oauth-authorization-server", http.StatusOK, true},
		{"node, path it does not serve", "node", node.issuer + "/tenant",
			node.issuer + "/tenant/.well-known/openid-configuration", http.StatusNotFound, false},
		{"hydra, path it does not serve", "hydra", strings.TrimSuffix(hydra.issuer, "/") + "/tenant",
			strings.TrimSuffix(hydra.issuer, "/") + "/tenant/.well-known/openid-configuration", http.StatusNotFound, false},
		{"nothing listening", "", nothing,
			nothing + "/.well-known/oauth-authorization-server", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.server == "node" {
				needNode(t)
			}
			var rec recorder
			mc, err := m2m.New(m2m.Config{Issuer: tc.issuer, ClientID: "m2m-basic", ClientSecret: "s3cret-never-shown",
				HTTPClient: rec.client()})
			require.NoError(t, err)
			defer mc.Close()
			src, err := mc.Source(calendar)
			require.NoError(t, err)
			_, err = src.TokenContext(context.Background())
			var de *m2m.DiscoveryError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tc.url, de.URL)
			assert.Equal(t, tc.status, de.StatusCode)
			assert.Equal(t, tc.invalid, errors.Is(err, m2m.ErrInvalidResponse))
			assert.Contains(t, err.Error(), tc.url)
			assert.NotContains(t, err.Error(), "s3cret-never-shown")
			assert.Empty(t, rec.tokenRequests())
		})
	}
}
