package otelm2m_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/otelm2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// issuer serves a JWKS and mints tokens signed by its key.
type issuer struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t testing.TB) *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pub, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "s-1", ALG: "RS256", USE: "sig"}})
	require.NoError(t, err)
	jwks, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
	require.NoError(t, err)
	is := &issuer{key: key, Server: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) }))}
	t.Cleanup(is.Close)
	return is
}

func (is *issuer) mint(t testing.TB, aud string, exp time.Time, scopes ...string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": []string{aud}, "scp": append([]string{}, scopes...), "stt": 1, "client_id": clientID, "sub": clientID,
		"iss": is.URL, "iat": time.Now().Unix(), "exp": exp.Unix(),
	})
	tok.Header["kid"] = "s-1"
	raw, err := tok.SignedString(is.key)
	require.NoError(t, err)
	return raw
}

func newVerifier(t testing.TB, is *issuer) (*otelm2m.Verifier, *telemetry) {
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: is.URL + "/jwks.json", Issuer: is.URL, Audience: "event"})
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	tel := &telemetry{reader: sdkmetric.NewManualReader()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() { tel.mp.Shutdown(context.Background()) })
	ov, err := otelm2m.NewVerifier(v, otelm2m.VerifierConfig{Audience: "event", MeterProvider: tel.mp})
	require.NoError(t, err)
	return ov, tel
}

// The middleware answers as verify's does and counts each decision by
// reason.
func TestVerifierMiddleware(t *testing.T) {
	is := newIssuer(t)
	ov, tel := newVerifier(t, is)
	hour := time.Now().Add(time.Hour)
	h := ov.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := verify.ClaimsFromContext(r.Context())
		fmt.Fprint(w, ok)
	}))

	tests := []struct {
		name   string
		authz  string
		status int
		point  string
	}{
		{"valid", "Bearer " + is.mint(t, "event", hour, "event.create"), 200, "{m2m.audience=event,m2m.outcome=accepted}"},
		{"no token", "", 401, "{error.type=no_token,m2m.audience=event,m2m.outcome=rejected}"},
		{"malformed", "Bearer not-a-jwt", 401, "{error.type=malformed,m2m.audience=event,m2m.outcome=rejected}"},
		{"expired", "Bearer " + is.mint(t, "event", time.Now().Add(-time.Hour), "event.create"), 401, "{error.type=expired,m2m.audience=event,m2m.outcome=rejected}"},
		{"other audience", "Bearer " + is.mint(t, "file", hour, "event.create"), 401, "{error.type=audience,m2m.audience=event,m2m.outcome=rejected}"},
		{"scope missing", "Bearer " + is.mint(t, "event", hour, "event.view"), 403, "{error.type=insufficient_scope,m2m.audience=event,m2m.outcome=rejected}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tel.points(t)["m2m.server.token.verifications"+tt.point]
			req := httptest.NewRequest(http.MethodPost, "/events", nil)
			if tt.authz != "" {
				req.Header.Set("Authorization", tt.authz)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tt.status, rec.Code)
			assert.Equal(t, before+1, tel.points(t)["m2m.server.token.verifications"+tt.point])
		})
	}
	assert.Len(t, tel.points(t), len(tests), "one data point per outcome, nothing else")
}

// Verify records what it returns; Record and ObserveRPC count decisions
// made elsewhere.
func TestVerifierRecord(t *testing.T) {
	is := newIssuer(t)
	ov, tel := newVerifier(t, is)
	ctx := context.Background()
	c, err := ov.Verify(ctx, is.mint(t, "event", time.Now().Add(time.Hour)))
	require.NoError(t, err)
	assert.Equal(t, clientID, c.ClientID)
	_, err = ov.Verify(ctx, "x.y.z")
	require.ErrorIs(t, err, verify.ErrInvalidToken)
	ov.Record(ctx, errors.New("something else"))
	ov.Record(ctx, fmt.Errorf("%w: 503", verify.ErrIntrospection))
	ov.ObserveRPC(ctx, "/calendar.v1.Calendar/CreateEvent", fmt.Errorf("wrapped: %w", verify.ErrInsufficientScope))
	ov.ObserveRPC(ctx, "/calendar.v1.Calendar/CreateEvent", nil)

	assert.Equal(t, map[string]float64{
		"m2m.server.token.verifications{m2m.audience=event,m2m.outcome=accepted}":                               2,
		"m2m.server.token.verifications{error.type=malformed,m2m.audience=event,m2m.outcome=rejected}":          1,
		"m2m.server.token.verifications{error.type=_OTHER,m2m.audience=event,m2m.outcome=error}":                1,
		"m2m.server.token.verifications{error.type=introspection,m2m.audience=event,m2m.outcome=error}":         1,
		"m2m.server.token.verifications{error.type=insufficient_scope,m2m.audience=event,m2m.outcome=rejected}": 1,
	}, tel.points(t))
	for _, err := range []error{nil, verify.ErrExpired, errors.New("other")} {
		assert.Zero(t, testing.AllocsPerRun(100, func() { ov.Record(ctx, err) }))
	}
}

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{verify.ErrNoToken, "no_token"},
		{fmt.Errorf("%w: %w", verify.ErrInvalidToken, verify.ErrExpired), "expired"},
		{fmt.Errorf("%w: %w", verify.ErrInvalidToken, verify.ErrUnknownKey), "unknown_key"},
		{fmt.Errorf("%w: %w", verify.ErrInsufficientScope, errors.New("unlisted method")), "insufficient_scope"},
		{verify.ErrInvalidToken, "_OTHER"},
		{fmt.Errorf("%w: two headers", verify.ErrInvalidRequest), "invalid_request"},
		{fmt.Errorf("%w: %w", verify.ErrInvalidToken, verify.ErrInactive), "inactive"},
		{verify.ErrIntrospection, "introspection"},
		{context.Canceled, "_OTHER"},
	} {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) { assert.Equal(t, tt.want, otelm2m.Reason(tt.err)) })
	}
	_, err := otelm2m.NewVerifier(nil, otelm2m.VerifierConfig{})
	assert.ErrorIs(t, err, otelm2m.ErrInvalidConfig)
}
