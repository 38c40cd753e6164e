package m2m

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, _ := testKeys()
	dir := t.TempDir()
	ecJWK := func() []byte {
		raw, _ := ec1.Bytes()
		pub, _ := ec1.PublicKey.Bytes()
		b, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "kid": "from-jwk", "alg": "ES256",
			"d": base64.RawURLEncoding.EncodeToString(raw), "x": base64.RawURLEncoding.EncodeToString(pub[1:33]), "y": base64.RawURLEncoding.EncodeToString(pub[33:])})
		return b
	}()
	tests := []struct {
		name    string
		key     crypto.Signer
		mod     func(*Config)
		alg     string
		kid     string
		wantAud func(s *credServer) string
	}{
		{name: "RS256 signer, default kid", key: rsa1, mod: func(c *Config) { c.PrivateKey = rsa1 }, alg: "RS256", kid: thumbprint(&rsa1.PublicKey)},
		{name: "PS256 signer", key: rsa1, mod: func(c *Config) { c.PrivateKey, c.SigningAlgorithm, c.KeyID = rsa1, AlgPS256, "k1" }, alg: "PS256", kid: "k1"},
		{name: "ES256 signer", key: ec1, mod: func(c *Config) { c.PrivateKey, c.KeyID = ec1, "k1" }, alg: "ES256", kid: "k1"},
		{name: "RS256 PEM file", key: rsa1, mod: func(c *Config) { c.PrivateKeyFile = writeFile(t, dir, "rsa.pem", pemKey(t, rsa1)) }, alg: "RS256", kid: thumbprint(&rsa1.PublicKey)},
		{name: "ES256 JWK file keeps its kid", key: ec1, mod: func(c *Config) { c.PrivateKeyFile = writeFile(t, dir, "ec.jwk", ecJWK) }, alg: "ES256", kid: "from-jwk"},
		{name: "KeyID overrides the JWK's", key: ec1, mod: func(c *Config) { c.PrivateKeyFile, c.KeyID = writeFile(t, dir, "ec2.jwk", ecJWK), "mine" }, alg: "ES256", kid: "mine"},
		{name: "issuer as audience", key: ec1, mod: func(c *Config) { c.PrivateKey, c.KeyID, c.AssertionAudience = ec1, "k1", "https://issuer.example" }, alg: "ES256", kid: "k1",
			wantAud: func(*credServer) string { return "https://issuer.example" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newCredServer(t, false)
			s.set(func(s *credServer) {
				s.keys[tc.kid] = tc.key.Public()
				if tc.wantAud != nil {
					s.aud = tc.wantAud(s)
				}
			})
			c, fc := newCredClient(t, s, tc.mod)
			src := mustSource(t, c, eventAudience)
			_, err := src.TokenContext(context.Background())
			require.NoError(t, err)
			fc.Advance(time.Hour) // expired: the next call fetches with a new assertion
			_, err = src.TokenContext(context.Background())
			require.NoError(t, err)

			reqs := s.requests()
			require.Len(t, reqs, 2)
			for i, r := range reqs {
				require.Equal(t, "private_key_jwt", r.auth, "request %d", i)
				a := r.assertion
				assert.Equal(t, tc.alg, a.header["alg"])
				assert.Equal(t, tc.kid, a.header["kid"])
				assert.Equal(t, "JWT", a.header["typ"])
				assert.Equal(t, testID, a.str("iss"))
				assert.Equal(t, testID, a.str("sub"))
				assert.Equal(t, int64(60), a.num("exp")-a.num("iat"))
				assert.Equal(t, testID, r.form.Get("client_id"))
				assert.Empty(t, r.form.Get("client_secret"))
				assert.Equal(t, "client_credentials", r.form.Get("grant_type"))
				assert.Equal(t, "event", r.form.Get("audience"))
			}
			assert.Equal(t, fc.Now().Unix(), reqs[1].assertion.num("iat"), "signed when sent, on the Client's clock")
			assert.NotEqual(t, reqs[0].assertion.str("jti"), reqs[1].assertion.str("jti"), "a fresh assertion per request")
		})
	}
}

