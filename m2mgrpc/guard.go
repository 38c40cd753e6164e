package m2mgrpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/m2mauth/m2m/verify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrUnlistedMethod is wrapped, with verify.ErrInsufficientScope, when an
// RPC's method is in neither GuardConfig.MethodScopes nor Public.
var ErrUnlistedMethod = errors.New("m2mgrpc: method not listed in GuardConfig")

// GuardConfig configures a Guard. The zero value of every optional field
// is its default.
type GuardConfig struct {
	// Verifier checks the tokens: signature, audience, expiry and the
	// rest of verify's rules. Required.
	Verifier *verify.Verifier
	// MethodScopes lists, by full method name
	// ("/calendar.v1.Calendar/CreateEvent"), the scopes an RPC's token
	// must all carry (compared exactly). An empty list requires a valid
	// token and no particular scope. A method that is in neither
	// MethodScopes nor Public is refused with codes.PermissionDenied, so a
	// new method stays closed until it is listed. Required.
	MethodScopes map[string][]string
	// Public lists the full method names that need no token, e.g.
	// "/grpc.health.v1.Health/Check". A token sent to them is not
	// checked. Optional.
	Public []string
	// Observe, when set, is called once per RPC with the full method name
	// and nil when the RPC was let through, or the error it was refused
	// for: one that wraps verify.ErrNoToken or verify.ErrInvalidRequest
	// (no token, or more than one), verify.ErrInvalidToken (and the
	// specific reason, such as verify.ErrExpired), verify.ErrInsufficientScope
	// (and ErrUnlistedMethod for an unlisted method), or an error of the
	// verifier that could not decide (verify.ErrIntrospection, a context
	// error), which the RPC gets as codes.Unavailable. It is for metrics and audit logs; it runs on the RPC's
	// goroutine and must not block. Public methods are not reported.
	// Optional.
	Observe func(ctx context.Context, fullMethod string, err error)
}

// Guard checks the bearer token of every incoming RPC. Its Unary and Stream
// methods are grpc.UnaryServerInterceptor and grpc.StreamServerInterceptor:
//
//	grpc.NewServer(grpc.ChainUnaryInterceptor(g.Unary), grpc.ChainStreamInterceptor(g.Stream))
//
// An RPC without a valid token fails with codes.Unauthenticated, one whose
// token lacks a scope of its method with codes.PermissionDenied, and one
// whose token the verifier could not check (its introspection endpoint
// failed) with codes.Unavailable; the status message names the rule that
// failed and never holds the token. A
// handler finds the token's claims with verify.ClaimsFromContext.
//
// Guard is safe for concurrent use and should be reused.
type Guard struct {
	v       *verify.Verifier
	methods map[string][]string // full method → required scopes; read-only
	public  map[string]bool     // read-only
	observe func(context.Context, string, error)
}

// NewGuard checks cfg and returns a Guard. Every error wraps
// ErrInvalidConfig.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("%w: Verifier is required", ErrInvalidConfig)
	}
	if len(cfg.MethodScopes) == 0 && len(cfg.Public) == 0 {
		return nil, fmt.Errorf("%w: MethodScopes is required: every method is refused without it", ErrInvalidConfig)
	}
	g := &Guard{v: cfg.Verifier, methods: make(map[string][]string, len(cfg.MethodScopes)), public: map[string]bool{}, observe: cfg.Observe}
	for m, scopes := range cfg.MethodScopes {
		if err := checkMethod("MethodScopes", m); err != nil {
			return nil, err
		}
		for _, s := range scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
				return nil, fmt.Errorf("%w: MethodScopes[%q] holds %q, which is not a scope", ErrInvalidConfig, m, s)
			}
		}
		g.methods[m] = slices.Clone(scopes)
		if g.methods[m] == nil {
			g.methods[m] = []string{}
		}
	}
	for _, m := range cfg.Public {
		if err := checkMethod("Public", m); err != nil {
			return nil, err
		}
		if _, ok := g.methods[m]; ok {
			return nil, fmt.Errorf("%w: %s is both in MethodScopes and Public", ErrInvalidConfig, m)
		}
		g.public[m] = true
	}
	return g, nil
}

func checkMethod(field, m string) error {
	if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 {
		return fmt.Errorf("%w: %s key %q is not a full method name such as \"/pkg.Service/Method\"", ErrInvalidConfig, field, m)
	}
	return nil
}

