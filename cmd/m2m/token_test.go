package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestToken(t *testing.T) {
	t.Parallel()
	post := taskClient
	post.ClientID, post.TokenEndpointAuthMethod = "poster", "client_secret_post"
	auth := startAuth(t, taskClient, post)
	file := secretFile(t, secret)
	base := []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", file, "--audience", "event"}

	out, errOut, code := runCmd(t, append(base, "--scope", "event.create")...)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 2, strings.Count(strings.TrimSpace(out), "."))

	out, _, code = runCmd(t, append(base, "--scope", "event.create,event.view", "--json")...)
	require.Equal(t, 0, code)
	var resp map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &resp))
	assert.Equal(t, "event.create event.view", resp["scope"])
	expiresIn, _ := resp["expires_in"].(float64)
	assert.True(t, expiresIn > 3500 && expiresIn <= 3600, "expires_in %v: the server's hour, capped at the JWT's whole-second exp", resp["expires_in"])
	assert.NotEmpty(t, resp["expiry"])

	// Flags after the command's options are still flags.
	_, errOut, code = runCmd(t, "token", "--audience", "event", "--token-url", auth.TokenURL(), "--client-id", "poster", "--client-secret-file", file, "--auth-method", "post", "--encoding", "json")
	assert.Equal(t, 0, code, errOut)

	bad := secretFile(t, "wrong")
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"auth method mismatch names the flag", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "poster", "--client-secret-file", file}, 1,
			"(the client is registered for client_secret_post: use --auth-method post)"},
		{"wrong secret", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", bad}, 1, "m2m token: token endpoint answered 401 invalid_client"},
		{"missing file", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", "/nonexistent/x"}, 1, "reading --client-secret-file"},
		{"empty file", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", secretFile(t, "")}, 1, "is empty"},
		{"undeclared audience", append(base[:len(base)-1], "billing"), 1, "invalid_request"},
		{"unreachable", []string{"token", "--token-url", "http://127.0.0.1:1/auth/oauth/token", "--client-id", "task", "--client-secret-file", file}, 1, "connection refused"},
		{"plain http names the flags", []string{"token", "--token-url", "http://auth.example/token", "--client-id", "task", "--client-secret-file", file}, 1,
			`m2m token: --token-url "http://auth.example/token" is plain http on a non-loopback host; use https or give --insecure-http`},
		{"control characters in the id", []string{"token", "--token-url", auth.TokenURL(), "--client-id", "a\x01b", "--client-secret-file", file}, 1, "--client-id holds control characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runCmd(t, tc.args...)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, errOut, tc.msg)
			assert.NotContains(t, errOut, secret)
			assert.NotContains(t, errOut, "m2m: m2m")
			assert.NotContains(t, errOut, "AuthStyle", "Go names are not CLI flags")
			assert.NotContains(t, errOut, "invalid config")
			assertOneLine(t, errOut, tc.name)
		})
	}
}

// --timeout bounds every network command, and its error names the flag.
func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	file := secretFile(t, secret)
	cases := []struct {
		name string
		args []string
	}{
		{"token", []string{"token", "--token-url", hang.URL + "/token", "--client-id", "task", "--client-secret-file", file}},
		{"verify", []string{"verify", "--jwks-url", hang.URL + "/jwks.json", "--audience", "event", "a.b.c"}},
		{"clients", []string{"clients", "list", "--core-url", hang.URL, "--api-key", "k"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runCmd(t, append(tc.args, "--timeout", "100ms")...)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "did not answer within --timeout 100ms")
			assertOneLine(t, errOut, tc.name)
		})
	}
}

func TestDecodeAndVerify(t *testing.T) {
	t.Parallel()
	auth := startAuth(t, taskClient)
	out, _, code := runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", secretFile(t, secret), "--audience", "event", "--scope", "event.create")
	require.Equal(t, 0, code)
	token := strings.TrimSpace(out)

	for _, arg := range []string{token, "Bearer " + token, "bearer  " + token + "\n", "Authorization: Bearer " + token} {
		out, errOut, code := runCmd(t, "decode", arg)
		require.Equal(t, 0, code, errOut)
		assert.True(t, strings.HasPrefix(out, "NOT VERIFIED"))
		assert.Contains(t, out, `"stt": 1`)
		assert.Contains(t, out, `"alg": "RS256"`)
		assert.Regexp(t, regexp.MustCompile(`exp: \S+ \(expires in (59m|1h0m)`), out)
	}

	verifyArgs := []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--issuer", auth.Issuer()}
	for _, arg := range []string{token, "Bearer " + token} {
		out, errOut, code := runCmd(t, append(verifyArgs, "--scope", "event.create", arg)...)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "valid: client_id=task sub=task aud=event scopes=event.create")
	}
	// The token may come before the flags.
	_, errOut, code := runCmd(t, "verify", token, "--jwks-url", auth.JWKSURL(), "--audience", "event")
	require.Equal(t, 0, code, errOut)

	forged := func(claims string) string {
		parts := strings.Split(token, ".")
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "." + parts[2]
	}
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"missing scope: expected and got", append(verifyArgs, "--scope", "event.delete", token),
			`m2m verify: insufficient scope: the token lacks scope "event.delete": --scope wants ["event.delete"], the token has ["event.create"]`},
		{"wrong audience: expected and got", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "file", token},
			`m2m verify: invalid token: wrong audience: --audience is "file", the token's aud is ["event"]`},
		{"wrong issuer: expected and got", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--issuer", "x", token},
			`wrong issuer: --issuer is "x", the token's iss is "` + auth.Issuer() + `"`},
		{"rfc9068 profile still checks the signature", []string{"verify", "--jwks-url", auth.JWKSURL(), "--audience", "event", "--profile", "rfc9068", forged(`{"aud":["event"],"exp":9999999999}`)}, "bad signature"},
		{"unreachable jwks", []string{"verify", "--jwks-url", "http://127.0.0.1:1/jwks.json", "--audience", "event", token}, "JWKS"},
		{"plain http jwks names the flags", []string{"verify", "--jwks-url", "http://auth.example/jwks.json", "--audience", "event", token}, "--jwks-url"},
		{"garbage", append(verifyArgs, "garbage"), "malformed token"},
		{"white space in the token", append(verifyArgs, "Bearer a.b c"), "holds white space"},
		{"decode garbage", []string{"decode", "a.b"}, "not a JWT: want three dot-separated parts, got 2"},
		{"decode bad base64", []string{"decode", "!!.b.c"}, "not base64url"},
		{"decode not JSON", []string{"decode", "YWJj.YWJj.c"}, "not JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runCmd(t, tc.args...)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, tc.msg)
			assert.NotContains(t, errOut, "m2m/verify")
			assert.NotContains(t, errOut, "JWKSURL", "Go names are not CLI flags")
			assert.NotContains(t, errOut, token, "the token is never echoed")
			assertOneLine(t, errOut, tc.name)
		})
	}
}
