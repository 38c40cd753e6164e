package verify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const algsParam = `algs="ES256 PS256 RS256"`

// TestMiddlewareDPoP: RFC 9449 §7.1 at the door: the scheme, the proof
// header, and the challenges.
func TestMiddlewareDPoP(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.DPoPBaseURL = "https://api.example.com" })
	h := v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		require.True(t, ok)
		io.WriteString(w, "hello "+c.ClientID+" "+c.JWKThumbprint)
	}))
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	plain := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	noScope := dpopClaims(k.jkt)
	noScope["scp"] = []string{"event.view"}
	unscoped := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", noScope)
	expiredClaims := dpopClaims(k.jkt)
	expiredClaims["exp"] = now.Add(-time.Hour).Unix()
	expired := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", expiredClaims)
	proof := func(tok, method string) string { return k.proofFor(tok, method, apiURL, now).signed(t, k) }
	replayed := proof(tok, "POST")

	tests := []struct {
		name      string
		auth      string
		proofs    []string
		status    int
		challenge string
		body      string
	}{
		{"DPoP", "DPoP " + tok, []string{proof(tok, "POST")}, 200, "", "hello " + testClientID + " " + k.jkt},
		{"scheme case-insensitive", "dpop " + tok, []string{proof(tok, "POST")}, 200, "", "hello"},
		{"replayed proof, first", "DPoP " + tok, []string{replayed}, 200, "", "hello"},
		{"replayed proof, again", "DPoP " + tok, []string{replayed}, 401, `DPoP error="invalid_dpop_proof", error_description="proof replayed: this jti was seen before with this key, within the proof window", ` + algsParam, "invalid_dpop_proof"},
		{"bound token as Bearer", "Bearer " + tok, []string{proof(tok, "POST")}, 401, `DPoP error="invalid_token", error_description="DPoP binding not met: the token is DPoP-bound (cnf jkt): it must come with the DPoP scheme and a proof (RFC 9449 ?7.1)", ` + algsParam, "invalid_token"},
		{"bound token as Bearer, no proof", "Bearer " + tok, nil, 401, `DPoP error="invalid_token", error_description="DPoP binding not met: the token is DPoP-bound (cnf jkt): it must come with the DPoP scheme and a proof (RFC 9449 ?7.1)", ` + algsParam, "invalid_token"},
		{"unbound token as DPoP", "DPoP " + plain, []string{proof(plain, "POST")}, 401, `DPoP error="invalid_token", error_description="DPoP binding not met: the DPoP scheme needs a DPoP-bound token (cnf jkt), and this one is not bound", ` + algsParam, "invalid_token"},
		{"no proof", "DPoP " + tok, nil, 401, `DPoP error="invalid_dpop_proof", error_description="malformed token: the request has no DPoP proof", ` + algsParam, "invalid_dpop_proof"},
		{"two proofs", "DPoP " + tok, []string{proof(tok, "POST"), proof(tok, "POST")}, 401, `DPoP error="invalid_dpop_proof", error_description="malformed token: more than one DPoP header", ` + algsParam, "invalid_dpop_proof"},
		{"proof for GET", "DPoP " + tok, []string{proof(tok, "GET")}, 401, `DPoP error="invalid_dpop_proof", error_description="proof for another request: htm 'GET' is not the request's method 'POST'", ` + algsParam, "invalid_dpop_proof"},
		{"proof for another token", "DPoP " + tok, []string{proof(plain, "POST")}, 401, `DPoP error="invalid_dpop_proof", error_description="DPoP binding not met: ath is not the SHA-256 of the access token", ` + algsParam, "invalid_dpop_proof"},
		{"expired token", "DPoP " + expired, []string{proof(expired, "POST")}, 401, `DPoP error="invalid_token", error_description="token expired: exp 2026-11-27T11:00:00Z is before now 2026-11-27T12:00:00Z (leeway 30s)", ` + algsParam, "invalid_token"},
		{"insufficient scope", "DPoP " + unscoped, []string{proof(unscoped, "POST")}, 403, `DPoP error="insufficient_scope", scope="event.create", ` + algsParam, "insufficient_scope"},
		{"not a b64token", "DPoP " + tok + " x", []string{proof(tok, "POST")}, 400, `DPoP error="invalid_request", error_description="the token is not a b64token (RFC 6750 ?2.1)", ` + algsParam, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the two replay cases run in order.
			r := httptest.NewRequest(http.MethodPost, "/events", nil)
			r.Header.Set("Authorization", tc.auth)
			for _, p := range tc.proofs {
				r.Header.Add("DPoP", p)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			assert.Equal(t, tc.status, w.Code)
			assert.Equal(t, tc.challenge, w.Header().Get("WWW-Authenticate"))
			assert.Contains(t, w.Body.String(), tc.body)
			assert.Empty(t, w.Header().Get("DPoP-Nonce"), "no nonces unless asked")
			if tc.status != 200 {
				all := w.Body.String() + strings.Join(w.Header().Values("WWW-Authenticate"), " ")
				assert.NotContains(t, all, "eyJ", "neither the token nor the proof is echoed")
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/events", nil))
		assert.Equal(t, 401, w.Code)
		assert.Equal(t, []string{"Bearer", "DPoP " + algsParam}, w.Header().Values("WWW-Authenticate"))
	})
}

// TestMiddlewareDPoPNonce: use_dpop_nonce with a DPoP-Nonce header, then
// the retry with the nonce passes (RFC 9449 §9).
func TestMiddlewareDPoPNonce(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) {
		c.DPoPBaseURL = "https://api.example.com"
		c.DPoPNonceInterval = time.Minute
	})
	h := v.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	serve := func(nonce string) *httptest.ResponseRecorder {
		p := k.proofFor(tok, "POST", apiURL, now)
		if nonce != "" {
			p = p.with(nil, map[string]any{"nonce": nonce})
		}
		r := httptest.NewRequest(http.MethodPost, "/events", nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", p.signed(t, k))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := serve("")
	assert.Equal(t, 401, w.Code)
	assert.Equal(t, `DPoP error="use_dpop_nonce", error_description="use the DPoP nonce: the proof has no nonce", `+algsParam, w.Header().Get("WWW-Authenticate"))
	nonce := w.Header().Get("DPoP-Nonce")
	require.Equal(t, v.DPoPNonce(), nonce)
	w = serve(nonce)
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, nonce, w.Header().Get("DPoP-Nonce"), "the current nonce goes with every DPoP answer")
}

