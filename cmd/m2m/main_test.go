package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"

	"github.com/m2mauth/m2m/internal/devserver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testmain.Run(m) }

// runCmd runs the CLI and returns stdout, stderr and the exit code.
func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

const secret = "task:secret%+ ü"

func startAuth(t *testing.T, clients ...devserver.Client) *devserver.Server {
	t.Helper()
	s, err := devserver.New(devserver.Options{APIKey: "test-key", Clients: clients})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), ""))
	t.Cleanup(func() { s.Close() })
	return s
}

var taskClient = devserver.Client{ClientID: "task", ClientSecret: secret, Scope: "event.view event.create file.view", Audience: []string{"event", "file"}}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(p, []byte(content+"\n"), 0o600))
	return p
}

func TestDemo(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCmd(t, "demo", "--token-lifetime", "2s", "--refresh-run", "3s")
	require.Equal(t, 0, code, out+errOut)
	assert.Contains(t, out, "All 8 steps behaved as expected")
	assert.Contains(t, out, `WWW-Authenticate: Bearer error="insufficient_scope", scope="file.create"`)
	assert.Contains(t, out, "token from memory")
	_, errOut, code = runCmd(t, "demo", "--token-lifetime", "1ms")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "at least 2s")
}

func TestUsageAndHelp(t *testing.T) {
	t.Parallel()
	_, errOut, code := runCmd(t)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "no command given")
	_, errOut, code = runCmd(t, "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown command "frobnicate"`)
	out, _, code := runCmd(t, "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "m2m demo")
	for _, cmd := range []string{"demo", "devserver", "token", "decode", "verify", "clients"} {
		_, errOut, code := runCmd(t, cmd, "--help")
		assert.Equal(t, 0, code, cmd)
		assert.Contains(t, errOut, "Usage: m2m "+cmd, cmd)
	}
	_, errOut, _ = runCmd(t, "devserver", "--help")
	assert.Contains(t, errOut, "NOT FOR PRODUCTION")
	_, errOut, code = runCmd(t, "token", "--bogus")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "flag provided but not defined")
	assert.Equal(t, 0, exitCode(flag.ErrHelp, &bytes.Buffer{}))
	assert.Equal(t, 1, exitCode(errors.New("boom"), &bytes.Buffer{}))
}

func TestToken(t *testing.T) {
	t.Parallel()
	post := taskClient
	post.ClientID, post.TokenEndpointAuthMethod = "poster", "client_secret_post"
	auth := startAuth(t, taskClient, post)
	file := secretFile(t, secret)
	base := []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", file, "--audience", "event"}

	out, errOut, code := runCmd(t, append(base, "--scope", "event.create")...)
	require.Equal(t, 0, code, errOut)
	token := strings.TrimSpace(out)
	assert.Equal(t, 2, strings.Count(token, "."))

	out, _, code = runCmd(t, append(base, "--scope", "event.create,event.view", "--json")...)
	require.Equal(t, 0, code)
	var resp map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &resp))
	assert.Equal(t, "event.create event.view", resp["scope"])
	assert.InDelta(t, 3600, resp["expires_in"], 1, "expires_in, capped at the JWT exp (whole seconds)")
	assert.NotEmpty(t, resp["expiry"])

	out, errOut, code = runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret", secret)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "visible in the process list")
	assert.NotContains(t, out+errOut, "secret%")

	_, errOut, code = runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "poster", "--client-secret-file", file)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "AuthStyleInBody")
	_, errOut, code = runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "poster", "--client-secret-file", file, "--auth-method", "post", "--encoding", "json")
	assert.Equal(t, 0, code, errOut)

	bad := secretFile(t, "wrong")
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"wrong secret", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", bad}, 1, "401 invalid_client"},
		{"no secret", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task"}, 2, "no client secret"},
		{"missing file", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", "/nonexistent/x"}, 1, "reading the client secret"},
		{"no url", []string{"token", "--client-id", "task"}, 2, "--token-url is required"},
		{"bad auth method", append(base, "--auth-method", "jwt"), 2, "basic or post"},
		{"bad encoding", append(base, "--encoding", "xml"), 2, "form or json"},
		{"undeclared audience", append(base[:len(base)-1], "billing"), 1, "invalid_request"},
		{"unreachable", []string{"token", "--token-url", "http://127.0.0.1:1/auth/oauth/token", "--client-id", "task", "--client-secret-file", file}, 1, "connection refused"},
		{"plain http", []string{"token", "--token-url", "http://auth.example/token", "--client-id", "task", "--client-secret-file", file}, 1, "plain http"},
	}
	for _, tc := range cases {
		_, errOut, code := runCmd(t, tc.args...)
		assert.Equal(t, tc.code, code, tc.name)
		assert.Contains(t, errOut, tc.msg, tc.name)
		assert.NotContains(t, errOut, secret, tc.name)
		assert.NotContains(t, strings.TrimSpace(errOut), "\n", tc.name+": one line, no stack trace")
	}
}

