package m2mgrpc_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2m/m2mgrpc"
	"github.com/m2mauth/m2m/m2mgrpc/internal/calendarpb"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// decisions records what a Guard reported to GuardConfig.Observe.
type decisions struct {
	mu   sync.Mutex
	errs map[string]error // by method, the last decision
}

func (d *decisions) observe(_ context.Context, method string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs[method] = err
}

func (d *decisions) last(method string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errs[method]
}

// The Guard refuses with Unauthenticated or PermissionDenied, names the
// rule that failed, never echoes the token, and lets valid RPCs through
// with their claims; unary and stream alike.
func TestGuard(t *testing.T) {
	auth := startAuth(t)
	d := &decisions{errs: map[string]error{}}
	g := newGuard(t, m2mgrpc.GuardConfig{
		Verifier:     newVerifier(t, auth, "event"),
		MethodScopes: map[string][]string{calendarpb.CreateEvent: {"event.create"}},
		Public:       []string{calendarpb.Ping},
		Observe:      d.observe,
	})
	addr, cal := serve(t, g)
	conn := dial(t, addr)
	hour := time.Now().Add(time.Hour)
	good := auth.Mint("event", []string{"event.create", "event.view"}, hour)

	tests := []struct {
		name    string
		authz   []string // authorization values sent
		method  string
		code    codes.Code
		message string
		reason  error // what Observe saw
	}{
		{"valid, unary", []string{"Bearer " + good}, calendarpb.CreateEvent, codes.OK, "", nil},
		{"scheme in any case", []string{"bEaReR " + good}, calendarpb.CreateEvent, codes.OK, "", nil},
		{"no token", nil, calendarpb.CreateEvent, codes.Unauthenticated, "m2mgrpc: a bearer token is required", verify.ErrNoToken},
		{"not bearer", []string{"Basic " + good}, calendarpb.CreateEvent, codes.Unauthenticated, "a bearer token is required", verify.ErrNoToken},
		{"empty bearer", []string{"Bearer "}, calendarpb.CreateEvent, codes.Unauthenticated, "a bearer token is required", verify.ErrNoToken},
		{"two values", []string{"Bearer " + good, "Bearer " + good}, calendarpb.CreateEvent, codes.Unauthenticated, "m2mgrpc: send one authorization value", verify.ErrInvalidRequest},
		{"malformed", []string{"Bearer not-a-jwt"}, calendarpb.CreateEvent, codes.Unauthenticated, "m2mgrpc: invalid token: malformed token", verify.ErrMalformed},
		{"expired", []string{"Bearer " + auth.Mint("event", []string{"event.create"}, time.Now().Add(-time.Hour))}, calendarpb.CreateEvent,
			codes.Unauthenticated, "m2mgrpc: invalid token: token expired", verify.ErrExpired},
		{"other audience", []string{"Bearer " + auth.Mint("file", []string{"event.create"}, hour)}, calendarpb.CreateEvent,
			codes.Unauthenticated, "m2mgrpc: invalid token: wrong audience", verify.ErrAudience},
		{"bad signature", []string{"Bearer " + good[:len(good)-4] + "AAAA"}, calendarpb.CreateEvent,
			codes.Unauthenticated, "m2mgrpc: invalid token: bad signature", verify.ErrSignature},
		{"scope missing", []string{"Bearer " + auth.Mint("event", []string{"event.view"}, hour)}, calendarpb.CreateEvent,
			codes.PermissionDenied, "m2mgrpc: insufficient scope: the method requires event.create", verify.ErrInsufficientScope},
		{"unlisted method", []string{"Bearer " + good}, calendarpb.ListEvents, codes.PermissionDenied, "not open to any token", m2mgrpc.ErrUnlistedMethod},
		{"unlisted method, no token", nil, calendarpb.ListEvents, codes.Unauthenticated, "a bearer token is required", verify.ErrNoToken},
		{"public method, no token", nil, calendarpb.Ping, codes.OK, "", nil},
		{"public method, bad token", []string{"Bearer not-a-jwt"}, calendarpb.Ping, codes.OK, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			for _, v := range tt.authz {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
			}
			before := len(cal.seen())
			var err error
			switch tt.method {
			case calendarpb.CreateEvent:
				_, err = conn.CreateEvent(ctx, "x")
			case calendarpb.ListEvents:
				_, err = conn.ListEvents(ctx, "")
			case calendarpb.Ping:
				_, err = conn.Ping(ctx)
			}
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			assert.Contains(t, msg, tt.message)
			for _, v := range tt.authz {
				if tok := v[len("Bearer "):]; len(tok) > 8 {
					assert.NotContains(t, msg, tok, "the token must not be echoed")
				}
			}
			if tt.code != codes.OK {
				assert.Len(t, cal.seen(), before, "a refused RPC must not reach the handler")
				assert.ErrorIs(t, d.last(tt.method), tt.reason)
				return
			}
			if tt.method != calendarpb.Ping {
				require.NoError(t, d.last(tt.method))
				seen := cal.seen()
				require.Len(t, seen, before+1)
				assert.Equal(t, "task-service", seen[before].claims.ClientID)
			}
		})
	}
}

