package verify

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRotationThroughUnknownKID(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	require.EqualValues(t, 1, srv.hits.Load())

	srv.setKeys(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"), jwk(t, &rsaB.PublicKey, "s-b", "RS256"))
	_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-b", goodClaims()))
	require.NoError(t, err, "a new kid is fetched without a restart")
	assert.EqualValues(t, 2, srv.hits.Load())
}

func TestUnknownKIDStormFetchesOnce(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, fmt.Sprintf("random-%d", i), goodClaims()))
			assert.ErrorIs(t, err, ErrUnknownKey)
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, srv.hits.Load(), int64(2), "one initial fetch and at most one refetch")
	assert.EqualValues(t, srv.hits.Load(), v.JWKSFetches())
}

func TestKnownKIDBadSignatureDoesNotRefetch(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	for range 10 {
		_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-a", goodClaims()))
		require.ErrorIs(t, err, ErrSignature)
	}
	assert.EqualValues(t, 1, srv.hits.Load())
}

func TestRemovedKeyStopsVerifyingAfterRefresh(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"), jwk(t, &rsaB.PublicKey, "s-b", "RS256"))
	v, fc := newTestVerifier(t, srv, nil)
	tokA := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	_, err := v.Verify(context.Background(), tokA)
	require.NoError(t, err)
	require.Equal(t, 1, v.cache.len())

	srv.setKeys(t, jwk(t, &rsaB.PublicKey, "s-b", "RS256"))
	require.Eventually(t, func() bool { return fc.Timers() == 1 }, 5*time.Second, time.Millisecond)
	fc.Advance(DefaultRefreshInterval)
	require.Eventually(t, func() bool { return !v.keys.has("s-a") }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 2, srv.hits.Load())

	_, err = v.Verify(context.Background(), tokA)
	require.ErrorIs(t, err, ErrUnknownKey, "a cached token of a removed key is refused")
	assert.Equal(t, 0, v.cache.len(), "and forgotten")
	_, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-b", goodClaims()))
	require.NoError(t, err)
}

func TestUnusableKeysAreRefused(t *testing.T) {
	t.Parallel()
	keys(t)
	oct := jwkset.JWKMarshal{KTY: jwkset.KtyOct, KID: "oct", K: "c2VjcmV0", ALG: "HS256"}
	enc := jwk(t, &rsaB.PublicKey, "enc", "RS256")
	enc.USE = jwkset.UseEnc
	noUse := jwk(t, &rsaB.PublicKey, "no-use", "RS256")
	noUse.USE = ""
	srv := newJWKSServer(t,
		jwk(t, &rsaA.PublicKey, "s-a", "RS256"),
		jwk(t, &rsaSmall.PublicKey, "small", "RS256"),
		oct, enc, noUse,
		jwk(t, &rsaA.PublicKey, "dup", "RS256"),
		jwk(t, &rsaB.PublicKey, "dup", "RS256"),
	)
	v, _ := newTestVerifier(t, srv, nil)
	for kid, want := range map[string]bool{"s-a": true, "no-use": true, "small": false, "oct": false, "enc": false, "dup": false} {
		assert.Equal(t, want, v.keys.has(kid), kid)
	}
	_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaSmall, "small", goodClaims()))
	assert.ErrorIs(t, err, ErrUnknownKey)
	_, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "dup", goodClaims()))
	assert.ErrorIs(t, err, ErrUnknownKey)
}

func TestJWKSFetchFailures(t *testing.T) {
	t.Parallel()
	tests := map[string][]byte{
		"too large":   []byte(`{"keys":[],"pad":"` + strings.Repeat("a", 1<<20) + `"}`),
		"not json":    []byte(`<html>`),
		"not key set": []byte(`{"keys":"x"}`),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t)
			srv.setBody(body)
			_, err := New(context.Background(), Config{JWKSURL: srv.URL, Audience: "a"})
			require.Error(t, err)
		})
	}
}

func TestFailedRefreshKeepsKeys(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, fc := newTestVerifier(t, srv, nil)
	srv.setBody([]byte("oops"))
	require.Eventually(t, func() bool { return fc.Timers() == 1 }, 5*time.Second, time.Millisecond)
	fc.Advance(DefaultRefreshInterval)
	require.Eventually(t, func() bool { return srv.hits.Load() == 2 && fc.Timers() == 1 }, 5*time.Second, time.Millisecond)
	assert.True(t, v.keys.has("s-a"))
	_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims()))
	require.NoError(t, err)
}

