package m2mgrpc

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/m2mauth/m2m"
	"golang.org/x/oauth2"
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
// Only unary RPCs are replayed: a server that refuses a token before its
// handler runs (as a Guard does) makes the replay safe.
func (c *Credentials) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	first := &sent{}
	err := invoker(context.WithValue(ctx, sentKey{}, first), method, req, reply, cc, opts...)
	if status.Code(err) != codes.Unauthenticated || !c.evict(ctx, method, first) {
		return err
	}
	again := &sent{}
	err = invoker(context.WithValue(ctx, sentKey{}, again), method, req, reply, cc, opts...)
	if status.Code(err) == codes.Unauthenticated && again.token.Load() != nil {
		// The token had after the eviction was refused too (even if the
		// server handed out the same one again): the callee, not the
		// token, is the problem.
		c.src.PauseEvictions(c.scoped(ctx, method))
	}
	return err
}

// Stream is a grpc.StreamClientInterceptor that evicts c's token when a
// stream that carried it ends with codes.Unauthenticated, so the next RPC
// gets a new one. A stream is not replayed: its messages may already be
// gone. When the first token sent after such an eviction is refused too,
// the key stops evicting for a while instead, as with a unary replay.
func (c *Credentials) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	h := &sent{}
	cs, err := streamer(context.WithValue(ctx, sentKey{}, h), desc, cc, method, opts...)
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			c.streamRefused(ctx, method, h)
		}
		return nil, err
	}
	return &evictingStream{ClientStream: cs, evict: func() { c.streamRefused(ctx, method, h) }}, nil
}

// streamRefused handles a stream refused with codes.Unauthenticated: its
// token is evicted, unless it is the first token sent after a stream's
// refusal evicted the one before: then the callee refuses new tokens too,
// and the key stops evicting for a while, as after a refused unary replay.
func (c *Credentials) streamRefused(ctx context.Context, method string, h *sent) {
	p := h.token.Load()
	if p == nil {
		return
	}
	key := c.scopeKey(ctx, method)
	if c.streams.refusedAgain(key, *p) {
		c.src.PauseEvictions(c.scoped(ctx, method))
		return
	}
	if c.evict(ctx, method, h) {
		c.streams.evicted(key)
	}
}

// afterEviction remembers, per scope set, whether a stream's refusal
// evicted a token and which token was sent first after that. It is safe
// for concurrent use.
type afterEviction struct {
	open atomic.Int32 // scope sets waiting for their first token after an eviction
	mu   sync.Mutex
	next map[string]*string // scope key → the first token sent after the eviction (nil: none yet)
}

// evicted notes that key's token was evicted.
func (a *afterEviction) evicted(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == nil {
		a.next = map[string]*string{}
	}
	if tok, ok := a.next[key]; !ok || tok != nil {
		a.open.Add(1)
	}
	a.next[key] = nil
}

// sent notes a token sent for key: the first after an eviction is kept.
func (a *afterEviction) sent(key, token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tok, ok := a.next[key]; ok && tok == nil {
		a.next[key] = &token
		a.open.Add(-1)
	}
}

// refusedAgain reports whether token is the first sent for key after an
// eviction, and forgets that eviction if so.
func (a *afterEviction) refusedAgain(key, token string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tok := a.next[key]; tok != nil && *tok == token {
		delete(a.next, key)
		return true
	}
	return false
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

// evict evicts the token h recorded from the cache of the RPC's scope set
// (m2m.TokenSource.Evict) and reports whether another token can now be
// had. An RPC that carried no token of c's evicts nothing.
func (c *Credentials) evict(ctx context.Context, method string, h *sent) bool {
	p := h.token.Load()
	if p == nil {
		return false
	}
	return c.src.Evict(c.scoped(ctx, method), &oauth2.Token{AccessToken: *p})
}

// scopeKey names the scope set of an RPC of method with ctx: its
// MethodScopes, else those m2m.WithScopes put in ctx, else "" for the
// audience's own.
func (c *Credentials) scopeKey(ctx context.Context, method string) string {
	if scopes := c.methods[method]; scopes != nil {
		return strings.Join(scopes, " ")
	}
	scopes, _ := m2m.ScopesFromContext(ctx)
	return strings.Join(scopes, " ")
}

// scoped returns ctx narrowed to method's scopes, if MethodScopes lists
// it.
func (c *Credentials) scoped(ctx context.Context, method string) context.Context {
	if scopes := c.methods[method]; scopes != nil {
		return m2m.WithScopes(ctx, scopes...)
	}
	return ctx
}
