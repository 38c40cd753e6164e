package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hydra's access tokens say typ "JWT": ProfileHydra takes them, and
// RFC 9068 as written (typ at+jwt) refuses them.
func TestVerifyHydraProfiles(t *testing.T) {
	c := createClient(t, "basic")
	tok := token(t, newClient(t, c, nil), event, "event.create")
	ctx := context.Background()

	claims, err := newVerifier(t, "event").Verify(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, verify.KindClientCredentials, claims.Kind)
	assert.Equal(t, c.id, claims.ClientID)

	strict, err := verify.New(ctx, verify.Config{JWKSURL: hydra.public + "/.well-known/jwks.json", Issuer: hydra.issuer,
		Audience: "event", Profile: verify.ProfileRFC9068})
	require.NoError(t, err)
	defer strict.Close()
	_, err = strict.Verify(ctx, tok)
	require.ErrorIs(t, err, verify.ErrTokenType)
	assert.Contains(t, err.Error(), `token has "JWT"`)
}

// Issuer alone is enough: the JWKS comes from Hydra's OpenID metadata.
func TestVerifyHydraDiscovery(t *testing.T) {
	c := createClient(t, "basic")
	tok := token(t, newClient(t, c, nil), event, "event.create")
	ctx := context.Background()
	v, err := verify.New(ctx, verify.Config{Issuer: hydra.issuer, Audience: "event", Profile: verify.ProfileHydra})
	require.NoError(t, err)
	defer v.Close()
	claims, err := v.Verify(ctx, tok)
	require.NoError(t, err)
	assert.True(t, claims.HasScope("event.create"))

	_, err = verify.New(ctx, verify.Config{Issuer: hydra.issuer + "/", Audience: "event", Profile: verify.ProfileHydra})
	require.Error(t, err, "the metadata's issuer must equal the configured one exactly")
}

// A token Hydra issued in an authorization-code flow for a user is
// user-delegated; a machine-only verifier refuses it.
func TestVerifyHydraUserDelegated(t *testing.T) {
	ctx := context.Background()
	tok, _ := userToken(t, hydraServer{public: hydra.public, admin: hydra.admin, issuer: hydra.issuer}, "event.create")

	claims, err := newVerifier(t, "event").Verify(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, verify.KindUserDelegated, claims.Kind)
	assert.Equal(t, "user-1", claims.Subject)

	machines, err := verify.New(ctx, verify.Config{JWKSURL: hydra.public + "/.well-known/jwks.json", Issuer: hydra.issuer,
		Audience: "event", Profile: verify.ProfileHydra, ClientCredentialsOnly: true})
	require.NoError(t, err)
	defer machines.Close()
	_, err = machines.Verify(ctx, tok)
	require.ErrorIs(t, err, verify.ErrTokenType)
}

// userToken runs Hydra's authorization-code flow for the user "user-1",
// accepting login and consent through the admin API, and returns the
// access token (for audience event) and, when scope holds offline_access,
// the refresh token.
func userToken(t *testing.T, srv hydraServer, scope string) (access, refresh string) {
	t.Helper()
	ctx := context.Background()
	redirect := "http://127.0.0.1:1/callback"
	var cl struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	require.NoError(t, adminAt(ctx, srv.admin, http.MethodPost, "/admin/clients", map[string]any{
		"client_name": t.Name(), "grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"redirect_uris": []string{redirect}, "scope": scope, "audience": []string{"event"},
		"token_endpoint_auth_method": "client_secret_basic",
	}, http.StatusCreated, &cl))

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// follow GETs u and returns where it redirects to.
	follow := func(u string) *url.URL {
		t.Helper()
		resp, err := browser.Get(u)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Contains(t, []int{http.StatusFound, http.StatusSeeOther}, resp.StatusCode, u)
		loc, err := resp.Location()
		require.NoError(t, err)
		return loc
	}
	// accept PUTs an acceptance to the admin API and returns redirect_to.
	accept := func(kind, challenge string, body any) string {
		t.Helper()
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		require.NoError(t, adminAt(ctx, srv.admin, http.MethodPut,
			"/admin/oauth2/auth/requests/"+kind+"/accept?"+kind+"_challenge="+url.QueryEscape(challenge), body, http.StatusOK, &out))
		return out.RedirectTo
	}

	q := url.Values{"client_id": {cl.ClientID}, "response_type": {"code"}, "scope": {scope},
		"redirect_uri": {redirect}, "state": {"state-12345678"}, "audience": {"event"}}
	login := follow(srv.public + "/oauth2/auth?" + q.Encode())
	next := accept("login", login.Query().Get("login_challenge"), map[string]any{"subject": "user-1"})
	consent := follow(next)
	next = accept("consent", consent.Query().Get("consent_challenge"), map[string]any{
		"grant_scope": strings.Fields(scope), "grant_access_token_audience": []string{"event"}})
	code := follow(next).Query().Get("code")
	require.NotEmpty(t, code)

	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.public+"/oauth2/token", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(cl.ClientID), url.QueryEscape(cl.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	return tok.AccessToken, tok.RefreshToken
}

// adminAt sends a JSON request to the admin API at base.
func adminAt(ctx context.Context, base, method, path string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
