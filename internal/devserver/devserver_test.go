package devserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testmain.Run(m) }

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), ""))
	t.Cleanup(func() { s.Close() })
	return s
}

var task = Client{ClientID: "task", ClientSecret: "task-secret", ClientName: "Task Service",
	Scope: "event.view event.create file.view", Audience: []string{"event", "file"}}

func post(t *testing.T, u string, header http.Header, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	postClient := task
	postClient.ClientID, postClient.TokenEndpointAuthMethod = "poster", methodPost
	s := start(t, Options{Clients: []Client{task, postClient}})
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	basicForm := form.Clone()
	basicForm.Set("Authorization", "Basic "+b64("task:task-secret"))
	jsonH := http.Header{"Content-Type": {"application/json"}}

	tests := []struct {
		name   string
		header http.Header
		body   string
		status int
		code   string
		desc   string
	}{
		{"form basic", basicForm, "grant_type=client_credentials&scope=event.create&audience=event", 200, "", ""},
		{"json post", jsonH, `{"grant_type":"client_credentials","client_id":"poster","client_secret":"task-secret","scope":"file.view","audience":"file"}`, 200, "", ""},
		{"json scope array crashes like supertokens", jsonH, `{"grant_type":"client_credentials","client_id":"poster","client_secret":"task-secret","scope":["file.view"]}`, 500, "", ""},
		{"post to a basic client", form, "grant_type=client_credentials&client_id=task&client_secret=task-secret", 401, "invalid_client", "supports client authentication method 'client_secret_basic', but method 'client_secret_post' was requested"},
		{"wrong secret", form, "grant_type=client_credentials&client_id=poster&client_secret=nope", 401, "invalid_client", "Client authentication failed"},
		{"no auth", form, "grant_type=client_credentials", 401, "invalid_client", ""},
		{"unknown scope", basicForm, "grant_type=client_credentials&scope=event.delete", 400, "invalid_scope", "not allowed to request scope 'event.delete'"},
		{"unknown audience", basicForm, "grant_type=client_credentials&audience=billing", 400, "invalid_request", "audience 'billing'"},
		{"wrong grant", basicForm, "grant_type=password", 400, "unsupported_grant_type", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, m := post(t, s.TokenURL(), tc.header, tc.body)
			assert.Equal(t, tc.status, status)
			if tc.status == 200 {
				assert.Equal(t, "bearer", m["token_type"])
				assert.Equal(t, "OK", m["status"])
				assert.EqualValues(t, 3600, m["expires_in"])
				assert.NotEmpty(t, m["access_token"])
				return
			}
			if tc.code != "" {
				assert.Equal(t, tc.code, m["error"])
				assert.Contains(t, m["error_description"], tc.desc)
			}
		})
	}
	t.Cleanup(func() { assert.EqualValues(t, len(tests), s.TokenRequests()) })
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The SDK and the verifier agree with the dev server end to end.
func TestTokensVerifyWithSDK(t *testing.T) {
	t.Parallel()
	short := task
	short.AccessTokenLifespan = "90s"
	s := start(t, Options{Clients: []Client{short}})
	c, err := m2m.New(m2m.Config{TokenURL: s.TokenURL(), ClientID: "task", ClientSecret: "task-secret"})
	require.NoError(t, err)
	defer c.Close()
	src, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}})
	require.NoError(t, err)
	tok, err := src.TokenContext(m2m.WithScopes(context.Background(), "event.create"))
	require.NoError(t, err)
	assert.True(t, tok.ExpiresIn > 60 && tok.ExpiresIn <= 90, "expires_in %d: the client's 90 s", tok.ExpiresIn)

	v, err := verify.New(context.Background(), verify.Config{JWKSURL: s.JWKSURL(), Issuer: s.Issuer(), Audience: "event"})
	require.NoError(t, err)
	defer v.Close()
	cl, err := v.Verify(context.Background(), tok.AccessToken)
	require.NoError(t, err)
	assert.Equal(t, []string{"event.create"}, cl.Scopes)
	assert.Equal(t, []string{"event"}, cl.Audience)
	assert.Equal(t, "task", cl.ClientID)
	assert.Equal(t, "task", cl.Subject)
	assert.Equal(t, verify.KindClientCredentials, cl.Kind)
	assert.Equal(t, s.URL()+"/auth", cl.Issuer)
	var raw map[string]any
	require.NoError(t, cl.Decode(&raw))
	for _, claim := range []string{"aud", "client_id", "exp", "iat", "iss", "jti", "nbf", "scp", "sub", "stt", "gid"} {
		assert.Contains(t, raw, claim)
	}
	assert.Len(t, raw, 11, "exactly SuperTokens' client-credentials claims")

	// After a rotation without the old key, new tokens verify (unknown kid
	// refetch) and the old one does not once the JWKS is refetched.
	_, err = s.RotateKey(false)
	require.NoError(t, err)
	c2, err := m2m.New(m2m.Config{TokenURL: s.TokenURL(), ClientID: "task", ClientSecret: "task-secret"})
	require.NoError(t, err)
	defer c2.Close()
	src2, _ := c2.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view"}})
	tok2, err := src2.TokenContext(context.Background())
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), tok2.AccessToken)
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), tok.AccessToken)
	require.ErrorIs(t, err, verify.ErrUnknownKey)
}

