// Package devserver is a SuperTokens-compatible OAuth2 authorization server
// for development, demos and tests. It is NOT for production: it keeps
// clients and keys in memory, has no persistence, no rate limiting and no
// hardening beyond what tests need.
//
// It serves, on one listener:
//   - POST /auth/oauth/token: the client-credentials grant, form or JSON
//     body, client_secret_basic or client_secret_post as each client is
//     registered, answering like SuperTokens (and Hydra's error shapes);
//   - GET /auth/jwt/jwks.json: the RS256 signing keys;
//   - the core's client API: POST /recipe/oauth/clients,
//     GET /recipe/oauth/clients/list, POST /recipe/oauth/clients/remove,
//     guarded by the api-key header;
//   - whatever else is added with Handle (the m2m CLI adds an example
//     resource server guarded by package verify).
package devserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Options configure a Server. Zero values are the defaults.
type Options struct {
	// APIKey guards the client API. Default: a random key (see APIKey).
	APIKey string
	// TokenLifetime is the access-token lifetime of clients that set none.
	// Default 1 h.
	TokenLifetime time.Duration
	// Clients are registered at start, with the ids and secrets they hold.
	Clients []Client
}

// Faults make the token endpoint misbehave, for tests and benchmarks.
type Faults struct {
	// Latency delays every token response.
	Latency time.Duration
	// FailureRate is the share of token requests, in [0, 1], answered
	// 503 temporarily_unavailable.
	FailureRate float64
}

// Server is the development authorization server. It is safe for
// concurrent use.
type Server struct {
	apiKey   string
	lifetime time.Duration

	mu       sync.RWMutex
	clients  map[string]*Client // guarded by mu
	keys     []signingKey       // guarded by mu; the last one signs
	faults   Faults             // guarded by mu
	issuer   string             // guarded by mu; set by SetIssuer or Start
	requests int64              // guarded by mu; token requests seen

	mux *http.ServeMux // routes; safe for concurrent registration
	srv *http.Server
	ln  net.Listener
}

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

// New returns a Server with one fresh RSA-2048 signing key and the
// clients of opts registered.
func New(opts Options) (*Server, error) {
	s := &Server{apiKey: opts.APIKey, lifetime: opts.TokenLifetime, clients: map[string]*Client{}, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /auth/oauth/token", s.token)
	s.mux.HandleFunc("GET /auth/jwt/jwks.json", s.jwks)
	s.mux.HandleFunc("POST /recipe/oauth/clients", s.guard(s.createClient))
	s.mux.HandleFunc("GET /recipe/oauth/clients/list", s.guard(s.listClients))
	s.mux.HandleFunc("POST /recipe/oauth/clients/remove", s.guard(s.removeClient))
	if s.apiKey == "" {
		s.apiKey = randomHex(16)
	}
	if s.lifetime <= 0 {
		s.lifetime = time.Hour
	}
	if _, err := s.RotateKey(false); err != nil {
		return nil, err
	}
	for _, c := range opts.Clients {
		if _, err := s.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// APIKey returns the key the client API expects in the api-key header.
func (s *Server) APIKey() string { return s.apiKey }

// SetIssuer sets the iss claim; Start sets it to URL()+"/auth".
func (s *Server) SetIssuer(iss string) {
	s.mu.Lock()
	s.issuer = iss
	s.mu.Unlock()
}

// Issuer returns the iss claim of issued tokens.
func (s *Server) Issuer() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.issuer
}

// SetFaults changes the injected latency and failure rate.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// TokenRequests returns how many token requests the server has received.
func (s *Server) TokenRequests() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.requests
}

// RotateKey adds a new signing key, which signs from now on. Unless keepOld,
// the previous keys leave the JWKS (tokens they signed stop verifying once
// verifiers refresh). It returns the new kid.
func (s *Server) RotateKey(keepOld bool) (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	kid := "s-" + randomHex(8)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !keepOld {
		s.keys = nil
	}
	s.keys = append(s.keys, signingKey{kid: kid, key: key})
	return kid, nil
}

// Handler returns the server's routes, those added with Handle included.
func (s *Server) Handler() http.Handler { return s.mux }

// Handle serves h for pattern (an http.ServeMux pattern) beside the
// authorization server's own routes, before or after Start. It panics,
// as http.ServeMux does, when pattern conflicts with a route already
// registered.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Start listens on addr (default "127.0.0.1:0") and serves until ctx ends
// or Close is called.
func (s *Server) Start(ctx context.Context, addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devserver: %w", err)
	}
	s.ln = ln
	s.SetIssuer(s.URL() + "/auth")
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	context.AfterFunc(ctx, func() { s.Close() })
	return nil
}

// URL returns the server's base URL ("apiDomain"), once started.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// TokenURL returns the token endpoint's URL.
func (s *Server) TokenURL() string { return s.URL() + "/auth/oauth/token" }

// JWKSURL returns the JWKS URL.
func (s *Server) JWKSURL() string { return s.URL() + "/auth/jwt/jwks.json" }

// Close stops the server and waits for in-flight requests briefly.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return s.srv.Close()
	}
	return err
}

// jwks serves the public keys.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	keys := append([]signingKey(nil), s.keys...)
	s.mu.RUnlock()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(&k.key.PublicKey, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	writeJSON(w, http.StatusOK, set)
}

// sign issues an access token with SuperTokens' client-credentials claims.
func (s *Server) sign(c *Client, scopes, audiences []string, life time.Duration) (string, error) {
	s.mu.RLock()
	k, iss := s.keys[len(s.keys)-1], s.issuer
	s.mu.RUnlock()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": audiences, "client_id": c.ClientID, "sub": c.ClientID, "iss": iss,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		"jti": randomHex(16), "gid": randomHex(16), "scp": scopes, "stt": 1,
	})
	tok.Header["kid"] = k.kid
	return tok.SignedString(k.key)
}

// fault applies the injected latency and failure rate; true means the
// request was answered with a failure.
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	s.requests++
	f := s.faults
	s.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		}
	}
	if f.FailureRate > 0 && mrand.Float64() < f.FailureRate {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "injected failure")
		return true
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
