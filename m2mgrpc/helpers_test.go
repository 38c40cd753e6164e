package m2mgrpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/m2mauth/m2m/m2mgrpc"
	"github.com/m2mauth/m2m/m2mgrpc/internal/authtest"
	"github.com/m2mauth/m2m/m2mgrpc/internal/calendarpb"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestMain(m *testing.M) { testmain.Run(m) }

func startAuth(t *testing.T) *authtest.Server {
	t.Helper()
	auth, err := authtest.Start()
	require.NoError(t, err)
	t.Cleanup(auth.Close)
	return auth
}

func newClient(t *testing.T, auth *authtest.Server, obs m2m.Observer) *m2m.Client {
	t.Helper()
	c, err := m2m.New(m2m.Config{TokenURL: auth.TokenURL, ClientID: authtest.ClientID, ClientSecret: authtest.ClientSecret, Observer: obs})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func newVerifier(t *testing.T, auth *authtest.Server, audience string) *verify.Verifier {
	t.Helper()
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: auth.JWKSURL, Issuer: auth.Issuer, Audience: audience})
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v
}

// rpc is what a calendar saw of one RPC that reached its handler.
type rpc struct {
	method string
	claims *verify.Claims
}

// calendar is a Calendar service that records the claims of every RPC.
type calendar struct {
	mu   sync.Mutex
	rpcs []rpc
}

func (c *calendar) saw(ctx context.Context, method string) (*verify.Claims, bool) {
	cl, ok := verify.ClaimsFromContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rpcs = append(c.rpcs, rpc{method: method, claims: cl})
	return cl, ok
}

func (c *calendar) seen() []rpc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rpc(nil), c.rpcs...)
}

func (c *calendar) CreateEvent(ctx context.Context, title string) (string, error) {
	cl, _ := c.saw(ctx, calendarpb.CreateEvent)
	return fmt.Sprintf("created %q for %s (scopes: %s)", title, cl.ClientID, strings.Join(cl.Scopes, " ")), nil
}

func (c *calendar) ListEvents(ctx context.Context, _ string, send func(string) error) error {
	cl, _ := c.saw(ctx, calendarpb.ListEvents)
	for _, e := range []string{"standup", "retro"} {
		if err := send(e + " (scopes: " + strings.Join(cl.Scopes, " ") + ")"); err != nil {
			return err
		}
	}
	return nil
}

func (c *calendar) Ping(ctx context.Context) (string, error) {
	_, ok := c.saw(ctx, calendarpb.Ping)
	return fmt.Sprint("pong, claims: ", ok), nil
}

// serve starts a Calendar server guarded by g on 127.0.0.1 and returns its
// address.
func serve(t *testing.T, g *m2mgrpc.Guard, opts ...grpc.ServerOption) (string, *calendar) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(g.Unary), grpc.ChainStreamInterceptor(g.Stream))...)
	cal := &calendar{}
	calendarpb.Register(srv, cal)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String(), cal
}

func newGuard(t *testing.T, cfg m2mgrpc.GuardConfig) *m2mgrpc.Guard {
	t.Helper()
	g, err := m2mgrpc.NewGuard(cfg)
	require.NoError(t, err)
	return g
}

// eventScopes are the Calendar's method scopes, on both sides.
var eventScopes = map[string][]string{
	calendarpb.CreateEvent: {"event.create"},
	calendarpb.ListEvents:  {"event.view"},
}

// dial connects to addr; with no creds, RPCs carry no token.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *calendarpb.Client {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return calendarpb.NewClient(cc)
}

func withCreds(c *m2mgrpc.Credentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(c),
		grpc.WithChainUnaryInterceptor(c.Unary),
		grpc.WithChainStreamInterceptor(c.Stream),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// events counts an m2m.Client's events by kind.
type events struct {
	mu sync.Mutex
	n  map[m2m.EventKind]int
}

func (e *events) Observe(ev m2m.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[m2m.EventKind]int{}
	}
	e.n[ev.Kind]++
}

func (e *events) count(k m2m.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[k]
}
