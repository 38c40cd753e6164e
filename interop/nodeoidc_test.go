package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// node is the node-oidc-provider (interop/oidcprovider/server.mjs) the
// tests run against, started by TestMain.
var node struct {
	issuer   string // clients m2m-basic and m2m-post
	postOnly string // issuer of the provider whose metadata lists only client_secret_post
	jwks     string // the jwks_uri of issuer
	secret   string // both clients' secret
}

// The resource servers server.mjs knows.
const (
	calendarResource = "https://calendar.test/" // event.view event.create event.update
	filesResource    = "https://files.test/"    // file.view file.create
	shortResource    = "https://short.test/"    // event.view, tokens living nodeShortTTL
	opaqueResource   = "https://opaque.test/"   // event.view, opaque tokens
	nodeShortTTL     = 5 * time.Second
)

// needNode skips t when TestMain did not start node-oidc-provider.
func needNode(t *testing.T) {
	t.Helper()
	if node.issuer == "" {
		t.Skip("OIDC_PROVIDER_DIR is not set")
	}
}

// startNode runs server.mjs with the oidc-provider installed in dir, in a
// process group of its own, and waits until both providers answer their
// discovery document.
func startNode(dir string) (stop func(), err error) {
	script, err := filepath.Abs(filepath.Join("oidcprovider", "server.mjs"))
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	postOnlyPort, err := freePort()
	if err != nil {
		return nil, err
	}
	// Reserved characters exercise both encodings of the secret.
	b := make([]byte, 12)
	rand.Read(b)
	node.secret = "n:o%d e+/" + hex.EncodeToString(b)
	node.issuer = fmt.Sprintf("http://127.0.0.1:%d", port)
	node.postOnly = fmt.Sprintf("http://127.0.0.1:%d", postOnlyPort)

	var logs bytes.Buffer
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(),
		"OIDC_PROVIDER_DIR="+dir,
		fmt.Sprintf("PORT=%d", port),
		fmt.Sprintf("POST_ONLY_PORT=%d", postOnlyPort),
		"CLIENT_SECRET="+node.secret,
		fmt.Sprintf("SHORT_TTL=%d", int(nodeShortTTL.Seconds())),
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Its own process group, killed with the test binary whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		node.issuer = ""
		return nil, fmt.Errorf("starting node-oidc-provider: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pgid := cmd.Process.Pid
	stop = func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, issuer := range []string{node.issuer, node.postOnly} {
		for {
			var md struct {
				Issuer  string `json:"issuer"`
				JWKSURI string `json:"jwks_uri"`
			}
			if getJSON(issuer+"/.well-known/openid-configuration", &md) == nil {
				if md.Issuer != issuer {
					stop()
					return nil, fmt.Errorf("node-oidc-provider says its issuer is %q, not %q", md.Issuer, issuer)
				}
				if issuer == node.issuer {
					node.jwks = md.JWKSURI
				}
				break
			}
			select {
			case err := <-exited:
				return nil, fmt.Errorf("node-oidc-provider exited (%v):\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Errorf("node-oidc-provider not ready after 60 s:\n%s", logs.String())
			}
		}
	}
	return stop, nil
}

// nodeClient returns an m2m.Client of the registered client id at the
// main provider's token endpoint.
func nodeClient(t *testing.T, id string, mod func(*m2m.Config)) *m2m.Client {
	t.Helper()
	cfg := m2m.Config{TokenURL: node.issuer + "/token", ClientID: id, ClientSecret: node.secret}
	if mod != nil {
		mod(&cfg)
	}
	mc, err := m2m.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { mc.Close() })
	return mc
}

// nodeVerifier returns a verifier of the main provider's tokens for
// audience (a resource URI), with the RFC 9068 profile and no leeway.
func nodeVerifier(t *testing.T, audience string) *verify.Verifier {
	t.Helper()
	v, err := verify.New(context.Background(), verify.Config{
		JWKSURL:  node.jwks,
		Issuer:   node.issuer,
		Audience: audience,
		Profile:  verify.ProfileRFC9068,
		Leeway:   -1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v
}

// decodeJWT returns the header and claims of a JWT, NOT verified.
func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3, "a compact JWS")
	for i, out := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, out))
	}
	return header, claims
}

// recorder is an http.RoundTripper that notes every request the SDK
// sends to the authorization server before passing it on.
type recorder struct {
	mu       sync.Mutex
	gets     []string       // URLs of metadata requests
	requests []tokenRequest // token requests
}

type tokenRequest struct {
	url    string
	basic  bool // Authorization: Basic
	inBody bool // client_secret in the form
	form   url.Values
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	if req.Method == http.MethodGet {
		r.gets = append(r.gets, req.URL.String())
	} else {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		r.requests = append(r.requests, tokenRequest{
			url:    req.URL.String(),
			basic:  strings.HasPrefix(req.Header.Get("Authorization"), "Basic "),
			inBody: form.Has("client_secret"),
			form:   form,
		})
	}
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

func (r *recorder) tokenRequests() []tokenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tokenRequest(nil), r.requests...)
}

