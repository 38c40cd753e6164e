package interop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// Client authentication without a shared secret against Ory Hydra:
// private_key_jwt with each signing algorithm, a key rotated on the server
// and on disk under load, and a rotated secret file.

// publicJWKS returns the JWK Set of the public halves of keys, each with
// its RFC 7638 thumbprint as kid (what m2m sends when KeyID is empty).
func publicJWKS(t *testing.T, alg string, keys ...crypto.Signer) map[string]any {
	t.Helper()
	var set []json.RawMessage
	for _, k := range keys {
		kid, err := m2m.JWKThumbprint(k.Public())
		require.NoError(t, err)
		jwk, err := m2m.PublicJWK(k.Public(), kid, alg)
		require.NoError(t, err)
		set = append(set, jwk)
	}
	return map[string]any{"keys": set}
}

// createKeyClient registers a private_key_jwt client with Hydra's admin
// API, trusting keys, and returns its id.
func createKeyClient(t *testing.T, alg string, lifespan string, keys ...crypto.Signer) string {
	t.Helper()
	body := map[string]any{
		"client_name": t.Name(), "grant_types": []string{"client_credentials"}, "scope": allScopes,
		"audience": []string{"event", "file"}, "token_endpoint_auth_method": "private_key_jwt",
		"token_endpoint_auth_signing_alg": alg, "jwks": publicJWKS(t, alg, keys...),
	}
	if lifespan != "" {
		body["client_credentials_grant_access_token_lifespan"] = lifespan
	}
	var created struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, admin(context.Background(), http.MethodPost, "/admin/clients", body, http.StatusCreated, &created))
	t.Cleanup(func() {
		admin(context.Background(), http.MethodDelete, "/admin/clients/"+created.ClientID, nil, http.StatusNoContent, nil)
	})
	return created.ClientID
}

// patchClient applies a JSON Patch to a Hydra client.
func patchClient(t *testing.T, id string, ops ...map[string]any) {
	t.Helper()
	require.NoError(t, admin(context.Background(), http.MethodPatch, "/admin/clients/"+id, ops, http.StatusOK, nil))
}

func writeKey(t *testing.T, path string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	writeAtomic(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writeAtomic replaces path as a Kubernetes volume update does.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", data, 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

func TestPrivateKeyJWTHydra(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeKey(t, keyFile, ecKey)
	tests := []struct {
		name string
		alg  string
		key  crypto.Signer
		mod  func(*m2m.Config)
	}{
		{"RS256", m2m.AlgRS256, rsaKey, func(c *m2m.Config) { c.PrivateKey = rsaKey }},
		{"PS256", m2m.AlgPS256, rsaKey, func(c *m2m.Config) { c.PrivateKey, c.SigningAlgorithm = rsaKey, m2m.AlgPS256 }},
		{"ES256", m2m.AlgES256, ecKey, func(c *m2m.Config) { c.PrivateKey = ecKey }},
		{"ES256 from a PEM file", m2m.AlgES256, ecKey, func(c *m2m.Config) { c.PrivateKeyFile = keyFile }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := createKeyClient(t, tc.alg, "", tc.key)
			cfg := m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: id}
			tc.mod(&cfg)
			mc, err := m2m.New(cfg)
			require.NoError(t, err)
			defer mc.Close()
			for _, aud := range []m2m.Audience{event, file} {
				claims, err := newVerifier(t, aud.Name).Verify(context.Background(), token(t, mc, aud, aud.Scopes[0]))
				require.NoError(t, err)
				assert.Equal(t, id, claims.ClientID)
				assert.Equal(t, []string{aud.Name}, claims.Audience)
			}
		})
	}

	t.Run("unregistered key", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		id := createKeyClient(t, m2m.AlgES256, "", ecKey)
		mc, err := m2m.New(m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: id, PrivateKey: other})
		require.NoError(t, err)
		defer mc.Close()
		src, err := mc.Source(event)
		require.NoError(t, err)
		_, err = src.TokenContext(context.Background())
		var te *m2m.TokenError
		require.ErrorAs(t, err, &te)
		// Hydra answers an unknown kid with invalid_request, not
		// invalid_client.
		assert.Equal(t, "invalid_request", te.ErrorCode)
		assert.Contains(t, te.Hint, "kid")
	})

	t.Run("secret sent to a private_key_jwt client", func(t *testing.T) {
		id := createKeyClient(t, m2m.AlgES256, "", ecKey)
		mc := newClient(t, client{id, "some-secret"}, nil)
		src, err := mc.Source(event)
		require.NoError(t, err)
		_, err = src.TokenContext(context.Background())
		var te *m2m.TokenError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, "invalid_client", te.ErrorCode)
		assert.Contains(t, te.Hint, "PrivateKey")
	})

	t.Run("DPoP is refused rather than downgraded", func(t *testing.T) {
		// Hydra does not bind tokens to a DPoP key: it answers bearer,
		// which a client asking for sender-constrained tokens refuses.
		id := createKeyClient(t, m2m.AlgES256, "", ecKey)
		mc, err := m2m.New(m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: id, PrivateKey: ecKey, DPoPKey: ecKey})
		require.NoError(t, err)
		defer mc.Close()
		src, err := mc.Source(event)
		require.NoError(t, err)
		_, err = src.TokenContext(context.Background())
		require.ErrorIs(t, err, m2m.ErrInvalidResponse)
		assert.Contains(t, err.Error(), "not DPoP")
	})
}

