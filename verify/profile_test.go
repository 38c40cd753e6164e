package verify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProfiles pins each profile's token-type rule and which Kind a token
// is (issue items 1 and 6).
func TestProfiles(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	st, _ := newTestVerifier(t, srv, nil)
	stSessions, _ := newTestVerifier(t, srv, func(c *Config) { c.AcceptSessionTokens = true })
	stMachines, _ := newTestVerifier(t, srv, func(c *Config) { c.ClientCredentialsOnly = true })
	rfc, _ := newTestVerifier(t, srv, func(c *Config) { c.Profile = ProfileRFC9068 })
	rfcMachines, _ := newTestVerifier(t, srv, func(c *Config) { c.Profile = ProfileRFC9068; c.ClientCredentialsOnly = true })
	hydra, _ := newTestVerifier(t, srv, func(c *Config) { c.Profile = ProfileHydra })

	at := map[string]any{"typ": "at+jwt"}
	session := func(c jwt.MapClaims) {
		c["stt"], c["sessionHandle"], c["sub"] = 0, "h1", "user-1"
		delete(c, "aud")
		delete(c, "scp")
	}
	delegated := func(c jwt.MapClaims) { c["sessionHandle"], c["sub"] = "h1", "user-1" }
	user := func(c jwt.MapClaims) { c["sub"] = "user-1" }

	tests := []struct {
		name   string
		v      *Verifier
		header map[string]any
		claims jwt.MapClaims
		want   Kind
		err    error
	}{
		{"supertokens client credentials", st, nil, goodClaims(), KindClientCredentials, nil},
		{"supertokens user-delegated (sessionHandle)", st, nil, with(goodClaims(), delegated), KindUserDelegated, nil},
		{"supertokens empty sessionHandle is no user", st, nil, with(goodClaims(), func(c jwt.MapClaims) { c["sessionHandle"] = "" }), KindClientCredentials, nil},
		{"supertokens session token, accepted", stSessions, nil, with(goodClaims(), session), KindSession, nil},
		{"supertokens session token, not asked for", st, nil, with(goodClaims(), session), 0, ErrTokenType},
		{"supertokens stt 0 without sessionHandle", stSessions, nil, with(goodClaims(), func(c jwt.MapClaims) { c["stt"] = 0 }), 0, ErrTokenType},
		{"supertokens ID token", stSessions, nil, with(goodClaims(), func(c jwt.MapClaims) { c["stt"] = 2 }), 0, ErrTokenType},
		{"supertokens stt missing", st, nil, rfcClaims(), 0, ErrTokenType},
		{"supertokens stt a string", st, nil, with(goodClaims(), func(c jwt.MapClaims) { c["stt"] = "1" }), 0, ErrTokenType},
		{"supertokens stt 1.5", st, nil, with(goodClaims(), func(c jwt.MapClaims) { c["stt"] = 1.5 }), 0, ErrTokenType},
		{"supertokens machine-only refuses a user's token", stMachines, nil, with(goodClaims(), delegated), 0, ErrTokenType},
		{"supertokens machine-only takes a client's token", stMachines, nil, goodClaims(), KindClientCredentials, nil},
		{"supertokens does not read typ", st, at, goodClaims(), KindClientCredentials, nil},

		{"rfc9068 at+jwt", rfc, at, rfcClaims(), KindClientCredentials, nil},
		{"rfc9068 application/at+jwt", rfc, map[string]any{"typ": "application/at+jwt"}, rfcClaims(), KindClientCredentials, nil},
		{"rfc9068 typ case-insensitive", rfc, map[string]any{"typ": "AT+JWT"}, rfcClaims(), KindClientCredentials, nil},
		{"rfc9068 user-delegated", rfc, at, with(rfcClaims(), user), KindUserDelegated, nil},
		{"rfc9068 typ JWT", rfc, nil, rfcClaims(), 0, ErrTokenType},
		{"rfc9068 no typ", rfc, map[string]any{"typ": nil}, rfcClaims(), 0, ErrTokenType},
		{"rfc9068 typ not a string", rfc, map[string]any{"typ": 1}, rfcClaims(), 0, ErrMalformed},
		{"rfc9068 ignores stt", rfc, at, with(rfcClaims(), func(c jwt.MapClaims) { c["stt"] = 0 }), KindClientCredentials, nil},
		{"rfc9068 machine-only refuses a user's token", rfcMachines, at, with(rfcClaims(), user), 0, ErrTokenType},

		{"hydra typ JWT", hydra, nil, rfcClaims(), KindClientCredentials, nil},
		{"hydra at+jwt", hydra, at, rfcClaims(), KindClientCredentials, nil},
		{"hydra no typ", hydra, map[string]any{"typ": nil}, rfcClaims(), 0, ErrTokenType},
		{"hydra other typ", hydra, map[string]any{"typ": "dpop+jwt"}, rfcClaims(), 0, ErrTokenType},
		{"hydra ID token (no client_id)", hydra, nil, with(rfcClaims(), func(c jwt.MapClaims) { delete(c, "client_id"); c["sub"] = "user-1" }), 0, ErrMissingClaim},
	}
	for _, claim := range []string{"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} {
		tests = append(tests, struct {
			name   string
			v      *Verifier
			header map[string]any
			claims jwt.MapClaims
			want   Kind
			err    error
		}{"rfc9068 requires " + claim, rfc, at, with(rfcClaims(), func(c jwt.MapClaims) { delete(c, claim) }), 0, ErrMissingClaim})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.v.Verify(context.Background(), mintHeader(t, tc.header, tc.claims))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.ErrorIs(t, err, ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, c.Kind)
		})
	}
}