func (r *recorder) metadataRequests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.gets...)
}

var (
	calendar = m2m.Audience{Name: "calendar", Resource: calendarResource, OmitAudienceParam: true,
		Scopes: []string{"event.view", "event.create"}}
	files = m2m.Audience{Name: "files", Resource: filesResource, OmitAudienceParam: true,
		Scopes: []string{"file.view"}}
)

// One Client, two audiences selected by resource, each token carrying
// only the scopes asked for, with either auth style.
func TestNodeTokensPerResource(t *testing.T) {
	needNode(t)
	for _, tc := range []struct {
		name, client string
		style        m2m.AuthStyle
	}{
		{"client_secret_basic", "m2m-basic", m2m.AuthStyleBasic},
		{"client_secret_post", "m2m-post", m2m.AuthStyleInBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			mc := nodeClient(t, tc.client, func(c *m2m.Config) { c.AuthStyle, c.HTTPClient = tc.style, rec.client() })
			tokens := map[string]bool{}
			for _, want := range []struct {
				aud    m2m.Audience
				narrow []string
				scope  []string
			}{
				{calendar, []string{"event.create"}, []string{"event.create"}},
				{calendar, nil, []string{"event.create", "event.view"}},
				{files, nil, []string{"file.view"}},
				{calendar, []string{"event.create"}, []string{"event.create"}}, // cached
			} {
				tok := token(t, mc, want.aud, want.narrow...)
				tokens[tok] = true
				hdr, claims := decodeJWT(t, tok)
				assert.Equal(t, "at+jwt", hdr["typ"])
				assert.Equal(t, want.aud.Resource, claims["aud"], "aud is the resource")
				assert.ElementsMatch(t, want.scope, strings.Fields(fmt.Sprint(claims["scope"])))
				assert.Nil(t, claims["scp"])
				assert.Equal(t, tc.client, claims["client_id"])
				assert.Equal(t, node.issuer, claims["iss"])
			}
			// Each token is new (node-oidc-provider never repeats one), so
			// three tokens for four calls means the last came from the cache.
			assert.Len(t, tokens, 3, "one token per (resource, scope set)")
			reqs := rec.tokenRequests()
			require.NotEmpty(t, reqs)
			for _, r := range reqs {
				assert.Equal(t, tc.style == m2m.AuthStyleBasic, r.basic)
				assert.Equal(t, tc.style == m2m.AuthStyleInBody, r.inBody)
				assert.Len(t, r.form["resource"], 1)
				assert.False(t, r.form.Has("audience"), "OmitAudienceParam")
			}
		})
	}

	// Two audiences differing only in resource: two tokens, each scoped
	// by its resource server to the scopes it knows.
	t.Run("same name, other resource", func(t *testing.T) {
		mc := nodeClient(t, "m2m-basic", nil)
		scopes := []string{"event.view", "file.view"}
		a := m2m.Audience{Name: "api", Resource: calendarResource, Scopes: scopes}
		b := m2m.Audience{Name: "api", Resource: filesResource, Scopes: scopes}
		ta, tb := token(t, mc, a), token(t, mc, b)
		require.NotEqual(t, ta, tb)
		_, ca := decodeJWT(t, ta)
		_, cb := decodeJWT(t, tb)
		assert.Equal(t, calendarResource, ca["aud"])
		assert.Equal(t, "event.view", ca["scope"])
		assert.Equal(t, filesResource, cb["aud"])
		assert.Equal(t, "file.view", cb["scope"])
	})
}

// node-oidc-provider's refusals surface as *m2m.TokenError with its code.
func TestNodeErrors(t *testing.T) {
	needNode(t)
	tests := []struct {
		name           string
		client, secret string
		style          m2m.AuthStyle
		aud            m2m.Audience
		status         int
		code           string
	}{
		{"unknown resource", "m2m-basic", node.secret, m2m.AuthStyleBasic,
			m2m.Audience{Name: "billing", Resource: "https://billing.test/", Scopes: []string{"event.view"}}, 400, "invalid_target"},
		{"scope not allowed for the client", "m2m-basic", node.secret, m2m.AuthStyleBasic,
			m2m.Audience{Name: "files", Resource: filesResource, Scopes: []string{"file.create"}}, 400, "invalid_scope"},
		{"wrong secret, basic", "m2m-basic", "wrong-" + node.secret, m2m.AuthStyleBasic, calendar, 401, "invalid_client"},
		{"wrong secret, post", "m2m-post", "wrong-" + node.secret, m2m.AuthStyleInBody, calendar, 401, "invalid_client"},
		{"unknown client", "no-such-client", node.secret, m2m.AuthStyleBasic, calendar, 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc, err := m2m.New(m2m.Config{TokenURL: node.issuer + "/token", ClientID: tc.client,
				ClientSecret: tc.secret, AuthStyle: tc.style})
			require.NoError(t, err)
			defer mc.Close()
			src, err := mc.Source(tc.aud)
			require.NoError(t, err)
			_, err = src.TokenContext(context.Background())
			var te *m2m.TokenError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tc.code, te.ErrorCode, te.Error())
			assert.Equal(t, tc.status, te.StatusCode)
			assert.Equal(t, tc.aud.Name, te.Audience)
			assert.NotContains(t, err.Error(), tc.secret)
		})
	}
}

