package m2mgrpc

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/m2mauth/m2m"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sentKey is the context key under which Unary and Stream learn which
// token GetRequestMetadata put on an RPC.
type sentKey struct{}

// sent records the token an RPC carried.
type sent struct{ token atomic.Pointer[string] }

// record notes in ctx's holder, if any, the token sent with an RPC.
func record(ctx context.Context, token string) {
	if h, ok := ctx.Value(sentKey{}).(*sent); ok {
		h.token.Store(&token)
	}
}

// Unary is a grpc.UnaryClientInterceptor that does for gRPC what
// m2m.Transport does for a 401: when an RPC that carried c's token is
// refused with codes.Unauthenticated, the token is evicted if it is still
// the cached one (concurrent refusals of the same token cause one fetch), a
// new one is fetched, and the RPC is sent once more with it. It never
// sends an RPC more than twice. Use it with c on the same connection:
//
//	grpc.NewClient(target, grpc.WithPerRPCCredentials(c), grpc.WithChainUnaryInterceptor(c.Unary), …)
//
// Eviction needs the audience's URL (see CredentialsConfig.Source);
// without one the refusal is returned as it came. Only unary RPCs are
// replayed: a server that refuses a token before its handler runs (as a
// Guard does) makes the replay safe.
func (c *Credentials) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	h := &sent{}
	err := invoker(context.WithValue(ctx, sentKey{}, h), method, req, reply, cc, opts...)
	if status.Code(err) != codes.Unauthenticated || !c.evict(ctx, method, h) {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Stream is a grpc.StreamClientInterceptor that evicts c's token when a
// stream that carried it ends with codes.Unauthenticated, so the next RPC
// gets a new one. A stream is not replayed: its messages may already be
// gone.
func (c *Credentials) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	h := &sent{}
	cs, err := streamer(context.WithValue(ctx, sentKey{}, h), desc, cc, method, opts...)
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			c.evict(ctx, method, h)
		}
		return nil, err
	}
	return &evictingStream{ClientStream: cs, evict: func() { c.evict(ctx, method, h) }}, nil
}

// evictingStream evicts the stream's token the first time the stream
// fails with codes.Unauthenticated.
type evictingStream struct {
	grpc.ClientStream
	once  sync.Once
	evict func()
}

func (s *evictingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if status.Code(err) == codes.Unauthenticated {
		s.once.Do(s.evict)
	}
	return err
}

// evict drops the token h recorded if it is still the cached one of the
// RPC's scope set, and reports whether a different token is now cached.
//
// m2m has no public eviction, so this goes through the documented 401
// handling of an m2m.Transport, over a RoundTripper that answers 401 to the
// rejected token and 200 to any other: the Transport evicts the token only
// if it is still the cached one, fetches a new one, and reports the
// eviction and replay to the Client's Observer as it does for HTTP.
func (c *Credentials) evict(ctx context.Context, method string, h *sent) bool {
	p := h.token.Load()
	if p == nil || c.evictURL == "" {
		return false
	}
	rejected := *p
	if scopes := c.methods[method]; scopes != nil {
		ctx = m2m.WithScopes(ctx, scopes...)
	}
	if cur, err := c.src.TokenContext(ctx); err != nil || cur.AccessToken != rejected {
		return err == nil // someone already replaced it
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.evictURL, nil)
	if err != nil {
		return false
	}
	resp, err := m2m.NewTransport(rejectToken("Bearer "+rejected), c.src).RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	cur, err := c.src.TokenContext(ctx)
	return err == nil && cur.AccessToken != rejected
}

// rejectToken is a RoundTripper standing in for the callee: 401 to the
// rejected Authorization value, 200 to any other. Nothing leaves the
// process.
type rejectToken string

func (r rejectToken) RoundTrip(req *http.Request) (*http.Response, error) {
	code := http.StatusOK
	if req.Header.Get("Authorization") == string(r) {
		code = http.StatusUnauthorized
	}
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}
