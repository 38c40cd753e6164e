package m2m

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDPoPTokenRequest(t *testing.T) {
	t.Parallel()
	rsa1, _, ec1, ec2 := testKeys()
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{{"ES256", ec1, "ES256"}, {"RS256", rsa1, "RS256"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newCredServer(t, false)
			s.set(func(s *credServer) { s.keys["k"] = ec2.Public() })
			c, fc := newCredClient(t, s, func(c *Config) { c.PrivateKey, c.KeyID, c.DPoPKey = ec2, "k", tc.key })
			tok, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
			require.NoError(t, err)
			assert.Equal(t, "DPoP", tok.TokenType)

			r := s.requests()[0]
			require.Equal(t, 200, r.status)
			require.NotNil(t, r.proof)
			assert.Equal(t, "dpop+jwt", r.proof.header["typ"])
			assert.Equal(t, tc.alg, r.proof.header["alg"])
			assert.Equal(t, http.MethodPost, r.proof.str("htm"))
			assert.Equal(t, s.URL+tokenPath, r.proof.str("htu"))
			assert.Equal(t, fc.Now().Unix(), r.proof.num("iat"))
			assert.NotContains(t, r.proof.claims, "ath")
			assert.NotContains(t, r.proof.claims, "nonce")
			assert.Len(t, r.proof.str("jti"), 22)
			jkt, err := JWKThumbprint(tc.key.Public())
			require.NoError(t, err)
			assert.Equal(t, jkt, thumbprint(tc.key.Public()))
			s.set(func(s *credServer) { assert.Equal(t, jkt, s.bound[tok.AccessToken]) })
			assert.Equal(t, "private_key_jwt", r.auth, "DPoP goes with any client authentication")
		})
	}
}

func TestDPoPBearerAnswerIsRefused(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets[testSecret] = true; s.bearerOnly = true })
	c, _ := newCredClient(t, s, func(c *Config) { c.ClientSecret, c.DPoPKey = testSecret, ec1 })
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	require.ErrorIs(t, err, ErrInvalidResponse)
	assert.Contains(t, err.Error(), "not DPoP")
}

func TestDPoPNonceAtTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets[testSecret] = true; s.nonce = "n-1"; s.expiresIn = 60 })
	rec := &recorder{}
	c, fc := newCredClient(t, s, func(c *Config) {
		c.ClientSecret, c.DPoPKey, c.MaxRetries, c.Observer = testSecret, ec1, -1, rec
	})
	src := mustSource(t, c, eventAudience)
	_, err := src.TokenContext(context.Background())
	require.NoError(t, err, "the nonce retry is not a retry: it happens with retries off")
	reqs := s.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, 400, reqs[0].status)
	assert.NotContains(t, reqs[0].proof.claims, "nonce")
	assert.Equal(t, "n-1", reqs[1].proof.str("nonce"))
	assert.Empty(t, rec.of(EventRetry))

	// The nonce is kept for the next fetch; when the server moves on,
	// one more round trip picks up the new one.
	fc.Advance(time.Minute)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	assert.Len(t, s.requests(), 3)
	assert.Equal(t, "n-1", s.requests()[2].proof.str("nonce"))
	s.set(func(s *credServer) { s.nonce = "n-2" })
	fc.Advance(time.Minute)
	_, err = src.TokenContext(context.Background())
	require.NoError(t, err)
	reqs = s.requests()
	require.Len(t, reqs, 5)
	assert.Equal(t, "n-2", reqs[4].proof.str("nonce"))

	// A server that wants yet another nonce every time: one retry, then
	// the error, with a hint.
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", fmt.Sprint(time.Now().UnixNano()))
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"use_dpop_nonce"}`)
	})
	fc.Advance(time.Minute)
	_, err = src.TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "use_dpop_nonce", te.ErrorCode)
	assert.Contains(t, te.Hint, "nonce")
}

// dpopResource is a callee that accepts only DPoP-bound tokens of its
// credServer, with a valid proof of this request from the bound key.
type dpopResource struct {
	*httptest.Server
	auth *credServer

	mu     sync.Mutex
	nonce  string // a nonce it demands, if any
	proofs []*jws
	codes  []int
}

func newDPoPResource(t *testing.T, auth *credServer) *dpopResource {
	rs := &dpopResource{auth: auth}
	rs.Server = httptest.NewServer(http.HandlerFunc(rs.serve))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *dpopResource) serve(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	code, proof := rs.check(w, r)
	rs.proofs = append(rs.proofs, proof)
	rs.codes = append(rs.codes, code)
	if code != 200 {
		w.WriteHeader(code)
		return
	}
	io.Copy(w, r.Body)
}

func (rs *dpopResource) check(w http.ResponseWriter, r *http.Request) (int, *jws) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `DPoP algs="ES256"`)
		return 401, nil
	}
	a := rs.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	proof, err := a.checkProof(r.Header.Values("DPoP"), r.Method, "http://"+r.Host+r.URL.EscapedPath(), tok, a.now())
	if err != nil {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_dpop_proof"`)
		return 401, proof
	}
	jwk, _ := proof.header["jwk"].(map[string]any)
	pub, _ := publicFromJWK(jwk)
	if a.bound[tok] == "" || a.bound[tok] != thumbprint(pub) {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
		return 401, proof
	}
	if rs.nonce != "" && proof.str("nonce") != rs.nonce {
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
		w.Header().Set("DPoP-Nonce", rs.nonce)
		return 401, proof
	}
	return 200, proof
}