// TestScopeClaims pins RFC 9068 §2.2.3's scope string beside the scp
// array, and tokens without any scope claim (issue item 1).
func TestScopeClaims(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, func(c *Config) { c.Profile = ProfileHydra })
	tests := []struct {
		name   string
		mod    func(jwt.MapClaims)
		scopes []string
		err    error
	}{
		{"scp array", func(c jwt.MapClaims) { c["scp"] = []string{"a", "b"} }, []string{"a", "b"}, nil},
		{"scope string", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = "a b" }, []string{"a", "b"}, nil},
		{"both, same scopes in another order", func(c jwt.MapClaims) { c["scp"] = []string{"b", "a"}; c["scope"] = "a b" }, []string{"b", "a"}, nil},
		{"both, disagreeing", func(c jwt.MapClaims) { c["scp"] = []string{"a"}; c["scope"] = "a b" }, nil, ErrScopeClaim},
		{"both, disagreeing the other way", func(c jwt.MapClaims) { c["scp"] = []string{"a", "admin"}; c["scope"] = "a" }, nil, ErrScopeClaim},
		{"neither", func(c jwt.MapClaims) { delete(c, "scp") }, nil, nil},
		{"empty scope string", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = "" }, nil, nil},
		{"empty scp", func(c jwt.MapClaims) { c["scp"] = []string{} }, []string{}, nil},
		{"scope with two spaces", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = "a  b" }, nil, ErrScopeClaim},
		{"scope with a leading space", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = " a" }, nil, ErrScopeClaim},
		{"scope with a tab", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = "a\tb" }, nil, ErrScopeClaim},
		{"scope an array", func(c jwt.MapClaims) { delete(c, "scp"); c["scope"] = []string{"a"} }, nil, ErrMalformed},
		{"scp a string", func(c jwt.MapClaims) { c["scp"] = "a b" }, nil, ErrScopeClaim},
		{"scp element with a space", func(c jwt.MapClaims) { c["scp"] = []string{"a b"} }, nil, ErrScopeClaim},
		{"scp element empty", func(c jwt.MapClaims) { c["scp"] = []string{""} }, nil, ErrScopeClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(context.Background(), mintHeader(t, nil, with(rfcClaims(), tc.mod)))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.scopes, c.Scopes)
		})
	}

	t.Run("a token without scopes passes only routes that need none", func(t *testing.T) {
		t.Parallel()
		tok := mintHeader(t, nil, with(rfcClaims(), func(c jwt.MapClaims) { delete(c, "scp") }))
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		for _, tc := range []struct {
			route http.Handler
			want  int
		}{{v.Middleware()(ok), http.StatusOK}, {v.Middleware("event.create")(ok), http.StatusForbidden}} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			tc.route.ServeHTTP(rec, req)
			assert.Equal(t, tc.want, rec.Code)
		}
	})
}

// TestLeeway pins the default 30 s of clock skew on exp, nbf and iat.
func TestLeeway(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	strict, _ := newTestVerifier(t, srv, func(c *Config) { c.Leeway = -1 })
	tests := []struct {
		name string
		v    *Verifier
		mod  func(jwt.MapClaims)
		err  error
	}{
		{"exp 29 s ago", v, func(c jwt.MapClaims) { c["exp"] = now.Add(-29 * time.Second).Unix() }, nil},
		{"exp 31 s ago", v, func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }, ErrExpired},
		{"exp now, no leeway", strict, func(c jwt.MapClaims) { c["exp"] = now.Unix() }, ErrExpired},
		{"nbf in 29 s", v, func(c jwt.MapClaims) { c["nbf"] = now.Add(29 * time.Second).Unix() }, nil},
		{"nbf in 1 s, no leeway", strict, func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Second).Unix() }, ErrNotYetValid},
		{"iat in 29 s", v, func(c jwt.MapClaims) { c["iat"] = now.Add(29 * time.Second).Unix() }, nil},
		{"iat in 31 s", v, func(c jwt.MapClaims) { c["iat"] = now.Add(31 * time.Second).Unix() }, ErrNotYetValid},
		{"fractional exp", v, func(c jwt.MapClaims) { c["exp"] = float64(now.Add(time.Hour).Unix()) + 0.5 }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", with(goodClaims(), tc.mod)))
			if tc.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.err)
			}
		})
	}
}
