// Package m2mgrpc carries m2m's OAuth2 client-credentials tokens over gRPC.
//
// The calling side attaches Credentials, a credentials.PerRPCCredentials
// built on an *m2m.TokenSource, to a connection: each RPC gets the token of
// that audience, narrowed per method when CredentialsConfig.MethodScopes
// says so, from the same cache (refresh-ahead, one fetch per key) that the
// HTTP Transport uses.
//
//	calendar, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: "https://calendar.internal:443"})
//	creds, err := m2mgrpc.NewCredentials(m2mgrpc.CredentialsConfig{
//		Source:       calendar,
//		MethodScopes: map[string][]string{"/calendar.v1.Calendar/CreateEvent": {"event.create"}},
//	})
//	conn, err := grpc.NewClient("calendar.internal:443",
//		grpc.WithTransportCredentials(credentials.NewTLS(nil)), grpc.WithPerRPCCredentials(creds))
//
// The called side guards a server with a Guard, whose unary and stream
// interceptors check the token with a *verify.Verifier, refuse it with
// codes.Unauthenticated or codes.PermissionDenied, and put its claims in
// the handler's context (verify.ClaimsFromContext):
//
//	g, err := m2mgrpc.NewGuard(m2mgrpc.GuardConfig{
//		Verifier:     v,
//		MethodScopes: map[string][]string{"/calendar.v1.Calendar/CreateEvent": {"event.create"}},
//	})
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(g.Unary), grpc.ChainStreamInterceptor(g.Stream))
package m2mgrpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/m2mauth/m2m"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Errors callers can branch on with errors.Is. Once an RPC has failed, gRPC
// only keeps their text in the status message.
var (
	// ErrInvalidConfig is wrapped by every error NewCredentials and
	// NewGuard return for a bad config.
	ErrInvalidConfig = errors.New("m2mgrpc: invalid config")
	// ErrInsecureChannel is returned when a token would be sent over a
	// connection without transport security to a host that is not
	// loopback.
	ErrInsecureChannel = errors.New("m2mgrpc: refusing to send a token over a connection without transport security to a non-loopback host")
	// ErrWrongAuthority is returned when an RPC goes to a host and port
	// that is not among the audience's URLs.
	ErrWrongAuthority = errors.New("m2mgrpc: the RPC's authority is not among the audience's URLs")
	// ErrNotBearer is returned when the token is not a bearer token: a
	// DPoP-bound token (a Client with a DPoPKey) is worthless without a
	// proof made for each request, which per-RPC metadata does not carry.
	// Such a token is never sent.
	ErrNotBearer = errors.New("m2mgrpc: the token is not a bearer token (a DPoP-bound token needs a proof per request); use a Client without DPoPKey for gRPC")
)

// CredentialsConfig configures Credentials. The zero value of every
// optional field is its default.
type CredentialsConfig struct {
	// Source gives the tokens of the audience the connection's RPCs go
	// to. Its cache is shared with every other user of the same
	// m2m.Client. Required.
	//
	// When the source's Audience has a URL (or ExtraURLs), it says where
	// the service lives: a token is sent only to an RPC whose authority
	// (host and port; 443 when absent) matches one of them, and an
	// audience whose URLs are all loopback does not require transport
	// security. Give the gRPC address as the URL, e.g.
	// "https://calendar.internal:443" or "http://127.0.0.1:50051".
	Source *m2m.TokenSource
	// MethodScopes narrows the token of an RPC, by its full method name
	// ("/calendar.v1.Calendar/CreateEvent"), to these scopes, which must
	// be among the audience's Scopes. Each scope set has its own cached
	// token. An RPC whose method is not listed gets the token of all the
	// audience's scopes, or of those m2m.WithScopes put in its context.
	// Optional.
	MethodScopes map[string][]string
	// InsecureAllowPlaintext lets the token be sent over a connection
	// without transport security (no TLS) to a host that is not loopback,
	// and makes RequireTransportSecurity false. The token can then be read
	// and replayed by anyone on the network path. Optional; default false.
	InsecureAllowPlaintext bool
}

// Credentials puts the token of one audience on every RPC of a
// connection. It implements credentials.PerRPCCredentials: pass it to
// grpc.WithPerRPCCredentials, or per call to grpc.PerRPCCredentials.
//
// It never sends a token over a connection without transport security to
// a host that is not loopback (unless InsecureAllowPlaintext), checking the
// connection of each RPC, not only RequireTransportSecurity.
//
// Credentials is safe for concurrent use and should be reused.
type Credentials struct {
	src      *m2m.TokenSource
	audience string
	methods  map[string][]string // full method → sorted scopes; read-only
	routes   []hostPort          // the audience's URLs; empty means any authority
	insecure bool
	local    bool // every route is loopback
	streams  afterEviction
}

// hostPort is one place the audience lives.
type hostPort struct{ host, port string }

