// Package interop proves the m2m SDK, its verifier and its CLI against a
// real Ory Hydra v2.3.0 (the OAuth2 engine under SuperTokens).
package interop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const allScopes = "event.view event.create event.update event.delete file.view file.create"

type client struct{ id, secret string }

// createClient registers a client through the m2m CLI.
func createClient(t *testing.T, method string, extra ...string) client {
	t.Helper()
	args := append([]string{"clients", "create", "--hydra-admin-url", hydra.admin, "--name", t.Name(),
		"--scope", allScopes, "--audience", "event", "--audience", "file", "--auth-method", method}, extra...)
	out := cli(t, args...)
	m := regexp.MustCompile(`client_id: (\S+)\nclient_secret: (\S+)`).FindStringSubmatch(out)
	require.Len(t, m, 3, out)
	return client{m[1], m[2]}
}

func newClient(t *testing.T, c client, mod func(*m2m.Config)) *m2m.Client {
	t.Helper()
	cfg := m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: c.id, ClientSecret: c.secret}
	if mod != nil {
		mod(&cfg)
	}
	mc, err := m2m.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { mc.Close() })
	return mc
}

func newVerifier(t *testing.T, audience string) *verify.Verifier {
	t.Helper()
	v, err := verify.New(context.Background(), verify.Config{
		JWKSURL:  hydra.public + "/.well-known/jwks.json",
		Issuer:   hydra.issuer,
		Audience: audience,
		Profile:  verify.ProfileHydra,
		Leeway:   -1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v
}

func token(t *testing.T, mc *m2m.Client, a m2m.Audience, scopes ...string) string {
	t.Helper()
	src, err := mc.Source(a)
	require.NoError(t, err)
	ctx := context.Background()
	if len(scopes) > 0 {
		ctx = m2m.WithScopes(ctx, scopes...)
	}
	tok, err := src.TokenContext(ctx)
	require.NoError(t, err)
	return tok.AccessToken
}

var (
	event = m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}}
	file  = m2m.Audience{Name: "file", Scopes: []string{"file.view"}}
)

// 1. Clients from the CLI, one token per audience with only its scopes.
func TestTokensPerAudience(t *testing.T) {
	for _, method := range []string{"basic", "post"} {
		t.Run(method, func(t *testing.T) {
			c := createClient(t, method)
			mc := newClient(t, c, func(cfg *m2m.Config) {
				if method == "post" {
					cfg.AuthStyle = m2m.AuthStyleInBody
				}
			})
			for _, tc := range []struct {
				aud   m2m.Audience
				scope string
			}{{event, "event.create"}, {file, "file.view"}} {
				claims, err := newVerifier(t, tc.aud.Name).Verify(context.Background(), token(t, mc, tc.aud, tc.scope))
				require.NoError(t, err)
				assert.Equal(t, []string{tc.aud.Name}, claims.Audience)
				assert.Equal(t, []string{tc.scope}, claims.Scopes)
				assert.Equal(t, c.id, claims.ClientID)
				assert.Equal(t, hydra.issuer, claims.Issuer)
			}
		})
	}
}

// 2. A secret that Basic encoding must escape.
func TestSecretNeedingEscapes(t *testing.T) {
	secret := "p:a%ss w+rd/ü=€" + fmt.Sprint(time.Now().UnixNano())
	var created struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, admin(context.Background(), http.MethodPost, "/admin/clients", map[string]any{
		"client_name": "escapes", "client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": allScopes, "audience": []string{"event"}, "token_endpoint_auth_method": "client_secret_basic",
	}, http.StatusCreated, &created))
	mc := newClient(t, client{created.ClientID, secret}, nil)
	_, err := newVerifier(t, "event").Verify(context.Background(), token(t, mc, event))
	require.NoError(t, err)
}

// 3. Hydra's errors surface as *m2m.TokenError with its error code.
func TestErrors(t *testing.T) {
	basic := createClient(t, "basic")
	post := createClient(t, "post")
	tests := []struct {
		name string
		c    client
		mod  func(*m2m.Config)
		aud  m2m.Audience
		code string
		hint string
	}{
		{"auth method mismatch", post, nil, event, "invalid_client", "AuthStyleInBody"},
		{"auth method mismatch, other way", basic, func(c *m2m.Config) { c.AuthStyle = m2m.AuthStyleInBody }, event, "invalid_client", "AuthStyleBasic"},
		{"wrong secret", client{basic.id, "wrong-secret"}, nil, event, "invalid_client", ""},
		{"unknown client", client{"no-such-client", "secret"}, nil, event, "invalid_client", ""},
		{"scope not granted", basic, nil, m2m.Audience{Name: "event", Scopes: []string{"event.purge"}}, "invalid_scope", ""},
		{"audience not allowed", basic, nil, m2m.Audience{Name: "billing", Scopes: []string{"event.view"}}, "invalid_request", ""},
		{"JSON body", basic, func(c *m2m.Config) { c.Encoding = m2m.EncodingJSON }, event, "invalid_request", "EncodingForm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := newClient(t, tc.c, tc.mod).Source(tc.aud)
			require.NoError(t, err)
			_, err = src.TokenContext(context.Background())
			var te *m2m.TokenError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tc.code, te.ErrorCode, te.Error())
			assert.Contains(t, te.Hint, tc.hint)
			assert.NotContains(t, err.Error(), tc.c.secret)
		})
	}
}