// TestMiddlewareReplayCacheFull: 503 with Retry-After, not a 401 that
// would tell a good client its proof is bad.
func TestMiddlewareReplayCacheFull(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) {
		c.DPoPBaseURL = "https://api.example.com"
		c.DPoPReplayCacheSize = 1
	})
	h := v.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	codes := []int{}
	var last *httptest.ResponseRecorder
	for range 2 {
		r := httptest.NewRequest(http.MethodPost, "/events", nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", k.proofFor(tok, "POST", apiURL, now.Add(-20*time.Second)).signed(t, k))
		last = httptest.NewRecorder()
		h.ServeHTTP(last, r)
		codes = append(codes, last.Code)
	}
	assert.Equal(t, []int{200, 503}, codes)
	assert.Equal(t, "41", last.Header().Get("Retry-After"), "the remembered proof leaves its window in 40 s")
}

// TestMiddlewareDPoPURL: the URL the proof must name, over a real
// connection: from the request (Host and TLS), or from Config behind a
// proxy.
func TestMiddlewareDPoPURL(t *testing.T) {
	t.Parallel()
	keys(t)
	jwks := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	call := func(t *testing.T, client *http.Client, target, htu string) int {
		req, err := http.NewRequest("PUT", target, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", k.proofFor(tok, "PUT", htu, now).signed(t, k))
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("default: the request's own URL", func(t *testing.T) {
		v, _ := newTestVerifier(t, jwks, nil)
		plain := httptest.NewServer(v.Middleware()(ok))
		t.Cleanup(plain.Close)
		assert.Equal(t, 200, call(t, plain.Client(), plain.URL+"/a/b?q=1", plain.URL+"/a/b"))
		assert.Equal(t, 401, call(t, plain.Client(), plain.URL+"/a/b", strings.Replace(plain.URL, "http:", "https:", 1)+"/a/b"))
		overTLS := httptest.NewTLSServer(v.Middleware()(ok))
		t.Cleanup(overTLS.Close)
		assert.Equal(t, 200, call(t, overTLS.Client(), overTLS.URL+"/a", overTLS.URL+"/a"))
	})
	t.Run("behind a proxy: DPoPBaseURL", func(t *testing.T) {
		v, _ := newTestVerifier(t, jwks, func(c *Config) { c.DPoPBaseURL = "https://api.example.com/calendar" })
		internal := httptest.NewServer(v.Middleware()(ok))
		t.Cleanup(internal.Close)
		assert.Equal(t, 200, call(t, internal.Client(), internal.URL+"/events", "https://api.example.com/calendar/events"))
		assert.Equal(t, 401, call(t, internal.Client(), internal.URL+"/events", internal.URL+"/events"), "the internal URL is not what the client addressed")
	})
	t.Run("behind a proxy: DPoPRequestURL", func(t *testing.T) {
		v, _ := newTestVerifier(t, jwks, func(c *Config) {
			c.DPoPBaseURL = "https://ignored.example.com"
			c.DPoPRequestURL = func(r *http.Request) string { return "https://" + r.Header.Get("X-Proxy-Host") + r.URL.Path }
		})
		internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("X-Proxy-Host", "tenant.example.com") // what the proxy would set
			v.Middleware()(ok).ServeHTTP(w, r)
		}))
		t.Cleanup(internal.Close)
		assert.Equal(t, 200, call(t, internal.Client(), internal.URL+"/x", "https://tenant.example.com/x"))
	})
}