func TestCacheStillChecksTime(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, fc := newTestVerifier(t, srv, nil)
	tok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	first, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	second, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Same(t, first, second, "a repeated token is served from the cache")

	fc.Advance(time.Hour + DefaultLeeway)
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrExpired, "expiry is checked on a hit")
	assert.Equal(t, 0, v.cache.len())
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := newCache(10)
	for i := range 25 {
		c.put(tokenKey(fmt.Sprint(i)), entry{exp: now.Add(time.Hour).UnixNano()}, now.UnixNano())
		assert.LessOrEqual(t, c.len(), 10)
	}
	// Expired entries go first.
	c = newCache(2)
	c.put(tokenKey("old"), entry{exp: now.Add(-time.Hour).UnixNano()}, now.UnixNano())
	c.put(tokenKey("live"), entry{exp: now.Add(time.Hour).UnixNano()}, now.UnixNano())
	c.put(tokenKey("new"), entry{exp: now.Add(time.Hour).UnixNano()}, now.UnixNano())
	_, ok := c.get(tokenKey("old"))
	assert.False(t, ok)
	_, ok = c.get(tokenKey("new"))
	assert.True(t, ok)
}

// TestKeyOps: a key whose key_ops lack "verify" is not a signature key
// (RFC 7517 §4.3, issue item 2).
func TestKeyOps(t *testing.T) {
	t.Parallel()
	keys(t)
	withOps := func(kid string, ops ...jwkset.KEYOPS) jwkset.JWKMarshal {
		j := jwk(t, &rsaA.PublicKey, kid, "RS256")
		j.KEYOPS = ops
		return j
	}
	srv := newJWKSServer(t,
		withOps("verify", jwkset.KeyOpsVerify),
		withOps("sign-verify", jwkset.KeyOpsSign, jwkset.KeyOpsVerify),
		withOps("sign", jwkset.KeyOpsSign),
		withOps("encrypt", jwkset.KeyOpsEncrypt),
		withOps("none", jwkset.KEYOPS("")),
		withOps("absent"),
	)
	v, _ := newTestVerifier(t, srv, nil)
	for kid, usable := range map[string]bool{"verify": true, "sign-verify": true, "sign": false, "encrypt": false, "none": false, "absent": true} {
		t.Run(kid, func(t *testing.T) {
			_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaA, kid, goodClaims()))
			if usable {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrUnknownKey)
			}
		})
	}
}

// refresh makes v's JWKS refresh timer fire and waits for the fetch.
func refresh(t *testing.T, v *Verifier, fc interface {
	Timers() int
	Advance(time.Duration)
}, srv *jwksServer) {
	t.Helper()
	hits := srv.hits.Load()
	require.Eventually(t, func() bool { return fc.Timers() == 1 }, 5*time.Second, time.Millisecond)
	fc.Advance(DefaultRefreshInterval)
	require.Eventually(t, func() bool {
		v.keys.mu.Lock()
		defer v.keys.mu.Unlock()
		return srv.hits.Load() > hits && v.keys.inflight == nil
	}, 5*time.Second, time.Millisecond)
}

// TestKeyIdentityIsKidAndMaterial: a cached token stops passing as soon as
// the key under its kid changes, and keeps passing (from the cache) when
// a refresh brings the same key back (issue item 2).
func TestKeyIdentityIsKidAndMaterial(t *testing.T) {
	t.Parallel()
	keys(t)
	t.Run("new material under the same kid", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
		v, fc := newTestVerifier(t, srv, nil)
		tokA := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
		first, err := v.Verify(context.Background(), tokA)
		require.NoError(t, err)

		srv.setKeys(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
		refresh(t, v, fc, srv)
		again, err := v.Verify(context.Background(), tokA)
		require.NoError(t, err)
		assert.Same(t, first, again, "the same key fetched again keeps the cache")

		srv.setKeys(t, jwk(t, &rsaB.PublicKey, "s-a", "RS256"))
		refresh(t, v, fc, srv)
		_, err = v.Verify(context.Background(), tokA)
		require.ErrorIs(t, err, ErrSignature, "the old material's token is checked afresh, and fails")
		_, err = v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-a", goodClaims()))
		require.NoError(t, err)
	})
	t.Run("the same material, now for another alg", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
		v, fc := newTestVerifier(t, srv, func(c *Config) { c.Algorithms = []string{"RS256", "PS256"} })
		tok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
		_, err := v.Verify(context.Background(), tok)
		require.NoError(t, err)
		srv.setKeys(t, jwk(t, &rsaA.PublicKey, "s-a", "PS256"))
		refresh(t, v, fc, srv)
		_, err = v.Verify(context.Background(), tok)
		require.ErrorIs(t, err, ErrAlgorithm)
	})
}