// 4. verify on Hydra's tokens, including a key rotation through the
// unknown-kid refetch.
func TestVerifyHydraTokens(t *testing.T) {
	c := createClient(t, "basic")
	ctx := context.Background()
	v := newVerifier(t, "event")
	tok := token(t, newClient(t, c, nil), event, "event.create")
	claims, err := v.Verify(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, verify.KindClientCredentials, claims.Kind, "sub is the client")

	_, err = newVerifier(t, "file").Verify(ctx, tok)
	require.ErrorIs(t, err, verify.ErrAudience)

	protected := v.Middleware("event.delete")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest(http.MethodDelete, "/events/1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	protected.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`)

	// Rotate: a new key in the access-token set signs from now on.
	oldKid := kid(t, tok)
	fetches := v.JWKSFetches()
	time.Sleep(1100 * time.Millisecond) // Hydra orders keys by a created_at of whole seconds
	require.NoError(t, admin(ctx, http.MethodPost, "/admin/keys/hydra.jwt.access-token",
		map[string]string{"alg": "RS256", "use": "sig", "kid": "rotated-" + fmt.Sprint(time.Now().UnixNano())}, http.StatusCreated, nil))
	fresh := token(t, newClient(t, c, nil), event, "event.create")
	require.NotEqual(t, oldKid, kid(t, fresh), "Hydra signs with the new key")
	_, err = v.Verify(ctx, fresh)
	require.NoError(t, err, "the new kid is fetched without a restart")
	assert.Equal(t, fetches+1, v.JWKSFetches())
}

// kid returns the kid header of a JWT.
func kid(t *testing.T, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	require.NoError(t, err)
	var h struct{ Kid string }
	require.NoError(t, json.Unmarshal(b, &h))
	return h.Kid
}

// 5. Tokens living 3 s, used continuously through the Transport: refreshed
// before expiry, no request ever answered 401.
func TestShortLivedTokensUnderLoad(t *testing.T) {
	c := createClient(t, "basic", "--token-lifetime", "3s")
	v := newVerifier(t, "event")
	var ok, unauthorized atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	svc := httptest.NewServer(v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl, _ := verify.ClaimsFromContext(r.Context())
		mu.Lock()
		seen[cl.ID] = true
		mu.Unlock()
	})))
	defer svc.Close()
	mc := newClient(t, c, nil)
	src, err := mc.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: svc.URL})
	require.NoError(t, err)
	hc := &http.Client{Transport: m2m.NewTransport(nil, src)}
	defer hc.CloseIdleConnections()

	deadline := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := hc.Post(svc.URL+"/events", "application/json", nil)
				if !assert.NoError(t, err) {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					unauthorized.Add(1)
				} else {
					ok.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests, %d tokens", ok.Load(), len(seen))
	assert.Zero(t, unauthorized.Load(), "no request reached the service with an expired token")
	assert.Greater(t, ok.Load(), int64(100))
	assert.GreaterOrEqual(t, len(seen), 3, "tokens were renewed")
}

// 6. The CLI's token against Hydra passes the CLI's verify.
func TestCLITokenAndVerify(t *testing.T) {
	c := createClient(t, "basic")
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(c.secret), 0o600))
	tok := strings.TrimSpace(cli(t, "token", "--token-url", hydra.public+"/oauth2/token", "--client-id", c.id,
		"--client-secret-file", secretFile, "--audience", "event", "--scope", "event.create"))
	out := cli(t, "verify", "--profile", "hydra", "--jwks-url", hydra.public+"/.well-known/jwks.json",
		"--issuer", hydra.issuer, "--audience", "event", "--scope", "event.create", tok)
	assert.Contains(t, out, "valid: client_id="+c.id)
	_, err := cliErr("verify", "--profile", "hydra", "--jwks-url", hydra.public+"/.well-known/jwks.json",
		"--audience", "event", "--scope", "event.delete", tok)
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, cli(t, "clients", "list", "--hydra-admin-url", hydra.admin), c.id)
}