func TestPrivateKeyJWTJSONBody(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	var got map[string]string
	s := newCredServer(t, false)
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		fmt.Fprint(w, `{"access_token":"t","token_type":"bearer","expires_in":60}`)
	})
	c, _ := newCredClient(t, s, func(c *Config) { c.PrivateKey, c.Encoding = ec1, EncodingJSON })
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	require.NoError(t, err)
	assert.Equal(t, assertionType, got["client_assertion_type"])
	assert.Equal(t, testID, got["client_id"])
	a, err := parseJWS(got["client_assertion"])
	require.NoError(t, err)
	require.NoError(t, a.verify(&ec1.PublicKey))
	assert.Equal(t, "client_credentials", got["grant_type"])
}

func TestClientAssertionFunc(t *testing.T) {
	t.Parallel()
	s := newCredServer(t, false)
	var calls atomic.Int64
	var next atomic.Value
	next.Store("assertion-1")
	c, fc := newCredClient(t, s, func(c *Config) {
		c.ClientAssertion = func(ctx context.Context) (string, error) {
			calls.Add(1)
			require.NotNil(t, ctx)
			a := next.Load().(string)
			if a == "fail" {
				return "", errors.New("metadata server unreachable")
			}
			return a, nil
		}
		c.MaxRetries = -1
	})
	s.set(func(s *credServer) { s.assertions["assertion-1"], s.assertions["assertion-2"] = true, true })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	next.Store("assertion-2")
	fc.Advance(time.Hour)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	reqs := s.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "assertion-1", reqs[0].form.Get("client_assertion"))
	assert.Equal(t, "assertion-2", reqs[1].form.Get("client_assertion"), "called for every request, never cached")
	assert.Equal(t, "assertion", reqs[1].auth)

	for _, tc := range []struct{ name, assertion, want string }{
		{"function fails", "fail", "metadata server unreachable"},
		{"expired JWT", jwtWithExp(fc.Now().Add(2 * time.Hour).Add(-time.Second)), "expired"},
		{"white space", "a b", "white space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next.Store(tc.assertion)
			fc.Advance(2 * time.Hour)
			before := s.hits.Load()
			_, err := src.TokenContext(context.Background())
			require.ErrorIs(t, err, ErrCredentialUnavailable)
			assert.Equal(t, FailureCredential, ClassifyError(err))
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, before, s.hits.Load(), "nothing was sent")
		})
	}
}

// jwtWithExp returns an unsigned JWT-shaped assertion with exp.
func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":"x","exp":%d}`, exp.Unix())) + ".c2ln"
}

func TestClientAssertionFile(t *testing.T) {
	t.Parallel()
	s := newCredServer(t, false)
	a1, a2, a3 := jwtWithExp(epoch.Add(10*time.Minute)), jwtWithExp(epoch.Add(20*time.Minute)), jwtWithExp(epoch.Add(30*time.Minute))
	s.set(func(s *credServer) {
		s.assertions[a1], s.assertions[a2], s.assertions[a3] = true, true, true
		s.expiresIn = 1
	})
	dir := t.TempDir()
	path := writeFile(t, dir, "token", []byte(a1+"\n"))
	c, fc := newCredClient(t, s, func(c *Config) { c.ClientAssertionFile = path; c.MaxRetries = -1; c.DisableKeepWarm = true })
	src := mustSource(t, c, eventAudience)
	// Tokens live a second: every call below fetches.
	at := func(d time.Duration) (string, error) {
		fc.Set(epoch.Add(d))
		_, err := src.TokenContext(context.Background())
		reqs := s.requests()
		return reqs[len(reqs)-1].form.Get("client_assertion"), err
	}
	got, err := at(0)
	require.NoError(t, err)
	assert.Equal(t, a1, got, "trimmed")

	// The kubelet writes a new token: taken at the next look, 5 s on.
	writeFile(t, dir, "token", []byte(a2))
	got, err = at(3 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, a1, got)
	got, err = at(6 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, a2, got)

	// Within 10 s of its exp the file is read at once, although the last
	// look was 3 s ago.
	got, err = at(20*time.Minute - 12*time.Second)
	require.NoError(t, err)
	assert.Equal(t, a2, got)
	writeFile(t, dir, "token", []byte(a3))
	got, err = at(20*time.Minute - 9*time.Second)
	require.NoError(t, err)
	assert.Equal(t, a3, got)

	// Expired, and the file holds nothing newer: nothing is sent.
	before := s.hits.Load()
	_, err = at(30 * time.Minute)
	require.ErrorIs(t, err, ErrCredentialUnavailable)
	assert.Contains(t, err.Error(), "expired")
	assert.Equal(t, before, s.hits.Load())
}