func dpopSetup(t *testing.T) (*credServer, *dpopResource, *Client, *http.Client) {
	t.Helper()
	_, _, ec1, _ := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets[testSecret] = true; s.expiresIn = 600 })
	rs := newDPoPResource(t, s)
	c, _ := newCredClient(t, s, func(c *Config) { c.ClientSecret, c.DPoPKey = testSecret, ec1 })
	aud := eventAudience
	aud.URL = rs.URL + "/api/"
	hc := &http.Client{Transport: NewTransport(nil, mustSource(t, c, aud))}
	return s, rs, c, hc
}

func TestDPoPTransport(t *testing.T) {
	t.Parallel()
	s, rs, _, hc := dpopSetup(t)
	for i, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/events?from=today#top", ""},
		{http.MethodPost, "/api/events", "new event"},
		{http.MethodDelete, "/api/events/a%2Fb", ""},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, err := http.NewRequest(tc.method, rs.URL+tc.path, body)
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, tc.path)
		assert.Equal(t, tc.body, string(got))
		rs.mu.Lock()
		p := rs.proofs[i]
		rs.mu.Unlock()
		assert.Equal(t, tc.method, p.str("htm"))
		u, _ := url.Parse(rs.URL + tc.path)
		assert.Equal(t, rs.URL+u.EscapedPath(), p.str("htu"), "no query, no fragment, the path as sent")
	}
	assert.EqualValues(t, 1, s.hits.Load(), "one token, a proof per request")
}

func TestDPoPNonceAtTheCallee(t *testing.T) {
	t.Parallel()
	s, rs, _, hc := dpopSetup(t)
	rs.mu.Lock()
	rs.nonce = "rs-1"
	rs.mu.Unlock()
	do := func(body io.Reader, replayable bool) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, rs.URL+"/api/events", body)
		require.NoError(t, err)
		if !replayable {
			req.GetBody = nil
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(got)
	}
	resp, got := do(strings.NewReader("payload"), true)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "payload", got, "the body is sent again with the nonce")
	rs.mu.Lock()
	assert.Equal(t, []int{401, 200}, rs.codes)
	assert.Equal(t, "rs-1", rs.proofs[1].str("nonce"))
	rs.mu.Unlock()
	assert.EqualValues(t, 1, s.hits.Load(), "a nonce challenge does not cost the token")

	// The nonce is remembered: the next request carries it at once.
	resp, _ = do(strings.NewReader("again"), true)
	require.Equal(t, 200, resp.StatusCode)
	rs.mu.Lock()
	assert.Equal(t, []int{401, 200, 200}, rs.codes)
	rs.nonce = "rs-2"
	rs.mu.Unlock()

	// A body that cannot be sent again: the 401 comes back as it came,
	// but the new nonce is taken for the next request.
	resp, _ = do(io.MultiReader(strings.NewReader("once")), false)
	assert.Equal(t, 401, resp.StatusCode)
	resp, got = do(bytes.NewReader([]byte("later")), true)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "later", got)
	assert.EqualValues(t, 1, s.hits.Load())
}

