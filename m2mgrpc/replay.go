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
// new one is fetched, and the RPC is sent once more with it. If the new
// token is refused too, the audience's key stops evicting for a while, as
// with HTTP: the callee, not the token, is the problem. It never sends an
// RPC more than twice. Use it with c on the same connection:
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
	if status.Code(err) != codes.Unauthenticated {
		return err
	}
	var replayed bool
	var rerr error
	replay := func() error {
		replayed = true
		rerr = invoker(ctx, method, req, reply, cc, opts...)
		return rerr
	}
	switch {
	case !c.evict(ctx, method, h, replay):
		return err
	case replayed:
		return rerr
	}
	return replay() // another RPC replaced the token first
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
			c.evict(ctx, method, h, nil)
		}
		return nil, err
	}
	return &evictingStream{ClientStream: cs, evict: func() { c.evict(ctx, method, h, nil) }}, nil
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
// When it evicts, it runs replay (if not nil) with the new token.
//
// m2m has no public eviction, so this goes through the documented 401
// handling of an m2m.Transport, over a RoundTripper standing in for the
// callee: it answers 401 to the refused token, and to the Transport's
// replay with the new one it runs the RPC's replay and answers 401 if that
// is refused too. The Transport thus evicts only a token that is still
// cached, fetches once, pauses evictions when the new token is refused as
// well, and reports all of it to the Client's Observer as for HTTP.
func (c *Credentials) evict(ctx context.Context, method string, h *sent, replay func() error) bool {
	p := h.token.Load()
	if p == nil || c.evictURL == "" {
		return false
	}
	refused := *p
	if scopes := c.methods[method]; scopes != nil {
		ctx = m2m.WithScopes(ctx, scopes...)
	}
	if cur, err := c.src.TokenContext(ctx); err != nil || cur.AccessToken != refused {
		return err == nil // another RPC replaced it
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.evictURL, nil)
	if err != nil {
		return false
	}
	resp, err := m2m.NewTransport(&standIn{refused: "Bearer " + refused, replay: replay}, c.src).RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	cur, err := c.src.TokenContext(ctx)
	return err == nil && cur.AccessToken != refused
}

// standIn is the callee as an m2m.Transport sees it during evict. It runs
// the RPC's replay at most once. Nothing leaves the process. The
// Transport calls it from one goroutine, one call after the other.
type standIn struct {
	refused string
	replay  func() error // nil once run
}

func (s *standIn) RoundTrip(req *http.Request) (*http.Response, error) {
	code := http.StatusOK
	switch {
	case req.Header.Get("Authorization") == s.refused:
		code = http.StatusUnauthorized
	case s.replay != nil:
		replay := s.replay
		s.replay = nil
		if status.Code(replay()) == codes.Unauthenticated {
			code = http.StatusUnauthorized
		}
	}
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}