// TestTokenWithoutKid: valid when the JWKS holds exactly one key, the same
// on every use (issue item 2).
func TestTokenWithoutKid(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "", "RS256"))
	v, fc := newTestVerifier(t, srv, nil)
	tok := mint(t, jwt.SigningMethodRS256, rsaA, "", goodClaims())
	first, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	for i := range 3 {
		again, err := v.Verify(context.Background(), tok)
		require.NoError(t, err, "use %d", i)
		assert.Same(t, first, again)
	}
	assert.Equal(t, 1, v.cache.len())
	refresh(t, v, fc, srv)
	again, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Same(t, first, again, "the same key fetched again keeps the cache")

	srv.setKeys(t, jwk(t, &rsaA.PublicKey, "", "RS256"), jwk(t, &rsaB.PublicKey, "s-b", "RS256"))
	refresh(t, v, fc, srv)
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrUnknownKey, "with two keys, a token without kid names none")

	one := newJWKSServer(t, jwk(t, &rsaB.PublicKey, "s-b", "RS256"))
	v2, _ := newTestVerifier(t, one, nil)
	_, err = v2.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrSignature, "the only key, whatever its kid, must verify it")
}

func tokenKey(raw string) [32]byte {
	k, _, _ := hashToken(raw)
	return k
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"a.b.c", "abc", "a.b", "h.p.s.x", "..", strings.Repeat("x", 200) + "." + strings.Repeat("y", 700) + "." + strings.Repeat("z", 344)} {
		key, signing, ok := hashToken(raw)
		assert.Equal(t, sha256.Sum256([]byte(raw)), key, raw)
		parts := strings.SplitN(raw, ".", 3)
		assert.Equal(t, len(parts) == 3, ok)
		if ok {
			assert.Equal(t, sha256.Sum256([]byte(parts[0]+"."+parts[1])), signing)
		}
	}
}

// TestRepeatedTokenAllocatesNothing pins the cache hit path at zero
// allocations.
func TestRepeatedTokenAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts do not hold under the race detector")
	}
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	tok := mint(t, jwt.SigningMethodRS256, rsaA, "s-a", goodClaims())
	_, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// encoding/json reads member names without regard to case and keeps the
// last of duplicates; a key that relies on either is not kept, and a key
// set with two "keys" members is refused.
func TestJWKSMembersExactlyOnce(t *testing.T) {
	t.Parallel()
	keys(t)
	b, err := json.Marshal(jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	require.NoError(t, err)
	good := string(b)
	withMember := func(kid, extra string) string {
		return strings.Replace(strings.Replace(good, `"kid":"s-a"`, `"kid":"`+kid+`"`, 1), "{", "{"+extra+",", 1)
	}
	srv := newJWKSServer(t)
	srv.setBody([]byte(`{"keys":[` + strings.Join([]string{
		good,
		withMember("case", `"use":"enc","USE":"sig"`),
		withMember("twice", `"use":"enc","use":"sig"`),
		withMember("alg-case", `"ALG":"RS256"`),
	}, ",") + `]}`))
	v, _ := newTestVerifier(t, srv, nil)
	for kid, want := range map[string]bool{"s-a": true, "case": false, "twice": false, "alg-case": false} {
		assert.Equal(t, want, v.keys.has(kid), kid)
	}

	srv.setBody([]byte(`{"keys":[],"KEYS":[` + good + `]}`))
	_, err = New(context.Background(), Config{JWKSURL: srv.URL, Audience: "event", Issuer: testIssuer})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"keys" in another case`)
}

// Tokens of a new kid that arrive while the refetch it caused is running
// wait for it, instead of being refused by the refetch rate limit.
func TestNewKIDJoinsRunningRefetch(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	release := make(chan struct{})
	var served atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) > 1 {
			<-release // the refetch, held until the second token waits for it
		}
		resp, err := http.Get(srv.URL)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(proxy.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	logs := &testmain.Buffer{}
	v, _ := newTestVerifier(t, srv, func(cfg *Config) {
		cfg.JWKSURL = proxy.URL
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	srv.setKeys(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"), jwk(t, &rsaB.PublicKey, "s-b", "RS256"))

	results := make(chan error, 2)
	verifyNew := func(jti string) {
		c := goodClaims()
		c["jti"] = jti
		_, err := v.Verify(context.Background(), mint(t, jwt.SigningMethodRS256, rsaB, "s-b", c))
		results <- err
	}
	go verifyNew("first")
	require.Eventually(t, func() bool { return v.JWKSFetches() == 2 }, 10*time.Second, time.Millisecond, "the refetch has started")
	go verifyNew("second")
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "waiting for the running JWKS fetch") || len(results) == 2
	}, 10*time.Second, time.Millisecond)
	close(release)
	require.NoError(t, <-results)
	require.NoError(t, <-results, "the second token waited for the refetch")
	assert.EqualValues(t, 2, v.JWKSFetches())
}