func TestSecretFileIsLookedAtEveryFewSeconds(t *testing.T) {
	t.Parallel()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets["old"], s.secrets["new"] = true, true; s.expiresIn = 1 })
	dir := t.TempDir()
	path := writeFile(t, dir, "secret", []byte("old\n"))
	c, fc := newCredClient(t, s, func(c *Config) { c.ClientSecretFile = path })
	src := mustSource(t, c, eventAudience)
	secretAt := func(d time.Duration) string {
		fc.Advance(d)
		_, err := src.TokenContext(context.Background())
		require.NoError(t, err)
		reqs := s.requests()
		return reqs[len(reqs)-1].secret
	}
	assert.Equal(t, "old", secretAt(0), "the newline is not part of the secret")
	writeFile(t, dir, "secret", []byte("new\n"))
	assert.Equal(t, "old", secretAt(2*time.Second), "not looked at again within 5 s")
	assert.Equal(t, "new", secretAt(4*time.Second), "looked at once 5 s have passed")

	// A file that stops parsing keeps the last good secret.
	writeFile(t, dir, "secret", []byte("\x00\x01"))
	assert.Equal(t, "new", secretAt(6*time.Second))
	require.NoError(t, os.Remove(path))
	assert.Equal(t, "new", secretAt(6*time.Second))
}

func TestInvalidClientRereadsTheFileAtOnce(t *testing.T) {
	t.Parallel()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets["old"] = true; s.expiresIn = 1 })
	dir := t.TempDir()
	path := writeFile(t, dir, "secret", []byte("old"))
	c, fc := newCredClient(t, s, func(c *Config) { c.ClientSecretFile = path; c.MaxRetries = -1; c.DisableKeepWarm = true })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	// Rotated on the server and on disk a moment ago: the next look is
	// not due, but the server's invalid_client makes the file be read at
	// once, and the request sent again in the same fetch.
	s.set(func(s *credServer) { s.secrets = map[string]bool{"new": true} })
	writeFile(t, dir, "secret", []byte("new"))
	fc.Advance(2 * time.Second)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	reqs := s.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, []string{"old", "old", "new"}, []string{reqs[0].secret, reqs[1].secret, reqs[2].secret})
	assert.Equal(t, 401, reqs[1].status)

	// A refusal the file cannot fix is not sent again.
	s.set(func(s *credServer) { s.secrets = map[string]bool{} })
	fc.Advance(time.Minute)
	_, err = src.TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "invalid_client", te.ErrorCode)
	assert.Len(t, s.requests(), 4)
}

func TestUnknownKidRereadsTheKeyFileAtOnce(t *testing.T) {
	t.Parallel()
	_, _, ec1, ec2 := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.keys[thumbprint(ec1.Public())] = ec1.Public(); s.expiresIn = 1 })
	dir := t.TempDir()
	path := writeFile(t, dir, "key.pem", pemKey(t, ec1))
	c, fc := newCredClient(t, s, func(c *Config) { c.PrivateKeyFile = path; c.MaxRetries = -1; c.DisableKeepWarm = true })
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	// The server now knows only the new key, which is on disk: its 400
	// (Ory Hydra's answer to an unknown kid) makes the file be read at
	// once, before the next look is due.
	s.set(func(s *credServer) { s.keys = map[string]crypto.PublicKey{thumbprint(ec2.Public()): ec2.Public()} })
	writeFile(t, dir, "key.pem", pemKey(t, ec2))
	fc.Advance(2 * time.Second)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	reqs := s.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, []int{200, 400, 200}, []int{reqs[0].status, reqs[1].status, reqs[2].status})
	assert.Equal(t, thumbprint(ec2.Public()), reqs[2].assertion.header["kid"], "the kid follows the key")
}