// Stream RPCs are guarded like unary ones, and the stream's context
// carries the claims.
func TestGuardStream(t *testing.T) {
	auth := startAuth(t)
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))
	conn := dial(t, addr)
	hour := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"valid", auth.Mint("event", []string{"event.view"}, hour), codes.OK},
		{"expired", auth.Mint("event", []string{"event.view"}, time.Now().Add(-time.Hour)), codes.Unauthenticated},
		{"scope missing", auth.Mint("event", []string{"event.create"}, hour), codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(cal.seen())
			list, err := conn.ListEvents(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tt.token), "")
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			if tt.code != codes.OK {
				assert.Len(t, cal.seen(), before)
				assert.NotContains(t, status.Convert(err).Message(), tt.token)
				return
			}
			assert.Equal(t, []string{"standup (scopes: event.view)", "retro (scopes: event.view)"}, list)
		})
	}
}

func TestNewGuard(t *testing.T) {
	auth := startAuth(t)
	v := newVerifier(t, auth, "event")
	for _, tt := range []struct {
		name string
		cfg  m2mgrpc.GuardConfig
	}{
		{"no verifier", m2mgrpc.GuardConfig{MethodScopes: eventScopes}},
		{"no methods", m2mgrpc.GuardConfig{Verifier: v}},
		{"not a full method", m2mgrpc.GuardConfig{Verifier: v, MethodScopes: map[string][]string{"calendar.v1.Calendar/CreateEvent": nil}}},
		{"bad scope", m2mgrpc.GuardConfig{Verifier: v, MethodScopes: map[string][]string{calendarpb.CreateEvent: {"event create"}}}},
		{"public and scoped", m2mgrpc.GuardConfig{Verifier: v, MethodScopes: eventScopes, Public: []string{calendarpb.CreateEvent}}},
		{"bad public", m2mgrpc.GuardConfig{Verifier: v, Public: []string{"Ping"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, err := m2mgrpc.NewGuard(tt.cfg)
			assert.Nil(t, g)
			assert.True(t, errors.Is(err, m2mgrpc.ErrInvalidConfig), "%v", err)
		})
	}
}

// When the verifier cannot decide (its introspection endpoint fails), the
// RPC gets Unavailable, not a verdict on its token.
func TestGuardVerifierCannotDecide(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	v, err := verify.New(context.Background(), verify.Config{IntrospectionURL: down.URL, IntrospectionClientID: "calendar",
		IntrospectionClientSecret: "calendar-secret", Audience: "event"})
	require.NoError(t, err)
	defer v.Close()
	d := &decisions{errs: map[string]error{}}
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: v, MethodScopes: eventScopes, Observe: d.observe}))

	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer opaque-token-value")
	_, err = dial(t, addr).CreateEvent(ctx, "x")
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Equal(t, "m2mgrpc: the token could not be checked now", status.Convert(err).Message())
	assert.ErrorIs(t, d.last(calendarpb.CreateEvent), verify.ErrIntrospection)
	assert.Empty(t, cal.seen())
}