// rotationLoad sends requests through hc to a verify-protected service
// until stop is closed, and counts the failures and the tokens seen.
type rotationLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	tokens     []string // token ids in the order first seen
	seen       map[string]bool
}

func newRotationLoad(t *testing.T, mc *m2m.Client, stop <-chan struct{}) (*rotationLoad, *sync.WaitGroup) {
	t.Helper()
	l := &rotationLoad{seen: map[string]bool{}}
	v := newVerifier(t, "event")
	svc := httptest.NewServer(v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl, _ := verify.ClaimsFromContext(r.Context())
		l.mu.Lock()
		if !l.seen[cl.ID] {
			l.seen[cl.ID] = true
			l.tokens = append(l.tokens, cl.ID)
		}
		l.mu.Unlock()
	})))
	t.Cleanup(svc.Close)
	src, err := mc.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: svc.URL})
	require.NoError(t, err)
	hc := &http.Client{Transport: m2m.NewTransport(nil, src)}
	t.Cleanup(hc.CloseIdleConnections)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := hc.Post(svc.URL+"/events", "application/json", nil)
				if err != nil {
					l.failed.Add(1)
					t.Errorf("request failed: %v", err)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
					t.Errorf("request answered %d", resp.StatusCode)
				} else {
					l.ok.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return l, &wg
}

func (l *rotationLoad) tokenCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tokens)
}

// waitFor waits up to limit for cond, failing the test otherwise.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A private_key_jwt key rotated with 3-second tokens used continuously.
// "overlap" is the operator's way: Hydra trusts the old and the new key,
// the new key is written over the old file, Hydra drops the old key.
// "server first" drops the old key in Hydra, then writes the file: the
// next refresh is refused (Hydra says invalid_request: unknown kid), the
// file is read again at once and the request sent again. No request
// fails either way, and tokens keep coming with the new key alone.
func TestKeyRotationHydraUnderLoad(t *testing.T) {
	for _, serverFirst := range []bool{false, true} {
		name := "overlap"
		if serverFirst {
			name = "server first"
		}
		t.Run(name, func(t *testing.T) {
			oldKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			id := createKeyClient(t, m2m.AlgES256, "3s", oldKey)
			keyFile := filepath.Join(t.TempDir(), "key.pem")
			writeKey(t, keyFile, oldKey)
			logs := &lockedBuffer{}
			mc, err := m2m.New(m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: id, PrivateKeyFile: keyFile,
				Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
			require.NoError(t, err)
			defer mc.Close()

			stop := make(chan struct{})
			load, wg := newRotationLoad(t, mc, stop)
			defer func() { close(stop); wg.Wait() }()
			waitFor(t, 20*time.Second, "two tokens with the old key", func() bool { return load.tokenCount() >= 2 })

			if serverFirst {
				patchClient(t, id, map[string]any{"op": "replace", "path": "/jwks", "value": publicJWKS(t, m2m.AlgES256, newKey)})
				writeKey(t, keyFile, newKey)
			} else {
				patchClient(t, id, map[string]any{"op": "replace", "path": "/jwks", "value": publicJWKS(t, m2m.AlgES256, oldKey, newKey)})
				writeKey(t, keyFile, newKey)
				waitFor(t, 20*time.Second, "the new key to be read", func() bool { return strings.Contains(logs.String(), "re-read from its changed file") })
				patchClient(t, id, map[string]any{"op": "replace", "path": "/jwks", "value": publicJWKS(t, m2m.AlgES256, newKey)})
			}
			after := load.tokenCount()
			waitFor(t, 20*time.Second, "two tokens with the new key alone", func() bool { return load.tokenCount() >= after+2 })

			t.Logf("%d requests, %d tokens", load.ok.Load(), load.tokenCount())
			assert.Zero(t, load.failed.Load())
			assert.Contains(t, logs.String(), "re-read from its changed file")
		})
	}
}

// A client secret rotated in Hydra and in the mounted file at about the
// same time, with 3-second tokens used continuously: the file is read
// again (at the next look, or at once after Hydra's invalid_client), and
// no request fails.
func TestSecretFileRotationHydraUnderLoad(t *testing.T) {
	c := createClient(t, "basic", "--token-lifetime", "3s")
	secretFile := filepath.Join(t.TempDir(), "secret")
	writeAtomic(t, secretFile, []byte(c.secret+"\n"))
	logs := &lockedBuffer{}
	mc, err := m2m.New(m2m.Config{TokenURL: hydra.public + "/oauth2/token", ClientID: c.id, ClientSecretFile: secretFile,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	defer mc.Close()

	stop := make(chan struct{})
	load, wg := newRotationLoad(t, mc, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 20*time.Second, "two tokens with the old secret", func() bool { return load.tokenCount() >= 2 })

	newSecret := fmt.Sprintf("rotated-%d", time.Now().UnixNano())
	writeAtomic(t, secretFile, []byte(newSecret+"\n"))
	patchClient(t, c.id, map[string]any{"op": "replace", "path": "/client_secret", "value": newSecret})
	after := load.tokenCount()
	waitFor(t, 20*time.Second, "two tokens with the new secret", func() bool { return load.tokenCount() >= after+2 })

	t.Logf("%d requests, %d tokens", load.ok.Load(), load.tokenCount())
	assert.Zero(t, load.failed.Load())
	assert.Contains(t, logs.String(), "re-read from its changed file")
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
