package m2mgrpc_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/m2mgrpc"
	"github.com/m2mauth/m2m/m2mgrpc/internal/authtest"
	"github.com/m2mauth/m2m/m2mgrpc/internal/calendarpb"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rotated sets up a Calendar whose verifier has dropped the key that
// signed the token the client has cached: the authorization server rotates
// its key, and a token signed with the new key makes the verifier refetch
// the JWKS.
func rotated(t *testing.T, auth *authtest.Server, addr string, warm func()) {
	t.Helper()
	warm()
	require.NoError(t, auth.RotateKey())
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+auth.Mint("event", []string{"event.create"}, time.Now().Add(time.Hour)))
	_, err := dial(t, addr).CreateEvent(ctx, "new key")
	require.NoError(t, err, "a token of the new key must make the verifier refetch its JWKS")
}

func countRequests(auth *authtest.Server, scope string) int {
	n := 0
	for _, r := range auth.Requests() {
		if r.Scope == scope {
			n++
		}
	}
	return n
}

// A token the callee refuses with Unauthenticated is evicted once, however
// many RPCs were refused, and each refused unary RPC is sent once more
// with the new token.
func TestRefusedTokenEvictedAndReplayed(t *testing.T) {
	auth := startAuth(t)
	ev := &events{}
	client := newClient(t, auth, ev)
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "http://" + addr})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src, MethodScopes: eventScopes}))...)
	ctx := ctxT(t)
	rotated(t, auth, addr, func() {
		_, err := conn.CreateEvent(ctx, "before")
		require.NoError(t, err)
	})
	require.Equal(t, 1, countRequests(auth, "event.create"))
	handled := len(cal.seen())

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = conn.CreateEvent(ctx, "after") })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 2, countRequests(auth, "event.create"), "one new token for all refused RPCs")
	assert.Equal(t, 1, ev.count(m2m.EventEviction))
	assert.Len(t, cal.seen(), handled+n, "each RPC reached the handler once")
}

// A refused stream is not replayed, but its token is evicted, so the next
// stream carries a new one.
func TestRefusedStreamEvicts(t *testing.T) {
	auth := startAuth(t)
	client := newClient(t, auth, nil)
	addr, _ := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "http://" + addr})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src, MethodScopes: eventScopes}))...)
	ctx := ctxT(t)
	rotated(t, auth, addr, func() {
		_, err := conn.ListEvents(ctx, "")
		require.NoError(t, err)
	})

	_, err = conn.ListEvents(ctx, "")
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "unknown signing key")
	list, err := conn.ListEvents(ctx, "")
	require.NoError(t, err)
	assert.Len(t, list, 2)
	assert.Equal(t, 2, countRequests(auth, "event.view"))
}

// Eviction needs no audience URL: a source without one (so any
// authority) has its refused token evicted and the RPC replayed too.
func TestRefusalWithoutURL(t *testing.T) {
	auth := startAuth(t)
	ev := &events{}
	client := newClient(t, auth, ev)
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src, InsecureAllowPlaintext: true}))...)
	ctx := ctxT(t)
	rotated(t, auth, addr, func() {
		_, err := conn.CreateEvent(ctx, "before")
		require.NoError(t, err)
	})
	handled := len(cal.seen())
	_, err = conn.CreateEvent(ctx, "after")
	require.NoError(t, err)
	assert.Equal(t, 2, countRequests(auth, "event.create"))
	assert.Equal(t, 1, ev.count(m2m.EventEviction))
	assert.Len(t, cal.seen(), handled+1)
}

// Short-lived tokens are renewed before they expire: every RPC is
// accepted, and the callee sees new tokens over time.
func TestShortLivedTokensRenewed(t *testing.T) {
	auth := startAuth(t)
	auth.SetLifetime(2 * time.Second)
	client := newClient(t, auth, nil)
	addr, cal := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: newVerifier(t, auth, "event"), MethodScopes: eventScopes}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: "http://" + addr})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src}))...)
	ctx := ctxT(t)

	distinct := func() int {
		ids := map[string]bool{}
		for _, r := range cal.seen() {
			ids[r.claims.ID] = true
		}
		return len(ids)
	}
	var failed error
	require.Eventually(t, func() bool {
		_, failed = conn.CreateEvent(ctx, "x")
		return failed != nil || distinct() >= 3
	}, 25*time.Second, 20*time.Millisecond)
	require.NoError(t, failed, "no RPC may carry an expired token")
}

