package verify

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
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
		c.put(hashToken(fmt.Sprint(i)), entry{exp: now.Add(time.Hour)}, now)
		assert.LessOrEqual(t, c.len(), 10)
	}
	// Expired entries go first.
	c = newCache(2)
	c.put(hashToken("old"), entry{exp: now.Add(-time.Hour)}, now)
	c.put(hashToken("live"), entry{exp: now.Add(time.Hour)}, now)
	c.put(hashToken("new"), entry{exp: now.Add(time.Hour)}, now)
	_, ok := c.get(hashToken("old"))
	assert.False(t, ok)
	_, ok = c.get(hashToken("new"))
	assert.True(t, ok)
}