// TestRotationUnderSteadyTraffic rotates each kind of credential on the
// server and on disk while callers keep asking for tokens, in the order
// operators do it (the server accepts both, the file changes, the server
// drops the old) and in the order that goes wrong (the server first, the
// file later): no caller ever sees an error or an expired token.
func TestRotationUnderSteadyTraffic(t *testing.T) {
	t.Parallel()
	rsa1, rsa2, ec1, ec2 := testKeys()
	type cred struct {
		files  map[string][]byte
		accept func(s *credServer)
	}
	secret := func(v string) cred {
		return cred{map[string][]byte{"secret": []byte(v)}, func(s *credServer) { s.secrets[v] = true }}
	}
	key := func(k crypto.Signer) cred {
		return cred{map[string][]byte{"key.pem": pemKey(t, k)}, func(s *credServer) { s.keys[thumbprint(k.Public())] = k.Public() }}
	}
	cert := func(k *ecdsa.PrivateKey, cn string) cred {
		c, sum := selfSigned(t, k, cn)
		return cred{map[string][]byte{"tls.crt": c, "tls.key": pemKey(t, k)}, func(s *credServer) { s.certs[sum] = true }}
	}
	kinds := []struct {
		name     string
		tls      bool
		old, new cred
		mod      func(c *Config, dir string)
	}{
		{"secret", false, secret("old-secret"), secret("new-secret"), func(c *Config, dir string) { c.ClientSecretFile = dir + "/secret" }},
		{"private key", false, key(rsa1), key(rsa2), func(c *Config, dir string) { c.PrivateKeyFile = dir + "/key.pem" }},
		{"certificate", true, cert(ec1, "old"), cert(ec2, "new"), func(c *Config, dir string) {
			c.TLSCertFile, c.TLSKeyFile = dir+"/tls.crt", dir+"/tls.key"
		}},
	}
	for _, kind := range kinds {
		for _, serverFirst := range []bool{false, true} {
			name := kind.name + "/overlap"
			if serverFirst {
				name = kind.name + "/server first"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := newCredServer(t, kind.tls)
				s.set(func(s *credServer) { kind.old.accept(s); s.expiresIn = 60 })
				dir := t.TempDir()
				for f, data := range kind.old.files {
					writeFile(t, dir, f, data)
				}
				c, fc := newCredClient(t, s, func(c *Config) { kind.mod(c, dir) })
				src := mustSource(t, c, eventAudience)

				// Four callers make five calls each per second of fake time,
				// concurrently with each other and with the refreshes.
				var failures, stale, calls atomic.Int64
				work := make([]chan struct{}, 4)
				done := make(chan struct{})
				var wg sync.WaitGroup
				for w := range work {
					work[w] = make(chan struct{})
					wg.Go(func() {
						for range work[w] {
							for range 5 {
								tok, err := src.TokenContext(context.Background())
								calls.Add(1)
								switch {
								case err != nil:
									failures.Add(1)
									t.Errorf("request failed: %v", err)
								case !tok.Expiry.After(fc.Now()):
									stale.Add(1)
								}
							}
							done <- struct{}{}
						}
					})
				}
				steps := 0
				step := func(n int) {
					steps += n
					for range n {
						fc.Advance(time.Second)
						for _, ch := range work {
							ch <- struct{}{}
						}
						for range work {
							<-done
						}
						require.Eventually(t, func() bool { return src.full.Load().inflight.Load() == nil }, 30*time.Second, time.Millisecond)
					}
				}
				step(70) // a refresh or so on the old credential
				if serverFirst {
					s.set(func(s *credServer) {
						s.secrets, s.keys, s.certs = map[string]bool{}, map[string]crypto.PublicKey{}, map[string]bool{}
						kind.new.accept(s)
					})
					step(20) // refreshes fail meanwhile; the current token is served
				} else {
					s.set(kind.new.accept)
				}
				for f, data := range kind.new.files {
					writeFile(t, dir, f, data)
				}
				step(20)
				s.set(func(s *credServer) {
					s.secrets, s.keys, s.certs = map[string]bool{}, map[string]crypto.PublicKey{}, map[string]bool{}
					kind.new.accept(s)
				})
				step(130) // two more lifetimes on the new credential alone
				for _, ch := range work {
					close(ch)
				}
				wg.Wait()

				assert.Zero(t, failures.Load())
				assert.Zero(t, stale.Load(), "no expired token handed out")
				assert.Equal(t, int64(steps*len(work)*5), calls.Load())
				reqs := s.requests()
				last := reqs[len(reqs)-1]
				assert.Equal(t, 200, last.status)
				ok := 0
				for _, r := range reqs[len(reqs)/2:] {
					if r.status == 200 {
						ok++
					}
				}
				assert.GreaterOrEqual(t, ok, 2, "tokens keep coming on the new credential")
			})
		}
	}
}

