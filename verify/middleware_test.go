package verify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMiddleware(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	h := v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		require.True(t, ok)
		io.WriteString(w, "hello "+c.ClientID)
	}))
	good := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	claims := goodClaims()
	claims["scp"] = []string{"event.view", "event.creat", "Event.Create", "event.create.all"}
	nearMiss := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", claims)
	expiredClaims := goodClaims()
	expiredClaims["exp"] = now.Unix() - 3600
	expired := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", expiredClaims)

	tests := []struct {
		name, auth string
		status     int
		challenge  string
		body       string
	}{
		{"ok", "Bearer " + good, 200, "", "hello task-service"},
		{"scheme case-insensitive", "bEaReR " + good, 200, "", "hello task-service"},
		{"no header", "", 401, `Bearer`, "invalid_request"},
		{"basic scheme", "Basic dXNlcjpwYXNz", 401, `Bearer`, "invalid_request"},
		{"bearer without token", "Bearer ", 401, `Bearer`, "invalid_request"},
		{"garbage", "Bearer not-a-jwt", 401, `Bearer error="invalid_token", error_description="malformed token: not a compact JWS (three dot-separated parts)"`, "invalid_token"},
		{"expired", "Bearer " + expired, 401, `Bearer error="invalid_token", error_description="token expired: exp 2026-11-27T11:00:00Z is before now 2026-11-27T12:00:00Z (leeway 30s)"`, "token expired"},
		{"scope near misses", "Bearer " + nearMiss, 403, `Bearer error="insufficient_scope", scope="event.create"`, "insufficient_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/events", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Equal(t, tc.challenge, rec.Header().Get("WWW-Authenticate"))
			assert.Contains(t, rec.Body.String(), tc.body)
			if tc.status != 200 {
				assert.NotContains(t, rec.Body.String(), good[:40])
				assert.NotContains(t, rec.Header().Get("WWW-Authenticate"), "eyJ", "the token is never echoed")
			}
		})
	}
	_, ok := ClaimsFromContext(httptest.NewRequest("GET", "/", nil).Context())
	assert.False(t, ok)
}

func TestMiddlewareRefusesSessionTokensOnScopedRoutes(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.AcceptSessionTokens = true })
	claims := goodClaims()
	claims["stt"], claims["sessionHandle"] = 0, "h"
	delete(claims, "scp")
	session := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", claims)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := ClaimsFromContext(r.Context())
		if c.Kind == KindSession {
			io.WriteString(w, "session")
		}
	})
	for _, tc := range []struct {
		route http.Handler
		want  int
		body  string
	}{{v.Middleware()(ok), 200, "session"}, {v.Middleware("event.create")(ok), 403, "insufficient_scope"}} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+session)
		rec := httptest.NewRecorder()
		tc.route.ServeHTTP(rec, req)
		assert.Equal(t, tc.want, rec.Code)
		assert.Contains(t, rec.Body.String(), tc.body)
	}
}

// TestMiddlewareBadRequests: RFC 6750 §2 allows one method and one token;
// anything else is 400 invalid_request, never "the first one wins"
// (issue item 5).
func TestMiddlewareBadRequests(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	reached := false
	h := v.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	good := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	other := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["jti"] = "j2" }))

	tests := []struct {
		name   string
		url    string
		auth   []string
		status int
		desc   string
	}{
		{"two Authorization headers", "/", []string{"Bearer " + good, "Bearer " + other}, 400, "more than one Authorization header"},
		{"the same header twice", "/", []string{"Bearer " + good, "Bearer " + good}, 400, "more than one Authorization header"},
		{"bearer and basic", "/", []string{"Bearer " + good, "Basic dXNlcjpwYXNz"}, 400, "more than one Authorization header"},
		{"header and query", "/?access_token=" + other, []string{"Bearer " + good}, 400, "both the Authorization header and the URL"},
		{"header and an escaped query name", "/?access%5Ftoken=" + other, []string{"Bearer " + good}, 400, "both the Authorization header and the URL"},
		{"two tokens in one header", "/", []string{"Bearer " + good + ", Bearer " + other}, 400, "not a b64token"},
		{"a space inside the token", "/", []string{"Bearer " + good[:20] + " " + good[20:]}, 400, "not a b64token"},
		{"one header", "/?q=1", []string{"Bearer " + good}, 200, ""},
		{"only a query token (not a supported method)", "/?access_token=" + good, nil, 401, "a bearer token is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reached = false
			req := httptest.NewRequest(http.MethodGet, tc.url, nil)
			for _, a := range tc.auth {
				req.Header.Add("Authorization", a)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Equal(t, tc.status == 200, reached)
			assert.Contains(t, rec.Body.String(), tc.desc)
			if tc.status == 400 {
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `Bearer error="invalid_request"`)
			}
			assert.NotContains(t, rec.Body.String()+rec.Header().Get("WWW-Authenticate"), good[len(good)-30:])
		})
	}
}

// TestMiddlewareHeaderSafety: a plain func works through
// http.HandlerFunc, and the challenge never carries characters RFC 6750
// §3 forbids even when the reason quotes a hostile claim.
func TestMiddlewareHeaderSafety(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	list := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "listed") }
	h := v.Middleware()(http.HandlerFunc(list))
	tok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), func(c jwt.MapClaims) { c["aud"] = "a\"b\\c\r\nX-Evil: 1 é" }))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	challenge := rec.Header().Get("WWW-Authenticate")
	desc := strings.TrimSuffix(strings.TrimPrefix(challenge, `Bearer error="invalid_token", error_description="`), `"`)
	for _, r := range desc {
		assert.True(t, r >= 0x20 && r <= 0x7E && r != '"' && r != '\\', "%q in %q", r, desc)
	}
	assert.Contains(t, rec.Body.String(), "wrong audience")

	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, "listed", rec.Body.String())
}

func TestNewContext(t *testing.T) {
	t.Parallel()
	c := &Claims{ClientID: "x"}
	got, ok := ClaimsFromContext(NewContext(context.Background(), c))
	require.True(t, ok)
	assert.Same(t, c, got)
	_, ok = ClaimsFromContext(NewContext(context.Background(), nil))
	assert.False(t, ok)
}
