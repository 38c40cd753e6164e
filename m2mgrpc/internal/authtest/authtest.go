// Package authtest is an authorization server for the examples and tests:
// a client-credentials token endpoint (form body, client_secret_basic)
// issuing RS256 JWT access tokens shaped like SuperTokens' (stt 1, aud,
// scp, client_id, sub, iss, iat, exp, jti), and its JWKS. It listens on
// 127.0.0.1 and is not for production.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// The client the server knows.
const (
	ClientID     = "task-service"
	ClientSecret = "task-secret"
)

// Request is one token request the server answered with a token.
type Request struct {
	Audience string
	Scope    string // space-separated, as sent
}

// Server is the test authorization server. It is safe for concurrent use.
type Server struct {
	// TokenURL, JWKSURL and Issuer are the endpoints and the iss claim.
	TokenURL, JWKSURL, Issuer string

	srv *httptest.Server

	mu       sync.Mutex
	key      *rsa.PrivateKey // guarded by mu
	kid      string          // guarded by mu
	lifetime time.Duration   // guarded by mu
	requests []Request       // guarded by mu
	n        int             // tokens issued; guarded by mu
}

// Start starts a Server issuing one-hour tokens.
func Start() (*Server, error) {
	s := &Server{lifetime: time.Hour}
	if err := s.RotateKey(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/oauth/token", s.token)
	mux.HandleFunc("GET /auth/jwt/jwks.json", s.jwks)
	s.srv = httptest.NewServer(mux)
	s.TokenURL = s.srv.URL + "/auth/oauth/token"
	s.JWKSURL = s.srv.URL + "/auth/jwt/jwks.json"
	s.Issuer = s.srv.URL + "/auth"
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetLifetime sets the lifetime (expires_in and exp) of the next tokens.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// RotateKey makes a new signing key; the old one leaves the JWKS, so
// tokens it signed stop verifying once a verifier refetches the JWKS.
func (s *Server) RotateKey() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.kid = key, fmt.Sprintf("s-%d", time.Now().UnixNano())
	return nil
}

// Requests returns the token requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Mint returns a token for audience with scopes, expiring at exp, signed
// with the current key.
func (s *Server) Mint(audience string, scopes []string, exp time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mintLocked(audience, scopes, exp)
}

func (s *Server) mintLocked(audience string, scopes []string, exp time.Time) string {
	s.n++
	if scopes == nil {
		scopes = []string{}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": []string{audience}, "scp": scopes, "stt": 1, "client_id": ClientID, "sub": ClientID,
		"iss": s.Issuer, "iat": time.Now().Unix(), "exp": exp.Unix(), "jti": fmt.Sprintf("jti-%d", s.n),
	})
	t.Header["kid"] = s.kid
	raw, err := t.SignedString(s.key)
	if err != nil {
		panic(err) // an RSA key we made cannot fail to sign
	}
	return raw
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	id, secret, ok := r.BasicAuth()
	if !ok || id != ClientID || secret != ClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_request"}`)
		return
	}
	aud, scope := r.PostForm.Get("audience"), r.PostForm.Get("scope")
	s.mu.Lock()
	life := s.lifetime
	raw := s.mintLocked(aud, strings.Fields(scope), time.Now().Add(life))
	s.requests = append(s.requests, Request{Audience: aud, Scope: scope})
	s.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": raw, "token_type": "bearer", "expires_in": int(life.Seconds()), "scope": scope,
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	key, kid := s.key, s.kid
	s.mu.Unlock()
	pub, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: "RS256", USE: "sig"}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
}
