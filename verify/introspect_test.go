package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	introID     = "resource-server"
	introSecret = "s3cr:t%+ é"
)

// introServer is a fake RFC 7662 endpoint: it answers each token with the
// JSON set for it ({"active":false} otherwise), checks the client's
// credentials, and counts requests.
type introServer struct {
	*httptest.Server
	hits    atomic.Int64
	running atomic.Int64 // requests being answered now
	overlap atomic.Int64 // requests that began while another was running
	mu      sync.Mutex
	answers map[string]string
	status  int
	gate    chan struct{} // when set, every request waits for it to close
}

func newIntroServer(t testing.TB) *introServer {
	s := &introServer{answers: map[string]string{}, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.running.Add(1) > 1 {
			s.overlap.Add(1)
		}
		defer s.running.Add(-1)
		s.mu.Lock()
		gate, status := s.gate, s.status
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		id, secret, ok := r.BasicAuth()
		if !ok || id != introID || secret != strings.NewReplacer(":", "%3A", "%", "%25", "+", "%2B", " ", "+", "é", "%C3%A9").Replace(introSecret) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost || r.PostFormValue("token_type_hint") != "access_token" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		answer, known := s.answers[r.PostFormValue("token")]
		s.mu.Unlock()
		if !known {
			answer = `{"active":false}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, answer)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *introServer) set(token string, answer any) {
	b, ok := answer.(string)
	if !ok {
		j, _ := json.Marshal(answer)
		b = string(j)
	}
	s.mu.Lock()
	s.answers[token] = b
	s.mu.Unlock()
}

// active is Hydra's answer for a client-credentials token.
func active() map[string]any {
	return map[string]any{
		"active": true, "client_id": testClientID, "sub": testClientID, "aud": []string{"event"},
		"scope": "event.create event.view", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"iss": testIssuer, "token_type": "Bearer", "token_use": "access_token",
	}
}

func newIntroVerifier(t testing.TB, s *introServer, mod func(*Config)) (*Verifier, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(now)
	cfg := Config{IntrospectionURL: s.URL + "/admin/oauth2/introspect", IntrospectionClientID: introID,
		IntrospectionClientSecret: introSecret, Audience: testAudience, Issuer: testIssuer}
	if mod != nil {
		mod(&cfg)
	}
	v, err := newVerifier(context.Background(), cfg, fc)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v, fc
}

// TestIntrospectionRules: the answer must say active and pass the same
// rules as a JWT (issue item 8).
func TestIntrospectionRules(t *testing.T) {
	t.Parallel()
	s := newIntroServer(t)
	v, _ := newIntroVerifier(t, s, func(c *Config) { c.ClientIDs = []string{testClientID} })
	machines, _ := newIntroVerifier(t, s, func(c *Config) { c.ClientCredentialsOnly = true })
	answer := func(mod func(map[string]any)) map[string]any {
		a := active()
		mod(a)
		return a
	}
	tests := []struct {
		name   string
		v      *Verifier
		answer any
		err    error
	}{
		{"active", v, active(), nil},
		{"aud a string", v, answer(func(a map[string]any) { a["aud"] = "event" }), nil},
		{"no exp", v, answer(func(a map[string]any) { delete(a, "exp") }), nil},
		{"inactive", v, `{"active":false}`, ErrInactive},
		{"active missing", v, answer(func(a map[string]any) { delete(a, "active") }), ErrInactive},
		{"active a string", v, answer(func(a map[string]any) { a["active"] = "true" }), ErrInactive},
		{"wrong audience", v, answer(func(a map[string]any) { a["aud"] = []string{"file"} }), ErrAudience},
		{"no audience", v, answer(func(a map[string]any) { delete(a, "aud") }), ErrAudience},
		{"wrong issuer", v, answer(func(a map[string]any) { a["iss"] = "http://other" }), ErrIssuer},
		{"no issuer", v, answer(func(a map[string]any) { delete(a, "iss") }), ErrIssuer},
		{"client not allowed", v, answer(func(a map[string]any) { a["client_id"] = "intruder" }), ErrClientID},
		{"a refresh token", v, answer(func(a map[string]any) { a["token_use"] = "refresh_token" }), ErrTokenType},
		{"expired", v, answer(func(a map[string]any) { a["exp"] = now.Add(-time.Hour).Unix() }), ErrExpired},
		{"malformed scope", v, answer(func(a map[string]any) { a["scope"] = "a  b" }), ErrScopeClaim},
		{"a user's token on a machine-only route", machines, answer(func(a map[string]any) { a["sub"] = "user-1" }), ErrTokenType},
		{"duplicate member", v, `{"active":true,"aud":["event"],"aud":["file"]}`, ErrIntrospection},
		{"not JSON", v, `<html>`, ErrIntrospection},
		{"two objects", v, `{"active":false} {"active":true}`, ErrIntrospection},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := fmt.Sprintf("ory_at_%d.opaque", i)
			s.set(token, tc.answer)
			c, err := tc.v.Verify(context.Background(), token)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				assert.Equal(t, tc.err != ErrIntrospection, isRejection(err), "only answers about the token are rejections")
				assert.NotContains(t, err.Error(), token)
				assert.NotContains(t, err.Error(), "s3cr")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, []string{"event.create", "event.view"}, c.Scopes)
			assert.Equal(t, testClientID, c.ClientID)
			assert.Equal(t, KindClientCredentials, c.Kind)
			var extra struct {
				TokenUse string `json:"token_use"`
			}
			require.NoError(t, c.Decode(&extra))
			assert.Equal(t, "access_token", extra.TokenUse)
		})
	}
}

func isRejection(err error) bool {
	_, ok := err.(*rejection)
	return ok
}

// TestIntrospectionFailures: an endpoint that cannot answer says nothing
// about the token: ErrIntrospection, not ErrInvalidToken.
func TestIntrospectionFailures(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusUnauthorized, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			s := newIntroServer(t)
			s.status = status
			s.set("tok", active())
			v, _ := newIntroVerifier(t, s, nil)
			_, err := v.Verify(context.Background(), "tok")
			require.ErrorIs(t, err, ErrIntrospection)
			require.NotErrorIs(t, err, ErrInvalidToken)
			assert.Contains(t, err.Error(), fmt.Sprint(status))
		})
	}
	t.Run("wrong credentials", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		v, _ := newIntroVerifier(t, s, func(c *Config) { c.IntrospectionClientSecret = "wrong" })
		_, err := v.Verify(context.Background(), "tok")
		require.ErrorIs(t, err, ErrIntrospection)
		assert.NotContains(t, err.Error(), "wrong")
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		v, _ := newIntroVerifier(t, s, nil)
		s.Close()
		_, err := v.Verify(context.Background(), "tok")
		require.ErrorIs(t, err, ErrIntrospection)
	})
}

// TestIntrospectionCache: an answer is reused, never past its exp nor
// IntrospectionCacheTTL, and not at all when the TTL is negative.
func TestIntrospectionCache(t *testing.T) {
	t.Parallel()
	t.Run("reused within the TTL, asked again after it", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		s.set("tok", active())
		v, fc := newIntroVerifier(t, s, nil)
		first, err := v.Verify(context.Background(), "tok")
		require.NoError(t, err)
		fc.Advance(DefaultIntrospectionCacheTTL - time.Second)
		again, err := v.Verify(context.Background(), "tok")
		require.NoError(t, err)
		assert.Same(t, first, again)
		assert.EqualValues(t, 1, s.hits.Load())

		s.set("tok", `{"active":false}`) // revoked
		fc.Advance(time.Second)
		_, err = v.Verify(context.Background(), "tok")
		require.ErrorIs(t, err, ErrInactive)
		assert.EqualValues(t, 2, s.hits.Load())
	})
	t.Run("never past exp", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		a := active()
		a["exp"] = now.Add(10 * time.Second).Unix()
		s.set("tok", a)
		v, fc := newIntroVerifier(t, s, func(c *Config) { c.Leeway = -1 })
		_, err := v.Verify(context.Background(), "tok")
		require.NoError(t, err)
		fc.Advance(10 * time.Second)
		_, err = v.Verify(context.Background(), "tok")
		require.ErrorIs(t, err, ErrExpired)
		assert.EqualValues(t, 1, s.hits.Load())
	})
	t.Run("negative TTL asks every time", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		s.set("tok", active())
		v, _ := newIntroVerifier(t, s, func(c *Config) { c.IntrospectionCacheTTL = -1 })
		for range 3 {
			_, err := v.Verify(context.Background(), "tok")
			require.NoError(t, err)
		}
		assert.EqualValues(t, 3, s.hits.Load())
	})
	t.Run("inactive answers are not kept", func(t *testing.T) {
		t.Parallel()
		s := newIntroServer(t)
		v, _ := newIntroVerifier(t, s, nil)
		for range 2 {
			_, err := v.Verify(context.Background(), "tok")
			require.ErrorIs(t, err, ErrInactive)
		}
		assert.EqualValues(t, 2, s.hits.Load())
	})
}

// TestIntrospectionSingleFlight: however many callers present one token at
// once, one request is in flight; a caller that gives up does not fail
// the others. Repeated, since a race window is narrow. (Without a cache a
// caller that arrives after the request ended asks again: requests for a
// token never overlap, but may follow one another.)
func TestIntrospectionSingleFlight(t *testing.T) {
	t.Parallel()
	s := newIntroServer(t)
	v, _ := newIntroVerifier(t, s, func(c *Config) { c.IntrospectionCacheTTL = -1 })
	cached, _ := newIntroVerifier(t, s, nil)
	for burst := range 50 {
		for _, v := range []*Verifier{v, cached} {
			token := fmt.Sprintf("tok-%d-%p", burst, v)
			s.set(token, active())
			gate := make(chan struct{})
			s.mu.Lock()
			s.gate = gate
			s.mu.Unlock()
			before := s.hits.Load()

			ctx, cancel := context.WithCancel(context.Background())
			quitter := make(chan error, 1)
			go func() {
				_, err := v.Verify(ctx, token)
				quitter <- err
			}()
			var wg sync.WaitGroup
			var ok atomic.Int64
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := v.Verify(context.Background(), token); err == nil {
						ok.Add(1)
					}
				}()
			}
			require.Eventually(t, func() bool { return s.hits.Load() > before }, 5*time.Second, time.Millisecond)
			cancel()
			require.ErrorIs(t, <-quitter, context.Canceled)
			close(gate)
			wg.Wait()
			require.EqualValues(t, 20, ok.Load(), "burst %d", burst)
			require.Zero(t, s.overlap.Load(), "burst %d: requests for one token never overlap", burst)
			if v == cached {
				require.EqualValues(t, 1, s.hits.Load()-before, "burst %d: with the cache, one request per token", burst)
			}
		}
	}
}

// TestJWTAndOpaqueSideBySide: with both a JWKS and an introspection
// endpoint, a compact JWS is checked locally and anything else is
// introspected.
func TestJWTAndOpaqueSideBySide(t *testing.T) {
	t.Parallel()
	keys(t)
	jwks := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	s := newIntroServer(t)
	s.set("ory_at_x.y", active())
	v, _ := newIntroVerifier(t, s, func(c *Config) { c.JWKSURL = jwks.URL })
	_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()))
	require.NoError(t, err)
	assert.Zero(t, s.hits.Load(), "a JWT is never introspected")
	_, err = v.Verify(context.Background(), "ory_at_x.y")
	require.NoError(t, err)
	assert.EqualValues(t, 1, s.hits.Load())
	_, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-a", goodClaims()))
	require.ErrorIs(t, err, ErrSignature, "a JWT that fails is not introspected instead")
	assert.EqualValues(t, 1, s.hits.Load())
}
