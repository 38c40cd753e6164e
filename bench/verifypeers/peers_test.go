// Package verifypeers measures verify.Verifier against the Go JWT
// verifiers people use instead, each configured with its usual checks
// (signature, alg RS256, aud, iss, exp), on the same tokens in the same
// run, and pins which malformed tokens each of them accepts.
package verifypeers

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/auth0/go-jwt-middleware/v2/jwks"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/m2mauth/m2m/verify"
)

const (
	kid      = "s-1"
	audience = "event"
)

// env is the authorization server every verifier is pointed at: one
// RSA-2048 key, its JWKS and OpenID metadata on an httptest server.
type env struct {
	key    *rsa.PrivateKey
	srv    *httptest.Server
	issuer string
	jwks   []byte
}

var (
	envOnce sync.Once
	shared  *env
)

func setup(tb testing.TB) *env {
	tb.Helper()
	envOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		j, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
		if err != nil {
			panic(err)
		}
		set, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{j.Marshal()}})
		e := &env{key: key, jwks: set}
		mux := http.NewServeMux()
		mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, r *http.Request) { w.Write(set) })
		mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": e.issuer, "jwks_uri": e.srv.URL + "/jwks.json"})
		})
		e.srv = httptest.NewServer(mux)
		e.issuer = e.srv.URL
		shared = e
	})
	return shared
}

// claims are a SuperTokens client-credentials token's.
func (e *env) claims(jti string) map[string]any {
	now := time.Now()
	return map[string]any{
		"aud": []string{audience}, "client_id": "task-service", "sub": "task-service", "iss": e.issuer,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": jti,
		"scp": []string{"event.create"}, "stt": 1, "gid": "g",
	}
}

// sign signs a raw payload JSON with RS256 under header JSON.
func (e *env) sign(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, e.key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return input + "." + enc(sig)
}

// token signs claims as issued: header {alg, typ, kid}.
func (e *env) token(claims map[string]any) string {
	p, _ := json.Marshal(claims)
	return e.sign(`{"alg":"RS256","kid":"`+kid+`","typ":"JWT"}`, string(p))
}

// verifier is one library set up as its documentation suggests, with the
// usual checks: signature, alg RS256, aud, iss, exp.
type verifier struct {
	name   string
	verify func(ctx context.Context, token string) error
}

func verifiers(tb testing.TB, e *env) []verifier {
	tb.Helper()
	ctx := context.Background()

	m2m, err := verify.New(ctx, verify.Config{JWKSURL: e.srv.URL + "/jwks.json", Issuer: e.issuer, Audience: audience, CacheSize: 16})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m2m.Close() })

	m2mNoCache, err := verify.New(ctx, verify.Config{JWKSURL: e.srv.URL + "/jwks.json", Issuer: e.issuer, Audience: audience, CacheSize: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m2mNoCache.Close() })

	kf, err := keyfunc.NewJWKSetJSON(e.jwks)
	if err != nil {
		tb.Fatal(err)
	}
	gj := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(audience), jwt.WithIssuer(e.issuer), jwt.WithExpirationRequired())

	var joseSet jose.JSONWebKeySet
	if err := json.Unmarshal(e.jwks, &joseSet); err != nil {
		tb.Fatal(err)
	}

	oidcKeys := oidc.NewRemoteKeySet(ctx, e.srv.URL+"/jwks.json")
	ov := oidc.NewVerifier(e.issuer, oidcKeys, &oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{"RS256"}})

	issuerURL, _ := url.Parse(e.issuer)
	jwksURL, _ := url.Parse(e.srv.URL + "/jwks.json")
	provider := jwks.NewCachingProvider(issuerURL, 5*time.Minute, jwks.WithCustomJWKSURI(jwksURL))
	av, err := validator.New(provider.KeyFunc, validator.RS256, e.issuer, []string{audience})
	if err != nil {
		tb.Fatal(err)
	}

	jwxSet, err := jwk.Parse(e.jwks)
	if err != nil {
		tb.Fatal(err)
	}

	return []verifier{
		{"m2m", func(ctx context.Context, tok string) error {
			_, err := m2m.Verify(ctx, tok)
			return err
		}},
		{"m2m-cache-off", func(ctx context.Context, tok string) error {
			_, err := m2mNoCache.Verify(ctx, tok)
			return err
		}},
		{"golang-jwt+keyfunc", func(_ context.Context, tok string) error {
			_, err := gj.Parse(tok, kf.Keyfunc)
			return err
		}},
		{"go-jose", func(_ context.Context, tok string) error {
			t, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				return err
			}
			keys := joseSet.Key(t.Headers[0].KeyID)
			if len(keys) != 1 {
				return fmt.Errorf("no key %q", t.Headers[0].KeyID)
			}
			var c josejwt.Claims
			if err := t.Claims(keys[0].Key, &c); err != nil {
				return err
			}
			if c.Expiry == nil {
				return fmt.Errorf("no exp")
			}
			return c.Validate(josejwt.Expected{Issuer: e.issuer, AnyAudience: []string{audience}, Time: time.Now()})
		}},
		{"go-oidc", func(ctx context.Context, tok string) error {
			_, err := ov.Verify(ctx, tok)
			return err
		}},
		{"go-jwt-middleware", func(ctx context.Context, tok string) error {
			_, err := av.ValidateToken(ctx, tok)
			return err
		}},
		{"jwx", func(_ context.Context, tok string) error {
			_, err := jwxjwt.Parse([]byte(tok), jwxjwt.WithKeySet(jwxSet), jwxjwt.WithValidate(true),
				jwxjwt.WithIssuer(e.issuer), jwxjwt.WithAudience(audience), jwxjwt.WithRequiredClaim("exp"))
			return err
		}},
	}
}

