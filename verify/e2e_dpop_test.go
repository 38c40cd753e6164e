package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dpopTokenServer is an authorization server of the test's own that
// issues DPoP-bound JWTs (RFC 9449 §5, §6): it reads the DPoP proof of the
// token request, checks its signature with the key the proof carries, and
// binds the token to that key's RFC 7638 thumbprint (cnf.jkt).
type dpopTokenServer struct {
	*httptest.Server
	key     *rsa.PrivateKey
	issued  atomic.Int32
	lastJKT atomic.Value // string
}

func newDPoPTokenServer(t *testing.T) *dpopTokenServer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pub, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: "RS256", USE: "sig"}})
	require.NoError(t, err)
	jwks, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
	require.NoError(t, err)
	s := &dpopTokenServer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) })
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "task-service" || secret != "s3cret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		jkt, err := tokenRequestProof(r)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":"invalid_dpop_proof","error_description":%q}`, err.Error())
			return
		}
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": s.URL, "aud": []string{"event"}, "sub": id, "client_id": id, "stt": 1,
			"scp": strings.Fields(r.PostFormValue("scope")), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"jti": fmt.Sprint(s.issued.Add(1)), "cnf": map[string]string{"jkt": jkt},
		})
		tok.Header["kid"] = "k1"
		signed, err := tok.SignedString(key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.lastJKT.Store(jkt)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": signed, "token_type": "DPoP", "expires_in": 3600})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// tokenRequestProof checks the DPoP proof of a token request (an ES256
// proof with htm POST) and returns the thumbprint of its key.
func tokenRequestProof(r *http.Request) (string, error) {
	dec := base64.RawURLEncoding
	parts := strings.Split(r.Header.Get("DPoP"), ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("no DPoP proof")
	}
	var h struct {
		Typ, Alg string
		JWK      struct{ Kty, Crv, X, Y string }
	}
	var c struct{ HTM, HTU string }
	hb, err1 := dec.DecodeString(parts[0])
	cb, err2 := dec.DecodeString(parts[1])
	sig, err3 := dec.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &h) != nil || json.Unmarshal(cb, &c) != nil {
		return "", fmt.Errorf("malformed proof")
	}
	if h.Typ != "dpop+jwt" || h.Alg != "ES256" || h.JWK.Kty != "EC" || h.JWK.Crv != "P-256" || c.HTM != "POST" || len(sig) != 64 {
		return "", fmt.Errorf("not an ES256 proof of a POST")
	}
	x, err1 := dec.DecodeString(h.JWK.X)
	y, err2 := dec.DecodeString(h.JWK.Y)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("malformed jwk")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return "", fmt.Errorf("jwk: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	der, err := asn1Signature(sig)
	if err != nil || !ecdsa.VerifyASN1(pub, sum[:], der) {
		return "", fmt.Errorf("bad proof signature")
	}
	canonical := `{"crv":"P-256","kty":"EC","x":"` + h.JWK.X + `","y":"` + h.JWK.Y + `"}`
	t := sha256.Sum256([]byte(canonical))
	return dec.EncodeToString(t[:]), nil
}

// asn1Signature turns r||s into the DER form ecdsa.VerifyASN1 takes.
func asn1Signature(sig []byte) ([]byte, error) {
	integer := func(b []byte) []byte {
		for len(b) > 1 && b[0] == 0 {
			b = b[1:]
		}
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(integer(sig[:32]), integer(sig[32:])...)
	return append([]byte{0x30, byte(len(body))}, body...), nil
}

// TestDPoPEndToEnd: an m2m Transport holding a DPoP key calls a service
// guarded by verify's middleware; the token is bound to the key, every
// request carries a fresh proof, and the token alone is refused.
func TestDPoPEndToEnd(t *testing.T) {
	for _, nonces := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonces=%v", nonces), func(t *testing.T) {
			as := newDPoPTokenServer(t)
			ctx := context.Background()
			cfg := verify.Config{JWKSURL: as.URL + "/jwks.json", Issuer: as.URL, Audience: "event"}
			if nonces {
				cfg.DPoPNonceInterval = time.Minute
			}
			v, err := verify.New(ctx, cfg)
			require.NoError(t, err)
			defer v.Close()
			var served atomic.Int32
			api := httptest.NewServer(v.Middleware("event.create")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, _ := verify.ClaimsFromContext(r.Context())
				served.Add(1)
				io.WriteString(w, c.ClientID+" "+c.JWKThumbprint)
			})))
			defer api.Close()

			dpopKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			client, err := m2m.New(m2m.Config{TokenURL: as.URL + "/token", ClientID: "task-service", ClientSecret: "s3cret", DPoPKey: dpopKey})
			require.NoError(t, err)
			defer client.Close()
			src, err := client.Source(m2m.Audience{Name: "event", Scopes: []string{"event.create"}, URL: api.URL + "/"})
			require.NoError(t, err)
			hc := &http.Client{Transport: m2m.NewTransport(nil, src)}
			defer hc.CloseIdleConnections()

			for i := range 3 {
				resp, err := hc.Post(api.URL+"/events?n="+fmt.Sprint(i), "text/plain", strings.NewReader("event"))
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
				assert.Equal(t, "task-service "+as.lastJKT.Load().(string), string(body))
			}
			assert.EqualValues(t, 3, served.Load())
			assert.EqualValues(t, 1, as.issued.Load(), "one token, a proof per request")

			// The token without the key: refused as a bearer token, and as
			// a DPoP token with no proof.
			tok, err := src.TokenContext(ctx)
			require.NoError(t, err)
			for _, scheme := range []string{"Bearer", "DPoP"} {
				req, err := http.NewRequest(http.MethodPost, api.URL+"/events", nil)
				require.NoError(t, err)
				req.Header.Set("Authorization", scheme+" "+tok.AccessToken)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, scheme)
				assert.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP "), scheme)
			}
			assert.EqualValues(t, 3, served.Load())
		})
	}
}