func TestTLSClientAuth(t *testing.T) {
	t.Parallel()
	_, _, ec1, ec2 := testKeys()
	s := newCredServer(t, true)
	c1, sum1 := selfSigned(t, ec1, "one")
	c2, sum2 := selfSigned(t, ec2, "two")
	s.set(func(s *credServer) { s.certs[sum1] = true; s.certs[sum2] = true; s.expiresIn = 60 })
	dir := t.TempDir()
	writeFile(t, dir, "both.pem", append(append([]byte{}, c1...), pemKey(t, ec1)...))
	hc := s.Client()
	c, fc := newCredClient(t, s, func(c *Config) { c.TLSCertFile = dir + "/both.pem" })
	assert.Nil(t, hc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate, "the caller's transport is not changed")
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	r := s.requests()[0]
	assert.Equal(t, "tls", r.auth)
	assert.Equal(t, sum1, r.cert)
	assert.Equal(t, testID, r.form.Get("client_id"))
	assert.NotContains(t, r.form, "client_secret")

	// A new certificate on disk: idle connections are closed, so the next
	// request's handshake presents it.
	writeFile(t, dir, "both.pem", append(append([]byte{}, c2...), pemKey(t, ec2)...))
	fc.Advance(2 * time.Minute)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	reqs := s.requests()
	assert.Equal(t, sum2, reqs[len(reqs)-1].cert)
}

func TestTLSCertWithSecret(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	s := newCredServer(t, true)
	s.set(func(s *credServer) { s.secrets[testSecret] = true })
	cp, sum := selfSigned(t, ec1, "one")
	dir := t.TempDir()
	c, _ := newCredClient(t, s, func(c *Config) {
		c.ClientSecret = testSecret
		c.TLSCertFile, c.TLSKeyFile = writeFile(t, dir, "c.pem", cp), writeFile(t, dir, "k.pem", pemKey(t, ec1))
	})
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	require.NoError(t, err)
	r := s.requests()[0]
	assert.Equal(t, "secret", r.auth, "the secret authenticates")
	assert.Equal(t, sum, r.cert, "the certificate is presented too, for binding")
}