func TestTokenSecretFromEnv(t *testing.T) {
	auth := startAuth(t, taskClient)
	t.Setenv("M2M_CLIENT_SECRET", secret)
	_, errOut, code := runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "task")
	assert.Equal(t, 0, code, errOut)
	assert.Empty(t, errOut)
}

func TestDecodeAndVerify(t *testing.T) {
	t.Parallel()
	auth := startAuth(t, taskClient)
	out, _, code := runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", secretFile(t, secret), "--audience", "event", "--scope", "event.create")
	require.Equal(t, 0, code)
	token := strings.TrimSpace(out)

	out, _, code = runCmd(t, "decode", token)
	require.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "NOT VERIFIED"))
	assert.Contains(t, out, `"stt": 1`)
	assert.Contains(t, out, `"alg": "RS256"`)
	assert.Regexp(t, regexp.MustCompile(`exp: \S+ \(expires in (59m|1h0m)`), out)

	verifyArgs := []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--issuer", auth.Issuer()}
	out, errOut, code := runCmd(t, append(verifyArgs, "--scope", "event.create", token)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "valid: client_id=task sub=task aud=event scopes=event.create")

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing scope", append(verifyArgs, "--scope", "event.delete", token), 1, `lacks scope "event.delete"`},
		{"wrong audience", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "file", token}, 1, "wrong audience"},
		{"wrong issuer", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--issuer", "x", token}, 1, "wrong issuer"},
		{"rfc9068 profile still checks the signature", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--profile", "rfc9068", token[:len(token)-4] + "AAAA"}, 1, "bad signature"},
		{"bad profile", append(verifyArgs, "--profile", "x", token), 2, "supertokens or rfc9068"},
		{"no token", verifyArgs, 2, "exactly one token"},
		{"no audience", []string{"verify", "--jwks-url", auth.JWKSURL(), token}, 2, "--audience is required"},
		{"unreachable jwks", []string{"verify", "--jwks-url", "http://127.0.0.1:1/jwks.json", "--audience", "event", token}, 1, "fetching JWKS"},
		{"garbage", append(verifyArgs, "garbage"), 1, "malformed token"},
		{"decode garbage", []string{"decode", "a.b"}, 1, "not a JWT"},
		{"decode bad base64", []string{"decode", "!!.b.c"}, 1, "not base64url"},
		{"decode nothing", []string{"decode"}, 2, "exactly one token"},
	}
	for _, tc := range cases {
		_, errOut, code := runCmd(t, tc.args...)
		assert.Equal(t, tc.code, code, tc.name)
		assert.Contains(t, errOut, tc.msg, tc.name)
	}
}

func TestClientsOnCore(t *testing.T) {
	t.Parallel()
	auth := startAuth(t)
	core := []string{"--core-url", auth.URL(), "--api-key", "test-key"}
	out, errOut, code := runCmd(t, append([]string{"clients", "create", "--name", "Task Service", "--scope", "event.view event.create", "--audience", "event", "--token-lifetime", "5s"}, core...)...)
	require.Equal(t, 0, code, errOut)
	m := regexp.MustCompile(`client_id: (\S+)\nclient_secret: (\S+)`).FindStringSubmatch(out)
	require.Len(t, m, 3)
	assert.Contains(t, errOut, "Store the client secret safely")

	// The new client works, with the lifetime it was given.
	tok, errOut, code := runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", m[1], "--client-secret-file", secretFile(t, m[2]), "--audience", "event", "--json")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `"expires_in": [45],`, tok)

	out, _, code = runCmd(t, append([]string{"clients", "list"}, core...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, m[1])
	assert.Contains(t, out, "Task Service")
	assert.NotContains(t, out, m[2], "list never shows a secret")

	out, _, code = runCmd(t, append([]string{"clients", "delete", "--client-id", m[1]}, core...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "deleted "+m[1])

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"wrong api key", []string{"clients", "list", "--core-url", auth.URL(), "--api-key", "nope"}, 1, "check --api-key"},
		{"no api key", []string{"clients", "list", "--core-url", auth.URL()}, 2, "needs --api-key"},
		{"both servers", []string{"clients", "list", "--core-url", auth.URL(), "--hydra-admin-url", auth.URL()}, 2, "exactly one"},
		{"no server", []string{"clients", "list"}, 2, "exactly one"},
		{"no subcommand", []string{"clients"}, 2, "create, list or delete"},
		{"create without name", append([]string{"clients", "create"}, core...), 2, "--name is required"},
		{"delete without id", append([]string{"clients", "delete"}, core...), 2, "--client-id is required"},
		{"unreachable", []string{"clients", "list", "--core-url", "http://127.0.0.1:1", "--api-key", "k"}, 1, "connection refused"},
	}
	for _, tc := range cases {
		_, errOut, code := runCmd(t, tc.args...)
		assert.Equal(t, tc.code, code, tc.name)
		assert.Contains(t, errOut, tc.msg, tc.name)
	}
}