func TestClientAPI(t *testing.T) {
	t.Parallel()
	s := start(t, Options{APIKey: "k"})
	jsonH := http.Header{"Content-Type": {"application/json"}}
	status, m := post(t, s.URL()+"/recipe/oauth/clients", jsonH, `{"clientName":"x"}`)
	assert.Equal(t, 401, status, "no api key")
	assert.Equal(t, "Invalid API key", m["message"])
	wrong := jsonH.Clone()
	wrong.Set("api-key", "nope")
	status, _ = post(t, s.URL()+"/recipe/oauth/clients", wrong, `{"clientName":"x"}`)
	assert.Equal(t, 401, status)

	ok := jsonH.Clone()
	ok.Set("api-key", "k")
	status, m = post(t, s.URL()+"/recipe/oauth/clients", ok, `{"clientName":"Task Service","grantTypes":["client_credentials"],"scope":"event.view","audience":["event"]}`)
	require.Equal(t, 200, status)
	assert.Equal(t, "OK", m["status"])
	id, _ := m["clientId"].(string)
	assert.NotEmpty(t, id)
	assert.NotEmpty(t, m["clientSecret"])
	assert.Equal(t, "client_secret_basic", m["tokenEndpointAuthMethod"])

	status, _ = post(t, s.URL()+"/recipe/oauth/clients", ok, `{"clientName":"x","tokenEndpointAuthMethod":"private_key_jwt"}`)
	assert.Equal(t, 400, status)

	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/recipe/oauth/clients/list", nil)
	req.Header.Set("api-key", "k")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var list struct{ Clients []Client }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list.Clients, 1)
	assert.Empty(t, list.Clients[0].ClientSecret, "list never shows secrets")

	status, m = post(t, s.URL()+"/recipe/oauth/clients/remove", ok, `{"clientId":"`+id+`"}`)
	assert.Equal(t, 200, status)
	assert.Equal(t, true, m["didExist"])
	status, _ = post(t, s.URL()+"/recipe/oauth/clients/remove", ok, `{}`)
	assert.Equal(t, 400, status)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Clients: []Client{task}})
	s.SetFaults(Faults{FailureRate: 1})
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	status, m := post(t, s.TokenURL(), h, url.Values{"grant_type": {"client_credentials"}}.Encode())
	assert.Equal(t, 503, status)
	assert.Equal(t, "temporarily_unavailable", m["error"])

	s.SetFaults(Faults{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), bytes.NewReader(nil))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return s.TokenRequests() == 2 }, 5*time.Second, time.Millisecond)
	cancel()
	assert.Error(t, <-done)
}

func TestRegisterChecks(t *testing.T) {
	t.Parallel()
	s, err := New(Options{})
	require.NoError(t, err)
	assert.Len(t, s.APIKey(), 32)
	_, err = s.Register(Client{ClientID: "a"})
	require.NoError(t, err)
	_, err = s.Register(Client{ClientID: "a"})
	assert.ErrorContains(t, err, "exists")
	_, err = s.Register(Client{AccessTokenLifespan: "soon"})
	assert.ErrorContains(t, err, "not a positive duration")
	assert.NoError(t, s.Close())
}

// Handle adds routes beside the server's own, before or after Start.
func TestHandle(t *testing.T) {
	t.Parallel()
	s, err := New(Options{})
	require.NoError(t, err)
	s.Handle("GET /before", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "before") }))
	require.NoError(t, s.Start(context.Background(), ""))
	t.Cleanup(func() { s.Close() })
	s.Handle("GET /after", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "after") }))
	for _, path := range []string{"before", "after"} {
		resp, err := http.Get(s.URL() + "/" + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, path, string(b))
	}
	resp, err := http.Get(s.JWKSURL())
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the server's own routes are still served")
	assert.Panics(t, func() { s.Handle("GET /auth/jwt/jwks.json", http.NotFoundHandler()) }, "a route conflicting with the server's")
}
