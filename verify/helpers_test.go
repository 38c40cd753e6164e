package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testmain.Run(m) }

var (
	keysOnce     sync.Once
	rsaA, rsaB   *rsa.PrivateKey
	rsaSmall     *rsa.PrivateKey
	ecKey        *ecdsa.PrivateKey
	now          = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	testIssuer   = "http://127.0.0.1/auth"
	testAudience = "event"
	testClientID = "task-service"
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err == nil {
			rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024)
		}
		if err == nil {
			ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			panic(err)
		}
	})
}

// jwk returns the public JWK of key under kid.
func jwk(t testing.TB, key any, kid string, alg jwkset.ALG) jwkset.JWKMarshal {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
	require.NoError(t, err)
	return j.Marshal()
}

// jwksServer serves a JWKS that tests can change, counting requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	body []byte
}

func newJWKSServer(t testing.TB, keys ...jwkset.JWKMarshal) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, keys ...jwkset.JWKMarshal) {
	b, err := json.Marshal(jwkset.JWKSMarshal{Keys: keys})
	require.NoError(t, err)
	s.setBody(b)
}

func (s *jwksServer) setBody(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

// goodClaims are the claims of a valid SuperTokens client-credentials token.
func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"aud": []string{"event"}, "client_id": testClientID, "sub": testClientID,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"iss": testIssuer, "jti": "j1", "scp": []string{"event.create"}, "stt": 1, "gid": "g",
	}
}

// mint signs claims with key under kid using method.
func mint(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// rawJWT builds a token from literal header and payload JSON, signed with
// RS256 by key (a nil key leaves the signature empty).
func rawJWT(t testing.TB, header, payload string, key *rsa.PrivateKey) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	if key == nil {
		return input + "."
	}
	sig, err := jwt.SigningMethodRS256.Sign(input, key)
	require.NoError(t, err)
	return input + "." + enc(sig)
}

// newTestVerifier returns a Verifier on srv with a fake clock at now.
func newTestVerifier(t testing.TB, srv *jwksServer, mod func(*Config)) (*Verifier, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(now)
	cfg := Config{JWKSURL: srv.URL + "/auth/jwt/jwks.json", Audience: testAudience, Issuer: testIssuer}
	if mod != nil {
		mod(&cfg)
	}
	v, err := newVerifier(context.Background(), cfg, fc)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v, fc
}

var _ crypto.Signer = (*rsa.PrivateKey)(nil)

// has reports whether the current key set holds kid.
func (ks *keySet) has(kid string) bool { return ks.cur.Load().byKID[kid] != nil }

// mintHeader signs claims with RS256 by rsaA, with header members set (a
// nil value deletes the member golang-jwt would write, such as typ).
func mintHeader(t testing.TB, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "s-a"
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(rsaA)
	require.NoError(t, err)
	return s
}

// rfcClaims are the claims of a valid RFC 9068 client-credentials token.
func rfcClaims() jwt.MapClaims {
	c := goodClaims()
	delete(c, "stt")
	delete(c, "gid")
	return c
}

// with returns claims changed by mod.
func with(claims jwt.MapClaims, mod func(jwt.MapClaims)) jwt.MapClaims {
	mod(claims)
	return claims
}