func TestCredentialConfig(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, _ := testKeys()
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "key.pem", pemKey(t, ec1))
	good := Config{TokenURL: "https://auth.test/token", ClientID: "id"}
	small, err := rsa.GenerateKey(cryptoRand, 1024)
	require.NoError(t, err)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"none", func(*Config) {}, "ClientSecret is required"},
		{"two", func(c *Config) { c.ClientSecret, c.PrivateKey = "s", ec1 }, "set one client credential, not ClientSecret and PrivateKey"},
		{"AuthStyle with a key", func(c *Config) { c.PrivateKey, c.AuthStyle = ec1, AuthStyleInBody }, "AuthStyle applies to ClientSecret"},
		{"KeyID with a secret", func(c *Config) { c.ClientSecret, c.KeyID = "s", "k" }, "KeyID, SigningAlgorithm and AssertionAudience apply"},
		{"TLSKeyFile alone", func(c *Config) { c.ClientSecret, c.TLSKeyFile = "s", keyFile }, "TLSKeyFile needs TLSCertFile"},
		{"store with an assertion", func(c *Config) { c.ClientAssertionFile, c.Store = keyFile, newMemStore() }, "a Store needs key material"},
		{"missing file", func(c *Config) { c.ClientSecretFile = dir + "/nope" }, "ClientSecretFile: no such file"},
		{"empty secret file", func(c *Config) { c.ClientSecretFile = writeFile(t, dir, "empty", []byte("\n")) }, "ClientSecretFile: holds no secret"},
		{"not a key", func(c *Config) { c.PrivateKeyFile = writeFile(t, dir, "junk", []byte("hello")) }, "PrivateKeyFile: m2m: key data holds no PEM"},
		{"small RSA", func(c *Config) { c.PrivateKey = small }, "at least 2048"},
		{"ES256 key as RS256", func(c *Config) { c.PrivateKey, c.SigningAlgorithm = ec1, AlgRS256 }, `signs ES256, not "RS256"`},
		{"RSA as HS256", func(c *Config) { c.PrivateKey, c.SigningAlgorithm = rsa1, "HS256" }, `RS256 or PS256, not "HS256"`},
		{"cert file without a cert", func(c *Config) { c.TLSCertFile = keyFile }, "TLSCertFile: holds no PEM certificate"},
		{"small DPoP key", func(c *Config) { c.ClientSecret, c.DPoPKey = "s", small }, "DPoPKey: m2m: RSA key of 1024 bits"},
		{"foreign HTTPClient transport", func(c *Config) {
			c.TLSCertFile, c.TLSKeyFile = writeFile(t, dir, "c.pem", func() []byte { p, _ := selfSigned(t, ec1, "x"); return p }()), keyFile
			c.HTTPClient = &http.Client{Transport: roundTripFunc(nil)}
		}, "TLSCertFile needs HTTPClient.Transport to be an *http.Transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			_, err := New(cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestCredentialsNeverShown formats a Config and a Client holding keys in
// every way a program may, and makes errors about key files, and checks
// that no key material or file content appears.
func TestCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, _ := testKeys()
	dir := t.TempDir()
	s := newCredServer(t, false)
	cfg := Config{TokenURL: s.URL + tokenPath, ClientID: testID, PrivateKey: rsa1, DPoPKey: ec1}
	keyPEM := string(pemKey(t, rsa1))
	ecRaw, err := ec1.Bytes()
	require.NoError(t, err)
	secrets := []string{rsa1.D.String(), rsa1.D.Text(16), new(big.Int).SetBytes(ecRaw).String(), hex.EncodeToString(ecRaw),
		base64.RawURLEncoding.EncodeToString(ecRaw), keyPEM[40:80], base64.RawURLEncoding.EncodeToString(rsa1.D.Bytes())}

	var out bytes.Buffer
	c, err := New(cfg)
	require.NoError(t, err)
	defer c.Close()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+"\n", cfg)
		fmt.Fprintf(&out, verb+"\n", &cfg)
		fmt.Fprintf(&out, verb+"\n", c)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "config", cfg, "client", c)
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "config", cfg)
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	out.Write(j)

	// Errors about key files that do not parse never quote them.
	marker := "TOPSECRETKEYMATERIAL"
	for _, data := range []string{
		"-----BEGIN PRIVATE KEY-----\n" + marker + "\n-----END PRIVATE KEY-----\n",
		`{"kty":"EC","crv":"P-256","d":"` + marker + `"}`,
		`{"kty":"RSA","n":"` + marker + `","e":"AQAB","d":"` + marker + `"}`,
		`{"kty":"oct","k":"` + marker + `","d":"x"}`,
		`{"kty":` + marker,
	} {
		_, err := New(Config{TokenURL: s.URL, ClientID: testID, PrivateKeyFile: writeFile(t, dir, "k", []byte(data))})
		require.Error(t, err)
		out.WriteString(err.Error() + "\n")
		_, err = New(Config{TokenURL: s.URL, ClientID: testID, ClientSecret: "x", TLSCertFile: writeFile(t, dir, "c", []byte(data))})
		require.Error(t, err)
		out.WriteString(err.Error() + "\n")
	}
	text := out.String()
	assert.Contains(t, text, "private_key_jwt")
	for _, s := range append(secrets, marker) {
		assert.NotContains(t, text, s)
	}
}