// Unary is a grpc.UnaryServerInterceptor that lets an RPC through to
// handler only with a token valid for its method.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is a grpc.StreamServerInterceptor that lets a stream through to
// handler only with a token valid for its method. The handler's stream
// Context carries the claims.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if ctx == ss.Context() {
		return handler(srv, ss)
	}
	return handler(srv, &claimsStream{ServerStream: ss, ctx: ctx})
}

// claimsStream is a ServerStream whose Context carries the claims.
type claimsStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *claimsStream) Context() context.Context { return s.ctx }

// authorize checks the token of an RPC to method and returns ctx with its
// claims, or a status error.
func (g *Guard) authorize(ctx context.Context, method string) (context.Context, error) {
	if g.public[method] {
		return ctx, nil
	}
	claims, err := g.check(ctx, method)
	if g.observe != nil {
		g.observe(ctx, method, err)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return verify.NewContext(ctx, claims), nil
}

func (g *Guard) check(ctx context.Context, method string) (*verify.Claims, error) {
	required, listed := g.methods[method]
	raw, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	claims, err := g.v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if !listed {
		return nil, fmt.Errorf("%w: %w: %s", verify.ErrInsufficientScope, ErrUnlistedMethod, method)
	}
	for _, s := range required {
		if !claims.HasScope(s) {
			return nil, &scopeError{required: required}
		}
	}
	return claims, nil
}

// scopeError is a token without every scope its method requires.
type scopeError struct{ required []string }

func (e *scopeError) Error() string {
	return "m2mgrpc: insufficient scope: the method requires " + strings.Join(e.required, " ")
}

func (e *scopeError) Unwrap() error { return verify.ErrInsufficientScope }

// bearer returns the token of the RPC's one "authorization: Bearer …"
// metadata value (the scheme is case-insensitive, RFC 7235 §2.1), or an
// error wrapping verify.ErrNoToken (none) or verify.ErrInvalidRequest
// (more than one).
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("%w: no authorization metadata", verify.ErrNoToken)
	case len(vals) > 1:
		return "", fmt.Errorf("%w: more than one authorization value", verify.ErrInvalidRequest)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", fmt.Errorf("%w: authorization is not \"Bearer <token>\"", verify.ErrNoToken)
	}
	return tok, nil
}

// reasons are verify's specific rejections, in the order they are looked
// for; their text is safe to show.
var reasons = []error{verify.ErrTokenTooLarge, verify.ErrMalformed, verify.ErrUnsupportedHeader, verify.ErrAlgorithm,
	verify.ErrUnknownKey, verify.ErrSignature, verify.ErrExpired, verify.ErrNotYetValid, verify.ErrMissingClaim,
	verify.ErrAudience, verify.ErrIssuer, verify.ErrTokenType, verify.ErrScopeClaim, verify.ErrClientID, verify.ErrInactive}

// toStatus turns a refusal into a status whose message names the rule
// that failed and never the token or its claims.
func toStatus(err error) error {
	switch {
	case errors.Is(err, verify.ErrNoToken):
		return status.Error(codes.Unauthenticated, "m2mgrpc: a bearer token is required")
	case errors.Is(err, verify.ErrInvalidRequest):
		return status.Error(codes.Unauthenticated, "m2mgrpc: send one authorization value")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case !errors.Is(err, verify.ErrInvalidToken) && !errors.Is(err, verify.ErrInsufficientScope):
		// The verifier could not decide (verify.ErrIntrospection): not the
		// caller's fault, and worth another try.
		return status.Error(codes.Unavailable, "m2mgrpc: the token could not be checked now")
	case errors.Is(err, ErrUnlistedMethod):
		return status.Error(codes.PermissionDenied, "m2mgrpc: this method is not open to any token")
	case errors.Is(err, verify.ErrInsufficientScope):
		return status.Error(codes.PermissionDenied, err.Error()) // a scopeError: the config's scopes only
	}
	for _, r := range reasons {
		if errors.Is(err, r) {
			return status.Error(codes.Unauthenticated, "m2mgrpc: invalid token: "+r.Error())
		}
	}
	return status.Error(codes.Unauthenticated, "m2mgrpc: invalid token")
}
