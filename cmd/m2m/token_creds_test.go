package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// credServer is a token endpoint with RFC 8414 metadata that records what
// each token request carried.
type credServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	form        url.Values
	basic, dpop bool
}

func newCredServer(t *testing.T) *credServer {
	t.Helper()
	s := &credServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": s.URL, "token_endpoint": s.URL + "/token"})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		_, _, basic := r.BasicAuth()
		dpop := r.Header.Get("DPoP") != ""
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{form: r.PostForm, basic: basic, dpop: dpop})
		s.mu.Unlock()
		typ := "Bearer"
		if dpop {
			typ = "DPoP"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":%q,"expires_in":3600}`, len(s.seen), typ)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *credServer) last(t *testing.T) seenRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.NotEmpty(t, s.seen)
	return s.seen[len(s.seen)-1]
}

// keyFile writes a new P-256 key as PKCS #8 PEM and returns it and its path.
func keyFile(t *testing.T, dir, name string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return key, p
}

// checkES256 verifies a compact ES256 JWS with pub and returns its header
// and claims.
func checkES256(t *testing.T, jws string, pub *ecdsa.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jws, ".")
	require.Len(t, parts, 3)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	require.Len(t, sig, 64)
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	require.True(t, ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])), "the signature verifies")
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, dst))
	}
	return header, claims
}

// The token command authenticates without a secret, discovers the token
// endpoint, sends a resource indicator and asks for DPoP-bound tokens.
func TestTokenCredentialFlags(t *testing.T) {
	t.Parallel()
	s := newCredServer(t)
	dir := t.TempDir()
	key, keyPath := keyFile(t, dir, "client.pem")
	_, dpopPath := keyFile(t, dir, "dpop.pem")
	file := secretFile(t, secret)

	// private_key_jwt, the endpoint from the issuer's metadata, a resource.
	out, errOut, code := runCmd(t, "token", "--issuer", s.URL, "--client-id", "task", "--private-key-file", keyPath, "--key-id", "k1",
		"--audience", "event", "--resource", "https://calendar.example.com")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "tok-1\n", out)
	r := s.last(t)
	assert.False(t, r.basic, "no secret, no Basic auth")
	assert.Empty(t, r.form.Get("client_secret"))
	assert.Equal(t, "https://calendar.example.com", r.form.Get("resource"))
	assert.Equal(t, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", r.form.Get("client_assertion_type"))
	header, claims := checkES256(t, r.form.Get("client_assertion"), &key.PublicKey)
	assert.Equal(t, "ES256", header["alg"])
	assert.Equal(t, "k1", header["kid"])
	assert.Equal(t, "task", claims["iss"])
	assert.Equal(t, "task", claims["sub"])

	// A ready-made assertion, sent as it is.
	exp := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, time.Now().Add(time.Hour).Unix()))
	assertion := "eyJhbGciOiJSUzI1NiJ9." + exp + ".c2ln"
	assertionPath := filepath.Join(dir, "assertion")
	require.NoError(t, os.WriteFile(assertionPath, []byte(assertion+"\n"), 0o600))
	_, errOut, code = runCmd(t, "token", "--token-url", s.URL+"/token", "--client-id", "task", "--client-assertion-file", assertionPath)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, assertion, s.last(t).form.Get("client_assertion"))

	// A DPoP-bound token.
	out, errOut, code = runCmd(t, "token", "--token-url", s.URL+"/token", "--client-id", "task", "--client-secret-file", file, "--dpop-key-file", dpopPath, "--json")
	require.Equal(t, 0, code, errOut)
	assert.True(t, s.last(t).dpop, "the token request carries a proof")
	var resp map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &resp))
	assert.Equal(t, "DPoP", resp["token_type"])

	notAKey := secretFile(t, "not a key "+secret)
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"both endpoints", []string{"--token-url", s.URL + "/token", "--issuer", s.URL, "--client-secret-file", file}, "or --issuer (or $M2M_ISSUER), not both"},
		{"no endpoint", []string{"--client-secret-file", file}, "or --issuer (or $M2M_ISSUER) is required"},
		{"a secret and a key", []string{"--token-url", s.URL + "/token", "--client-secret-file", file, "--private-key-file", keyPath}, "give one client credential"},
		{"not a key", []string{"--token-url", s.URL + "/token", "--private-key-file", notAKey}, "--private-key-file"},
		{"not a DPoP key", []string{"--token-url", s.URL + "/token", "--client-secret-file", file, "--dpop-key-file", notAKey}, "--dpop-key-file"},
		{"a DPoP key that is a directory", []string{"--token-url", s.URL + "/token", "--client-secret-file", file, "--dpop-key-file", dir}, "is not a regular file"},
		{"a key id without a key", []string{"--token-url", s.URL + "/token", "--client-secret-file", file, "--key-id", "k1"}, "--key-id goes with --private-key-file"},
		{"an auth method without a secret", []string{"--token-url", s.URL + "/token", "--private-key-file", keyPath, "--auth-method", "post"}, "--auth-method says how a client secret is sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runCmd(t, append([]string{"token", "--client-id", "task"}, tc.args...)...)
			assert.NotEqual(t, 0, code)
			assert.Contains(t, errOut, tc.msg)
			assert.NotContains(t, errOut, secret)
			for _, goName := range []string{"PrivateKey", "AuthStyle", "KeyID", "DPoPKey", "ClientSecretFile"} {
				assert.NotContains(t, errOut, goName, "Go names are not CLI flags")
			}
			assertOneLine(t, errOut, tc.name)
		})
	}
}

// --token-url beats $M2M_ISSUER, and --issuer beats $M2M_TOKEN_URL.
func TestTokenEndpointFlagBeatsVariable(t *testing.T) {
	s := newCredServer(t)
	file := secretFile(t, secret)
	t.Setenv("M2M_ISSUER", "https://auth.invalid")
	_, errOut, code := runCmd(t, "token", "--token-url", s.URL+"/token", "--client-id", "task", "--client-secret-file", file)
	assert.Equal(t, 0, code, errOut)
	t.Setenv("M2M_ISSUER", "")
	t.Setenv("M2M_TOKEN_URL", "https://auth.invalid/token")
	_, errOut, code = runCmd(t, "token", "--issuer", s.URL, "--client-id", "task", "--client-secret-file", file)
	assert.Equal(t, 0, code, errOut)
}

// Both endpoint variables set and neither flag given: the message names
// the variables too.
func TestTokenBothEndpointVariables(t *testing.T) {
	t.Setenv("M2M_ISSUER", "https://auth.invalid")
	t.Setenv("M2M_TOKEN_URL", "https://auth.invalid/token")
	_, errOut, code := runCmd(t, "token", "--client-id", "task", "--client-secret-file", secretFile(t, secret))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "give --token-url (or $M2M_TOKEN_URL) or --issuer (or $M2M_ISSUER), not both")
}