func TestClientsOnHydra(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clients := map[string]hydraClient{}
	hydra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/admin/clients":
			var c hydraClient
			json.NewDecoder(r.Body).Decode(&c)
			c.ClientID, c.ClientSecret = fmt.Sprintf("h-%d", len(clients)+1), "hydra-secret"
			clients[c.ClientID] = c
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(c)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/clients":
			var list []hydraClient
			for _, c := range clients {
				c.ClientSecret = ""
				list = append(list, c)
			}
			json.NewEncoder(w).Encode(list)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/admin/clients/"):
			delete(clients, strings.TrimPrefix(r.URL.Path, "/admin/clients/"))
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer hydra.Close()
	h := []string{"--hydra-admin-url", hydra.URL}
	out, errOut, code := runCmd(t, append([]string{"clients", "create", "--name", "Task", "--scope", "event.create", "--audience", "event", "--auth-method", "post", "--token-lifetime", "3s"}, h...)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "client_id: h-1\nclient_secret: hydra-secret")
	mu.Lock()
	assert.Equal(t, hydraClient{ClientID: "h-1", ClientSecret: "hydra-secret", ClientName: "Task", GrantTypes: []string{"client_credentials"},
		Scope: "event.create", Audience: []string{"event"}, AuthMethod: "client_secret_post", Lifespan: "3s"}, clients["h-1"])
	mu.Unlock()
	out, _, code = runCmd(t, append([]string{"clients", "list"}, h...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "h-1")
	_, _, code = runCmd(t, append(append([]string{"clients", "delete"}, h...), "h-1")...)
	require.Equal(t, 0, code)
	_, errOut, code = runCmd(t, "clients", "list", "--hydra-admin-url", hydra.URL+"/nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "answered 404")
}

func TestDevserverCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testmain.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"devserver", "--addr", "127.0.0.1:0", "--api-key", "k", "--token-lifetime", "10m",
			"--client", "task:" + "s3cret:event.view,event.create:event,file"}, &out, &errOut)
	}()
	re := regexp.MustCompile(`token endpoint: (\S+)`)
	require.Eventually(t, func() bool { return re.MatchString(out.String()) }, 10*time.Second, 5*time.Millisecond)
	assert.Contains(t, out.String(), "NOT for production")
	assert.NotContains(t, out.String(), "api-key:", "a given api key is not printed")
	tokenURL := re.FindStringSubmatch(out.String())[1]

	tok, errOut2, code := runCmd(t, "token", "--token-url", tokenURL, "--client-id", "task", "--client-secret-file", secretFile(t, "s3cret"), "--audience", "file", "--json")
	require.Equal(t, 0, code, errOut2)
	assert.Regexp(t, `"expires_in": (599|600),`, tok)
	cancel()
	require.NoError(t, <-done)

	dir := t.TempDir()
	p := filepath.Join(dir, "clients.json")
	require.NoError(t, os.WriteFile(p, []byte(`[{"clientId":"a","clientSecret":"b","scope":"x","audience":["y"]}]`), 0o600))
	ctx2, cancel2 := context.WithCancel(context.Background())
	var out2 testmain.Buffer
	go func() {
		done <- run(ctx2, []string{"devserver", "--addr", "127.0.0.1:0", "--clients", p}, &out2, &errOut)
	}()
	require.Eventually(t, func() bool { return strings.Contains(out2.String(), "client:         a") }, 10*time.Second, 5*time.Millisecond)
	assert.Contains(t, out2.String(), "api-key:", "a generated api key is printed")
	cancel2()
	require.NoError(t, <-done)

	for _, args := range [][]string{
		{"devserver", "--client", "bad"},
		{"devserver", "--clients", filepath.Join(dir, "missing.json")},
		{"devserver", "--addr", "256.0.0.1:0"},
	} {
		_, _, code := runCmd(t, args...)
		assert.NotEqual(t, 0, code, args)
	}
}
