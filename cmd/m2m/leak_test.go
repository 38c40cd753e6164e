package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// No password in a URL flag shows up in a message, whether the URL parses
// or not.
func TestURLCredentialsNeverShown(t *testing.T) {
	t.Setenv("M2M_CLIENT_SECRET", "s")
	for _, args := range [][]string{
		{"clients", "list", "--hydra-admin-url", "https://admin:HYDRA-PASS@hydra.example:4445"},
		{"clients", "list", "--core-url", "https://admin:CORE-PASS@core.example", "--api-key", "k"},
		{"clients", "list", "--hydra-admin-url", "https://admin:PASS%zz@hydra.example"},
		{"token", "--token-url", "https://id:TOKEN-PASS@auth.example/token", "--client-id", "id"},
		{"token", "--token-url", "https://id:TOK%zzPASS@auth.example/token", "--client-id", "id"},
		{"verify", "--jwks-url", "https://u:JWKS-PASS@auth.example/jwks", "--audience", "a", "x.y.z"},
	} {
		out, errOut, code := runCmd(t, args...)
		assert.NotEqual(t, 0, code, "%v", args)
		assert.NotContains(t, out+errOut, "PASS", "%v", args)
	}
}

// A server's answer that may hold a secret is not copied to stderr: the
// body of a create answered with an unexpected status (it may carry the
// new client's secret), and the API key echoed in an error body.
func TestClientsAnswersNeverShowSecrets(t *testing.T) {
	hydra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"client_id":"c1","client_secret":"NEW-CLIENT-SECRET-1","client_name":"x"}`)) // 200, not 201
	}))
	defer hydra.Close()
	_, errOut, code := runCmd(t, "clients", "create", "--hydra-admin-url", hydra.URL, "--name", "x", "--output", "env")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "answered 200, want 201")
	assert.NotContains(t, errOut, "NEW-CLIENT-SECRET-1")

	// An error answer to a create holds no new secret: it is shown,
	// scrubbed of the API key, with the hint.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"message":"invalid api-key ` + r.Header.Get("Api-Key") + `"}`))
	}))
	defer refusing.Close()
	_, errOut, code = runCmd(t, "clients", "create", "--core-url", refusing.URL, "--api-key", "CREATE-KEY-7", "--name", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "invalid api-key")
	assert.Contains(t, errOut, "check --api-key")
	assert.NotContains(t, errOut, "CREATE-KEY-7")

	core := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"message":"invalid api-key ` + r.Header.Get("Api-Key") + `"}`))
	}))
	defer core.Close()
	t.Setenv("M2M_API_KEY", "CORE-API-KEY-42")
	_, errOut, code = runCmd(t, "clients", "list", "--core-url", core.URL)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "invalid api-key")
	assert.NotContains(t, errOut, "CORE-API-KEY-42")
}

// A secret flag whose value looks like a flag is not quoted.
func TestSecretFlagValueNeverQuoted(t *testing.T) {
	_, errOut, code := runCmd(t, "token", "--token-url", "http://127.0.0.1:1/token", "--client-id", "id", "--client-secret", "--scope=Xy9-SECRET")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--client-secret took the next argument")
	assert.NotContains(t, errOut, "Xy9-SECRET")
	_, errOut, code = runCmd(t, "clients", "list", "--core-url", "http://127.0.0.1:1", "--api-key", "--timeout=KEY-SECRET")
	assert.Equal(t, 2, code)
	assert.NotContains(t, errOut, "KEY-SECRET")
}