func TestAssertionEchoedByTheServerIsScrubbed(t *testing.T) {
	t.Parallel()
	_, _, ec1, ec2 := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.echo = true; s.keys["k"] = ec2.Public() }) // another key registered: refused
	c, _ := newCredClient(t, s, func(c *Config) { c.PrivateKey, c.KeyID = ec1, "k" })
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te)
	sent := s.requests()[0].form.Get("client_assertion")
	require.NotEmpty(t, sent)
	assert.NotContains(t, te.ErrorDescription, sent)
	assert.NotContains(t, string(te.Body), sent)
	assert.Contains(t, te.ErrorDescription, "[REDACTED]")
}

func TestStoreKeyWithoutSecret(t *testing.T) {
	t.Parallel()
	rsa1, rsa2, ec1, ec2 := testKeys()
	s := newCredServer(t, false)
	k := cacheKey{audience: "event", scopes: "a"}
	key := func(mod func(*Config)) StoreKey {
		cfg := Config{TokenURL: s.URL + tokenPath, ClientID: testID, Store: newMemStore()}
		mod(&cfg)
		c, err := New(cfg)
		require.NoError(t, err)
		defer c.Close()
		return c.env.storeKey(k)
	}
	derive := func(sk StoreKey) []byte { b, err := sk.DeriveKey("t", 32); require.NoError(t, err); return b }
	a := key(func(c *Config) { c.PrivateKey = rsa1 })
	b := key(func(c *Config) { c.PrivateKey = rsa1 })
	other := key(func(c *Config) { c.PrivateKey = rsa2 })
	assert.Equal(t, a.ID(), b.ID())
	assert.Equal(t, derive(a), derive(b), "the fleet holding the key shares the material")
	assert.Equal(t, a.ID(), other.ID(), "the ID does not depend on the key")
	assert.NotEqual(t, derive(a), derive(other), "another key cannot read the fleet's tokens")
	assert.NotEqual(t, derive(a), derive(key(func(c *Config) { c.ClientSecret = "" + testSecret })))

	dpop1 := key(func(c *Config) { c.PrivateKey, c.DPoPKey = rsa1, ec1 })
	dpop2 := key(func(c *Config) { c.PrivateKey, c.DPoPKey = rsa1, ec2 })
	assert.NotEqual(t, a.ID(), dpop1.ID(), "a DPoP-bound token is stored apart")
	assert.NotEqual(t, dpop1.ID(), dpop2.ID(), "and only for the holders of its key")

	secret := key(func(c *Config) { c.ClientSecret = testSecret })
	assert.Equal(t, newStoreKey(s.URL+tokenPath+" ", testID, k, testSecret).ID(), secret.ID(), "unchanged for secrets")
	assert.Equal(t, derive(newStoreKey(s.URL+tokenPath+" ", testID, k, testSecret)), derive(secret))

	// A key kept in hardware: RSA signs deterministically, which serves.
	hsm := key(func(c *Config) { c.PrivateKey = opaqueSigner{rsa1} })
	assert.NotEqual(t, derive(hsm), derive(key(func(c *Config) { c.PrivateKey = opaqueSigner{rsa2} })))
	assert.Equal(t, derive(hsm), derive(key(func(c *Config) { c.PrivateKey = opaqueSigner{rsa1} })))
	_, err := New(Config{TokenURL: s.URL, ClientID: testID, PrivateKey: opaqueSigner{ec1}, Store: newMemStore()})
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "neither exports nor signs deterministically")
}

// opaqueSigner hides the key type, as a hardware-backed signer does.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

func TestAppendParam(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		json       bool
		want       string
	}{
		{"form", "a=1", false, "a=1&k=v+w%26"},
		{"empty form", "", false, "k=v+w%26"},
		{"json", `{"a":"1"}`, true, `{"a":"1","k":"v w\u0026"}`},
		{"empty json", `{}`, true, `{"k":"v w\u0026"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := appendParam([]byte(tc.body), tc.json, "k", "v w&")
			assert.Equal(t, tc.want, string(got))
			if tc.json {
				assert.True(t, json.Valid(got))
			}
		})
	}
}