// NewCredentials checks cfg and returns Credentials. Every error wraps
// ErrInvalidConfig; a method scope the audience does not declare also
// wraps m2m.ErrUndeclaredScope.
func NewCredentials(cfg CredentialsConfig) (*Credentials, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("%w: Source is required", ErrInvalidConfig)
	}
	aud := cfg.Source.Audience()
	c := &Credentials{src: cfg.Source, audience: aud.Name, insecure: cfg.InsecureAllowPlaintext, methods: map[string][]string{}}
	for method, scopes := range cfg.MethodScopes {
		if !strings.HasPrefix(method, "/") || strings.Count(method, "/") != 2 {
			return nil, fmt.Errorf("%w: MethodScopes key %q is not a full method name such as \"/pkg.Service/Method\"", ErrInvalidConfig, method)
		}
		for _, s := range scopes {
			if !slices.Contains(aud.Scopes, s) {
				return nil, fmt.Errorf("%w: %w: MethodScopes[%q] asks for %q, which audience %q does not declare",
					ErrInvalidConfig, m2m.ErrUndeclaredScope, method, s, aud.Name)
			}
		}
		if len(scopes) > 0 {
			c.methods[method] = slices.Compact(slices.Sorted(slices.Values(scopes)))
		}
	}
	c.local = true
	for _, raw := range append([]string{aud.URL}, aud.ExtraURLs...) {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw) // m2m.Client.Source has checked it
		if err != nil {
			return nil, fmt.Errorf("%w: audience %q URL does not parse", ErrInvalidConfig, aud.Name)
		}
		hp := hostPort{host: normalHost(u.Hostname()), port: u.Port()}
		if hp.port == "" {
			hp.port = "443"
			if u.Scheme == "http" {
				hp.port = "80"
			}
		}
		c.routes = append(c.routes, hp)
		c.local = c.local && isLoopback(hp.host)
	}
	c.local = c.local && len(c.routes) > 0
	return c, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is
// true unless every URL of the audience is on a loopback host or
// InsecureAllowPlaintext is set.
func (c *Credentials) RequireTransportSecurity() bool { return !c.insecure && !c.local }

// GetRequestMetadata implements credentials.PerRPCCredentials: it returns
// the "authorization: Bearer …" metadata of the RPC's method. gRPC passes
// the RPC's audience URI ("https://<authority>/<service>") as uri[0].
//
// It fails with a status error: codes.Unauthenticated when the token may
// not be sent on this connection (ErrInsecureChannel, ErrWrongAuthority in
// the message), is not a bearer token (ErrNotBearer) or the token endpoint
// refused the client,
// codes.Unavailable when the token endpoint failed transiently or the
// client's own credential could not be had (m2m.FailureCredential: a
// rotated file may come), and
// codes.Canceled or codes.DeadlineExceeded when ctx ended first.
func (c *Credentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := c.check(ri.AuthInfo, uri); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	tok, err := c.src.TokenContext(c.scoped(ctx, ri.Method))
	if err != nil {
		return nil, tokenStatus(err)
	}
	if tok.Type() != "Bearer" {
		return nil, status.Error(codes.Unauthenticated, fmt.Sprintf("%v (token type %q)", ErrNotBearer, tok.Type()))
	}
	record(ctx, tok.AccessToken)
	if c.streams.open.Load() > 0 {
		c.streams.sent(c.scopeKey(ctx, ri.Method), tok.AccessToken)
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

// check decides whether a token may go to the RPC's authority over a
// connection with this AuthInfo.
func (c *Credentials) check(ai credentials.AuthInfo, uri []string) error {
	host, port, ok := authority(uri)
	secure := credentials.CheckSecurityLevel(ai, credentials.PrivacyAndIntegrity) == nil
	if !secure && !c.insecure && (!ok || !isLoopback(host)) {
		return ErrInsecureChannel
	}
	if len(c.routes) == 0 {
		return nil
	}
	if ok && slices.Contains(c.routes, hostPort{host, port}) {
		return nil
	}
	return fmt.Errorf("%w: %s is not where audience %q lives; add it to Audience.ExtraURLs if it should be",
		ErrWrongAuthority, net.JoinHostPort(host, port), c.audience)
}

// authority returns the host and port of the audience URI gRPC passes to
// GetRequestMetadata ("https://host[:port]/service"; no port means 443).
func authority(uri []string) (host, port string, ok bool) {
	if len(uri) == 0 {
		return "", "", false
	}
	u, err := url.Parse(uri[0])
	if err != nil || u.Hostname() == "" {
		return "", "", false
	}
	port = u.Port()
	if port == "" {
		port = "443"
	}
	return normalHost(u.Hostname()), port, true
}

// tokenStatus turns a TokenContext error into a status error.
func tokenStatus(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if st := status.FromContextError(err); st != nil {
			return st.Err()
		}
	}
	code := codes.Unauthenticated
	if !errors.Is(err, m2m.ErrUndeclaredScope) && !errors.Is(err, m2m.ErrInvalidConfig) {
		switch m2m.ClassifyError(err) {
		case m2m.FailureNetwork, m2m.FailureTimeout, m2m.FailureServer, m2m.FailureRateLimited, m2m.FailureCredential:
			code = codes.Unavailable // the token endpoint may answer on a later try
		}
	}
	return status.Error(code, "m2mgrpc: no token: "+err.Error())
}

// normalHost lower-cases h. A trailing dot is kept: an absolute name may
// not be the host a search domain makes of the same name without it.
func normalHost(h string) string { return strings.ToLower(h) }

// isLoopback reports whether host is "localhost" itself or a literal
// loopback IP address, the rule m2m applies to plain-http URLs. A name
// under ".localhost" is not: a resolver with search domains may send it
// elsewhere.
func isLoopback(host string) bool {
	host = normalHost(host)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// String describes the Credentials without its token.
func (c *Credentials) String() string {
	return fmt.Sprintf("m2mgrpc.Credentials{audience: %q, methods: %d}", c.audience, len(c.methods))
}

// Format prints String for every verb, so no verb can show a token.
func (c *Credentials) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }
