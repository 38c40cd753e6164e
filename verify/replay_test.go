package verify

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDPoPReplayWindow: a proof is accepted once; its jti is remembered,
// for its key only, until its iat leaves the window, and then it is
// refused as too old instead (on the verifier's fake clock).
func TestDPoPReplayWindow(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, clk := newTestVerifier(t, srv, nil)
	k, k2 := newDPoPKey(t, "ES256"), newDPoPKey(t, "ES256")
	tok, tok2 := boundToken(t, map[string]any{"jkt": k.jkt}), boundToken(t, map[string]any{"jkt": k2.jkt})
	check := func(tok, proof string) error {
		_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		return err
	}

	p := k.proofFor(tok, apiPost, apiURL, now)
	first := p.signed(t, k)
	require.NoError(t, check(tok, first))
	assert.ErrorIs(t, check(tok, first), ErrReplay, "the same proof again")
	sameJTI := p.with(nil, map[string]any{"iat": now.Add(-10 * time.Second).Unix()}).signed(t, k)
	assert.ErrorIs(t, check(tok, sameJTI), ErrReplay, "another proof with the same jti and key")
	otherKey := k2.proofFor(tok2, apiPost, apiURL, now).with(nil, map[string]any{"jti": p.claims["jti"]}).signed(t, k2)
	require.NoError(t, check(tok2, otherKey), "the same jti with another key is another proof")

	clk.Advance(59 * time.Second)
	assert.ErrorIs(t, check(tok, first), ErrReplay, "still inside the window")
	assert.Equal(t, 2, v.replay.len())

	clk.Advance(2 * time.Second) // iat is now 61 s old
	assert.ErrorIs(t, check(tok, first), ErrExpired, "out of the window: too old, whether seen or not")
	later := p.with(nil, map[string]any{"iat": clk.Now().Unix()}).signed(t, k)
	require.NoError(t, check(tok, later), "after the window a jti may come again: its old proof can no longer pass")
	assert.Equal(t, 1, v.replay.len(), "the proofs out of their window are forgotten")

	// A proof at the very edge of the window is remembered as long as it
	// passes the iat check.
	edge := k.proofFor(tok, apiPost, apiURL, clk.Now().Add(-60*time.Second)).signed(t, k)
	require.NoError(t, check(tok, edge))
	assert.ErrorIs(t, check(tok, edge), ErrReplay)
	// A proof from the future is remembered until its iat leaves the window.
	ahead := k.proofFor(tok, apiPost, apiURL, clk.Now().Add(60*time.Second)).signed(t, k)
	require.NoError(t, check(tok, ahead))
	clk.Advance(119 * time.Second)
	assert.ErrorIs(t, check(tok, ahead), ErrReplay)
	clk.Advance(2 * time.Second)
	assert.ErrorIs(t, check(tok, ahead), ErrExpired)
}

// TestDPoPReplayCacheFull: when every remembered proof is still inside
// its window, a new valid proof is refused, not a remembered one
// forgotten; room comes back as proofs leave their window.
func TestDPoPReplayCacheFull(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, clk := newTestVerifier(t, srv, func(c *Config) { c.DPoPReplayCacheSize = 2 })
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	check := func(proof string) error {
		_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		return err
	}
	first := k.proofFor(tok, apiPost, apiURL, now.Add(-30*time.Second)).signed(t, k)
	require.NoError(t, check(first))
	require.NoError(t, check(k.proofFor(tok, apiPost, apiURL, now).signed(t, k)))
	third := k.proofFor(tok, apiPost, apiURL, now).signed(t, k)
	err := check(third)
	require.ErrorIs(t, err, ErrReplayCacheFull)
	assert.NotErrorIs(t, err, ErrInvalidDPoPProof, "it says nothing about the proof")
	assert.NotErrorIs(t, err, ErrInvalidToken)
	assert.Equal(t, 30*time.Second, v.replay.retryAfter(clk.Now().UnixNano()))
	assert.ErrorIs(t, check(first), ErrReplay, "the remembered proofs are all kept")

	clk.Advance(31 * time.Second) // the first proof leaves its window
	require.NoError(t, check(third), "the refused proof was not spent")
	assert.ErrorIs(t, check(first), ErrExpired)
}

// TestDPoPReplayRace: many goroutines present the same proof at once;
// exactly one is accepted, the others are refused as replays. Repeated,
// since a race window is narrow.
func TestDPoPReplayRace(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	v, _ := newTestVerifier(t, srv, nil)
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	const bursts, goroutines = 40, 16
	for range bursts {
		proof := k.proofFor(tok, apiPost, apiURL, now).signed(t, k)
		var accepted, replays atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-start
				_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, ErrReplay):
					replays.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), accepted.Load())
		require.Equal(t, int32(goroutines-1), replays.Load())
	}
}

// TestReplayCacheHeap: proofs leave in the order of their deadlines,
// whatever the order they came in.
func TestReplayCacheHeap(t *testing.T) {
	t.Parallel()
	rc := newReplayCache(100)
	deadlines := []int64{50, 10, 40, 20, 30, 60, 5, 45}
	for i, d := range deadlines {
		require.NoError(t, rc.add([16]byte{byte(i)}, d, 0))
	}
	for now := int64(0); now <= 61; now++ {
		rc.prune(now)
		for i, d := range deadlines {
			_, kept := rc.seen[[16]byte{byte(i)}]
			assert.Equal(t, d >= now, kept, "deadline %d at %d", d, now)
		}
		assert.Len(t, rc.due, len(rc.seen))
	}
}

// TestDPoPNonces: with nonces on, a proof must carry the current one (or
// the previous interval's); replicas that share the secret accept each
// other's.
func TestDPoPNonces(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwk(t, &rsaA.PublicKey, "s-a", "RS256"))
	secret := []byte("0123456789abcdef0123456789abcdef")
	mod := func(c *Config) { c.DPoPNonceInterval = time.Minute; c.DPoPNonceSecret = secret }
	v, clk := newTestVerifier(t, srv, mod)
	replica, clk2 := newTestVerifier(t, srv, mod)
	stranger, clk3 := newTestVerifier(t, srv, func(c *Config) { c.DPoPNonceInterval = time.Minute })
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, map[string]any{"jkt": k.jkt})
	check := func(v *Verifier, nonce any, iat time.Time) error {
		proof := k.proofFor(tok, apiPost, apiURL, iat).with(nil, map[string]any{"nonce": nonce}).signed(t, k)
		_, err := v.VerifyDPoP(context.Background(), tok, DPoPRequest{Proof: proof, Method: apiPost, URL: apiURL})
		return err
	}

	nonce := v.DPoPNonce()
	require.NotEmpty(t, nonce)
	assert.Regexp(t, `^[A-Za-z0-9_-]+$`, nonce, "NQCHAR, and safe in a header")
	err := check(v, nil, now)
	assert.ErrorIs(t, err, ErrUseDPoPNonce)
	assert.ErrorIs(t, err, ErrInvalidDPoPProof)
	assert.ErrorIs(t, check(v, "made-up", now), ErrUseDPoPNonce)
	assert.ErrorIs(t, check(v, 1, now), ErrMalformed)
	require.NoError(t, check(v, nonce, now))
	require.NoError(t, check(replica, nonce, now), "a replica with the secret takes it")
	assert.ErrorIs(t, check(stranger, nonce, now), ErrUseDPoPNonce, "another secret does not")

	for _, c := range []interface{ Advance(time.Duration) }{clk, clk2, clk3} {
		c.Advance(time.Minute)
	}
	assert.NotEqual(t, nonce, v.DPoPNonce(), "a new interval, a new nonce")
	assert.Equal(t, v.DPoPNonce(), replica.DPoPNonce())
	require.NoError(t, check(v, nonce, clk.Now()), "the previous interval's nonce still passes")
	clk.Advance(time.Minute)
	assert.ErrorIs(t, check(v, nonce, clk.Now()), ErrUseDPoPNonce, "two intervals later it does not")
	require.NoError(t, check(v, v.DPoPNonce(), clk.Now()))

	plain, _ := newTestVerifier(t, srv, nil)
	assert.Empty(t, plain.DPoPNonce(), "no nonces unless asked")
	require.NoError(t, check(plain, nil, now))
}