func TestDPoPProofShape(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	d, err := newDPoP(ec1)
	require.NoError(t, err)
	now := time.Unix(1_800_000_000, 0)
	u, _ := url.Parse(`HTTPS://Calendar.Example:8443/a%2Fb/c?x=1#f`)
	p, err := d.proof("", u, "token-value", now)
	require.NoError(t, err)
	j, err := parseJWS(p)
	require.NoError(t, err)
	require.NoError(t, j.verify(&ec1.PublicKey))
	assert.Equal(t, http.MethodGet, j.str("htm"), "an empty method is GET")
	assert.Equal(t, `https://calendar.example:8443/a%2Fb/c`, j.str("htu"), "the escaped path, as sent")
	assert.Equal(t, int64(1_800_000_000), j.num("iat"))
	sum := sha256.Sum256([]byte("token-value"))
	assert.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:]), j.str("ath"))
	for _, tok := range []string{"other-token", "token-value", "other-token"} {
		p, err := d.proof(http.MethodGet, u, tok, now)
		require.NoError(t, err)
		j, err := parseJWS(p)
		require.NoError(t, err)
		sum := sha256.Sum256([]byte(tok))
		assert.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:]), j.str("ath"), "the hash of each request's own token")
	}
	jwk := j.header["jwk"].(map[string]any)
	assert.NotContains(t, jwk, "d", "only the public key travels")
	assert.Equal(t, []string{"alg", "jwk", "typ"}, keysOf(j.header))

	origin, htu := target(&url.URL{Scheme: "http", Host: "h"})
	assert.Equal(t, "http://h", origin)
	assert.Equal(t, "http://h/", htu)
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDPoPNonces(t *testing.T) {
	t.Parallel()
	_, _, ec1, _ := testKeys()
	d, err := newDPoP(ec1)
	require.NoError(t, err)
	for _, tc := range []struct {
		nonce string
		ok    bool
	}{{"abc-123_~!", true}, {"", false}, {"with space", false}, {`quo"te`, false}, {`back\slash`, false}, {"ü", false}, {strings.Repeat("n", 2000), false}} {
		assert.Equal(t, tc.ok, validNonce(tc.nonce), tc.nonce)
	}
	u, _ := url.Parse("https://a.example/x")
	assert.False(t, d.sawNonce(u, http.Header{"Dpop-Nonce": {"bad nonce"}}))
	// One nonce per origin, and a bounded number of them.
	for i := range 1000 {
		o, _ := url.Parse(fmt.Sprintf("https://h%d.example/", i))
		require.True(t, d.sawNonce(o, http.Header{"Dpop-Nonce": {"n"}}))
	}
	n := 0
	d.nonces.Range(func(any, any) bool { n++; return true })
	assert.LessOrEqual(t, n, maxNonces+1)
}

func TestDPoPStoreSharesOnlyWithTheSameKey(t *testing.T) {
	t.Parallel()
	_, _, ec1, ec2 := testKeys()
	s := newCredServer(t, false)
	s.set(func(s *credServer) { s.secrets[testSecret] = true })
	store := newMemStore()
	mk := func(key crypto.Signer) *TokenSource {
		c, _ := newCredClient(t, s, func(c *Config) { c.ClientSecret, c.DPoPKey, c.Store = testSecret, key, store })
		return mustSource(t, c, eventAudience)
	}
	a, b, other := mk(ec1), mk(ec1), mk(ec2)
	ta, err := a.TokenContext(context.Background())
	require.NoError(t, err)
	tb, err := b.TokenContext(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ta.AccessToken, tb.AccessToken, "the same key: one token for both")
	assert.Equal(t, "DPoP", tb.TokenType)
	to, err := other.TokenContext(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, ta.AccessToken, to.AccessToken, "another key: a token of its own")
	assert.EqualValues(t, 2, s.hits.Load())
}

// dpopBench is what the DPoP benchmarks share: a P-256 key, its signer,
// a resource URL whose server gave a nonce, an 800-byte access token, and
// a Transport with a DPoP-bound token over a base that answers at once.
type dpopBench struct {
	key   *ecdsa.PrivateKey
	d     *dpopSigner
	u     *url.URL
	token string
	tr    *Transport
	req   *http.Request
	input []byte // what a proof's signing input comes to
}