// A callee that refuses fresh tokens too gets one replay; then the key
// stops evicting for a while, so later refusals cause no more fetches.
func TestCalleeRefusingEveryToken(t *testing.T) {
	auth := startAuth(t)
	ev := &events{}
	// The pause lasts ErrorCacheTTL: long enough for a busy machine.
	client, err := m2m.New(m2m.Config{TokenURL: auth.TokenURL, ClientID: authtest.ClientID, ClientSecret: authtest.ClientSecret,
		Observer: ev, ErrorCacheTTL: time.Minute})
	require.NoError(t, err)
	defer client.Close()
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: auth.JWKSURL, Issuer: "https://someone-else.example", Audience: "event"})
	require.NoError(t, err)
	defer v.Close()
	var decisions atomic.Int32
	addr, _ := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: v, MethodScopes: eventScopes,
		Observe: func(context.Context, string, error) { decisions.Add(1) }}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: "http://" + addr})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src}))...)
	ctx := ctxT(t)

	_, err = conn.CreateEvent(ctx, "x")
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Equal(t, int32(2), decisions.Load(), "sent once more with a new token")
	assert.Equal(t, 2, countRequests(auth, "event.create"))
	assert.Equal(t, 1, ev.count(m2m.EventEvictionsPaused))

	for range 3 {
		_, err = conn.CreateEvent(ctx, "x")
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	assert.Equal(t, int32(5), decisions.Load(), "no replay while evictions are paused")
	assert.Equal(t, 2, countRequests(auth, "event.create"), "no fetch while evictions are paused")
}

// A server that hands out the same token again does not turn a refusing
// callee into one token request per RPC: a refusal of the token had after
// the eviction pauses evictions, whatever its value.
func TestSameTokenRefusedAgainPauses(t *testing.T) {
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"same-token","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	client, err := m2m.New(m2m.Config{TokenURL: srv.URL, ClientID: "task", ClientSecret: "s3cr3t", ErrorCacheTTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	src, err := client.Source(m2m.Audience{Name: "event"})
	require.NoError(t, err)
	c := newCreds(t, m2mgrpc.CredentialsConfig{Source: src})
	ri := credentials.RequestInfo{Method: calendarpb.CreateEvent,
		AuthInfo: credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}}
	var sent atomic.Int32
	refuse := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		if _, err := c.GetRequestMetadata(credentials.NewContextWithRequestInfo(ctx, ri), "https://calendar.example.com/calendar.v1.Calendar"); err != nil {
			return err
		}
		sent.Add(1)
		return status.Error(codes.Unauthenticated, "refused")
	}
	for range 10 {
		err := c.Unary(ctxT(t), ri.Method, nil, nil, nil, refuse)
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	assert.EqualValues(t, 2, fetches.Load(), "the first token and one after the eviction")
	assert.EqualValues(t, 11, sent.Load(), "one replay, then none while evictions are paused")
}

// Streams to a callee that refuses every token: the first refusal evicts,
// the refusal of the token had after it pauses evictions, and later
// streams cause no fetch.
func TestStreamsToCalleeRefusingEveryToken(t *testing.T) {
	auth := startAuth(t)
	ev := &events{}
	client, err := m2m.New(m2m.Config{TokenURL: auth.TokenURL, ClientID: authtest.ClientID, ClientSecret: authtest.ClientSecret,
		Observer: ev, ErrorCacheTTL: time.Hour})
	require.NoError(t, err)
	defer client.Close()
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: auth.JWKSURL, Issuer: "https://someone-else.example", Audience: "event"})
	require.NoError(t, err)
	defer v.Close()
	addr, _ := serve(t, newGuard(t, m2mgrpc.GuardConfig{Verifier: v, MethodScopes: eventScopes}))
	src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "http://" + addr})
	require.NoError(t, err)
	conn := dial(t, addr, withCreds(newCreds(t, m2mgrpc.CredentialsConfig{Source: src, MethodScopes: eventScopes}))...)
	for range 5 {
		_, err := conn.ListEvents(ctxT(t), "")
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	}
	assert.Equal(t, 2, countRequests(auth, "event.view"), "the first token and one after the eviction")
	assert.Equal(t, 1, ev.count(m2m.EventEviction))
	assert.Equal(t, 1, ev.count(m2m.EventEvictionsPaused))
}