// verify accepts node-oidc-provider's RFC 9068 tokens as they come: aud a
// string, scope one space-separated string, typ at+jwt.
func TestNodeVerifyTokens(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	tok := token(t, nodeClient(t, "m2m-basic", nil), calendar, "event.create")
	v := nodeVerifier(t, calendarResource)
	claims, err := v.Verify(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, []string{calendarResource}, claims.Audience)
	assert.Equal(t, []string{"event.create"}, claims.Scopes)
	assert.Equal(t, "m2m-basic", claims.ClientID)
	assert.Equal(t, "m2m-basic", claims.Subject)
	assert.Equal(t, node.issuer, claims.Issuer)

	_, err = nodeVerifier(t, filesResource).Verify(ctx, tok)
	require.ErrorIs(t, err, verify.ErrAudience)

	// Issuer alone: the JWKS comes from the provider's metadata.
	discovered, err := verify.New(ctx, verify.Config{Issuer: node.issuer, Audience: calendarResource, Profile: verify.ProfileRFC9068})
	require.NoError(t, err)
	defer discovered.Close()
	_, err = discovered.Verify(ctx, tok)
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		scope string
		want  int
	}{{"scope held", "event.create", http.StatusOK}, {"scope missing", "event.update", http.StatusForbidden}} {
		t.Run(tc.name, func(t *testing.T) {
			h := v.Middleware(tc.scope)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest(http.MethodPost, "/events", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.want, rec.Code)
		})
	}
}

// Tokens living 5 s, used continuously through the Transport by a
// verify-protected callee: renewed before expiry, never answered 401.
func TestNodeShortLivedTokensUnderLoad(t *testing.T) {
	needNode(t)
	v := nodeVerifier(t, shortResource)
	mc := nodeClient(t, "m2m-basic", nil)
	var ok, unauthorized atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	svc := httptest.NewServer(v.Middleware("event.view")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl, _ := verify.ClaimsFromContext(r.Context())
		mu.Lock()
		seen[cl.ID] = true
		mu.Unlock()
	})))
	defer svc.Close()
	src, err := mc.Source(m2m.Audience{Name: "short", Resource: shortResource, OmitAudienceParam: true,
		Scopes: []string{"event.view"}, URL: svc.URL})
	require.NoError(t, err)
	first, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), first.AccessToken)
	require.NoError(t, err, "verify accepts the provider's token")
	assert.LessOrEqual(t, time.Until(first.Expiry), nodeShortTTL)

	hc := &http.Client{Transport: m2m.NewTransport(nil, src)}
	defer hc.CloseIdleConnections()
	// Long enough for two renewals however slowly the machine runs: a
	// token is renewed before it expires, so a new one is in use at least
	// every nodeShortTTL.
	deadline := time.Now().Add(2*nodeShortTTL + 2*time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := hc.Get(svc.URL + "/events")
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
		})
	}
	wg.Wait()
	t.Logf("%d requests, %d tokens", ok.Load(), len(seen))
	assert.Zero(t, unauthorized.Load(), "no request reached the service with an expired token")
	assert.Positive(t, ok.Load())
	assert.GreaterOrEqual(t, len(seen), 3, "at least two renewals")
}

// Introspection (RFC 7662) of an opaque token: active, with its
// resource as aud, to its own client only.
func TestNodeIntrospection(t *testing.T) {
	needNode(t)
	tok := token(t, nodeClient(t, "m2m-basic", nil),
		m2m.Audience{Name: "opaque", Resource: opaqueResource, Scopes: []string{"event.view"}})
	require.NotContains(t, tok, ".", "an opaque token")
	for _, tc := range []struct {
		client string
		active bool
	}{{"m2m-basic", true}, {"m2m-post", false}} {
		t.Run(tc.client, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, node.issuer+"/token/introspection",
				strings.NewReader(url.Values{"token": {tok}}.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(tc.client), url.QueryEscape(node.secret))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var got struct {
				Active   bool   `json:"active"`
				Aud      string `json:"aud"`
				Scope    string `json:"scope"`
				ClientID string `json:"client_id"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			assert.Equal(t, tc.active, got.Active)
			if tc.active {
				assert.Equal(t, opaqueResource, got.Aud)
				assert.Equal(t, "event.view", got.Scope)
				assert.Equal(t, "m2m-basic", got.ClientID)
			}
		})
	}
}