func newDPoPBench(b *testing.B) *dpopBench {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d, err := newDPoP(key)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse("https://calendar.internal/api/events/42?from=today")
	nonce := http.Header{"Dpop-Nonce": {"eyJ7S_zG.eyJH0-Z.HX4w-7v"}}
	d.sawNonce(u, nonce)
	token := strings.Repeat("a", 800) // a SuperTokens-sized JWT access token
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"DPoP","expires_in":3600}`, token)
	}))
	b.Cleanup(srv.Close)
	c, err := New(Config{TokenURL: srv.URL, ClientID: testID, ClientSecret: testSecret, DPoPKey: key})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.env.dpop.sawNonce(u, nonce)
	src, _ := c.Source(Audience{Name: "event", URL: "https://calendar.internal"})
	ok := &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}
	tr := NewTransport(roundTripFunc(func(*http.Request) (*http.Response, error) { return ok, nil }), src)
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	if _, err := tr.RoundTrip(req); err != nil {
		b.Fatal(err)
	}
	p, err := d.proof(http.MethodGet, u, token, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return &dpopBench{key: key, d: d, u: u, token: token, tr: tr, req: req, input: []byte(p[:strings.LastIndexByte(p, '.')])}
}

// floor is one ES256 JWS signature: SHA-256 of a proof's signing input
// and one ECDSA P-256 signature through crypto.Signer.
func (bb *dpopBench) floor(b *testing.B) {
	digest := sha256.Sum256(bb.input)
	if _, err := bb.key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		b.Fatal(err)
	}
}

func (bb *dpopBench) proof(b *testing.B) {
	if _, err := bb.d.proof(http.MethodGet, bb.u, bb.token, time.Now()); err != nil {
		b.Fatal(err)
	}
}

func (bb *dpopBench) roundTrip(b *testing.B) {
	if _, err := bb.tr.RoundTrip(bb.req); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDPoPProof measures what DPoP adds per request: the proof of a
// resource request (with ath and a nonce) and of a token request, and a
// whole Transport.RoundTrip with a DPoP-bound token over a base that
// answers at once, against the floor of one ES256 JWS signature.
func BenchmarkDPoPProof(b *testing.B) {
	bb := newDPoPBench(b)
	for _, v := range []struct {
		name string
		op   func(*testing.B)
	}{
		{"floor-es256", bb.floor},
		{"m2m-proof-resource", bb.proof},
		{"m2m-proof-token", func(b *testing.B) {
			if _, err := bb.d.proof(http.MethodPost, bb.u, "", time.Now()); err != nil {
				b.Fatal(err)
			}
		}},
		{"m2m-roundtrip", bb.roundTrip},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.op(b)
			}
		})
	}
}

// BenchmarkDPoPProofPaired times the floor, the proof and the RoundTrip
// back to back in every iteration, in rotating order, and reports the
// ratios of their median times: on a shared machine whose load changes
// from one moment to the next, separate benchmarks compare different
// moments and means catch every preemption; paired medians compare the
// same moments and ignore the outliers.
func BenchmarkDPoPProofPaired(b *testing.B) {
	bb := newDPoPBench(b)
	b.Run("paired", func(b *testing.B) {
		med := timePaired(b, bb.floor, bb.proof, bb.roundTrip)
		b.ReportMetric(med[0], "floor-ns")
		b.ReportMetric(med[1]/med[0], "proof/floor")
		b.ReportMetric(med[2]/med[0], "roundtrip/floor")
	})
}

func TestTokenTypeOfADPoPRequest(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		want, typ string
		ok        bool
	}{
		{"DPoP", `"DPoP"`, true},
		{"DPoP", `"dpop"`, true},
		{"DPoP", `"Bearer"`, false},
		{"DPoP", `null`, false},
		{"DPoP", `""`, false},
		{"Bearer", `"DPoP"`, false},
		{"Bearer", `"bearer"`, true},
		{"Bearer", `null`, true},
	} {
		t.Run(tc.want+" "+tc.typ, func(t *testing.T) {
			body := []byte(`{"access_token":"t","expires_in":60,"token_type":` + tc.typ + `}`)
			tok, err := wire.ParseScrubbedAs(nil, tc.want, 200, http.Header{}, body, false, now, time.Minute)
			if !tc.ok {
				require.ErrorIs(t, err, ErrInvalidResponse)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, tok.TokenType)
		})
	}
}