// pool returns n distinct valid tokens and, for each, what the floor
// verifies: the SHA-256 input and the decoded signature.
func pool(e *env, n int) (tokens []string, inputs []string, sigs [][]byte) {
	for i := range n {
		tok := e.token(e.claims(fmt.Sprint("j", i)))
		dot := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		tokens, inputs, sigs = append(tokens, tok), append(inputs, tok[:dot]), append(sigs, sig)
	}
	return tokens, inputs, sigs
}

// floor is a bare RS256 verification: SHA-256 and RSA PKCS#1 v1.5.
func floor(pub *rsa.PublicKey, input string, sig []byte) error {
	sum := sha256.Sum256([]byte(input))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
}

func TestEveryVerifierAcceptsTheTokens(t *testing.T) {
	e := setup(t)
	tokens, inputs, sigs := pool(e, 4)
	for _, v := range verifiers(t, e) {
		for i, tok := range tokens {
			if err := v.verify(context.Background(), tok); err != nil {
				t.Errorf("%s refuses a valid token: %v", v.name, err)
			}
			if err := floor(&e.key.PublicKey, inputs[i], sigs[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkVerifyNewToken: each verifier on tokens it has not seen (m2m's
// cache is on but holds 16 of 256 tokens, so every call misses), beside
// the floor, in one process.
func BenchmarkVerifyNewToken(b *testing.B) {
	e := setup(b)
	tokens, inputs, sigs := pool(e, 256)
	ctx := context.Background()
	b.Run("floor=crypto-rsa", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := floor(&e.key.PublicKey, inputs[i%len(inputs)], sigs[i%len(sigs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	for _, v := range verifiers(b, e) {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := v.verify(ctx, tokens[i%len(tokens)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkVerifyPaired runs each verifier and the floor alternately on
// the same token (taking turns at going first), timing every call, and reports the median verifier call
// as a multiple of the median floor call ("x-floor"): on a shared, noisy
// machine, interleaved calls see the same load, and medians ignore the
// calls a preemption stretched.
func BenchmarkVerifyPaired(b *testing.B) {
	e := setup(b)
	tokens, inputs, sigs := pool(e, 256)
	ctx := context.Background()
	for _, v := range verifiers(b, e) {
		b.Run(v.name, func(b *testing.B) {
			var inFloor, inVerifier []time.Duration
			i := 0
			for b.Loop() {
				k := i % len(tokens)
				// Alternate which goes first, so neither always runs on
				// caches the other warmed.
				var df, dv time.Duration
				for turn := range 2 {
					t0 := time.Now()
					if (turn+i)%2 == 0 {
						if err := floor(&e.key.PublicKey, inputs[k], sigs[k]); err != nil {
							b.Fatal(err)
						}
						df = time.Since(t0)
					} else {
						if err := v.verify(ctx, tokens[k]); err != nil {
							b.Fatal(err)
						}
						dv = time.Since(t0)
					}
				}
				inFloor = append(inFloor, df)
				inVerifier = append(inVerifier, dv)
				i++
			}
			f, m := median(inFloor), median(inVerifier)
			b.ReportMetric(float64(m)/float64(f), "x-floor")
			b.ReportMetric(float64(m.Nanoseconds()), "ns/verify")
			b.ReportMetric(float64(f.Nanoseconds()), "ns/floor")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
