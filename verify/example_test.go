package verify_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/verify"
)

// A Calendar Service lets a request create an event only with a
// SuperTokens OAuth2 access token for audience "event" carrying the
// "event.create" scope.
func ExampleVerifier_Middleware() {
	// An authorization server's signing key and JWKS, for the example.
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "s-1", ALG: "RS256", USE: "sig"}})
	jwks, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	defer auth.Close()
	mint := func(scopes ...string) string {
		t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"aud": []string{"event"}, "scp": scopes, "stt": 1, "client_id": "task-service", "sub": "task-service",
			"iss": auth.URL + "/auth", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		})
		t.Header["kid"] = "s-1"
		s, _ := t.SignedString(key)
		return s
	}

	v, err := verify.New(context.Background(), verify.Config{
		JWKSURL:  auth.URL + "/auth/jwt/jwks.json",
		Issuer:   auth.URL + "/auth",
		Audience: "event",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	create := v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "event created for %s", c.ClientID)
	}))

	for _, token := range []string{mint("event.create"), mint("event.view"), "not-a-token"} {
		req := httptest.NewRequest(http.MethodPost, "/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		create.ServeHTTP(rec, req)
		fmt.Println(strings.TrimSpace(fmt.Sprint(rec.Code, " ", rec.Header().Get("WWW-Authenticate"))))
	}
	// Output:
	// 200
	// 403 Bearer error="insufficient_scope", scope="event.create"
	// 401 Bearer error="invalid_token", error_description="malformed token: not a compact JWS (three dot-separated parts)"
}

// A handler that reads the claims can be tested without minting a token:
// NewContext puts claims where Middleware would.
func ExampleNewContext() {
	whoami := func(w http.ResponseWriter, r *http.Request) {
		c, ok := verify.ClaimsFromContext(r.Context())
		if !ok {
			http.Error(w, "no claims", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "%s (%s)", c.ClientID, c.Kind)
	}
	req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
	req = req.WithContext(verify.NewContext(req.Context(), &verify.Claims{ClientID: "task-service", Kind: verify.KindClientCredentials}))
	rec := httptest.NewRecorder()
	whoami(rec, req)
	fmt.Println(rec.Body.String())
	// Output: task-service (client_credentials)
}
