package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestStore returns a Store on the shared server under a prefix of the
// test's own, new on every run, so tests never see each other's keys (nor
// those of an earlier run with -count).
func newTestStore(t testing.TB, opts Options) (*Store, *redis.Client) {
	t.Helper()
	rdb := srv.client(t)
	if opts.Prefix == "" {
		opts.Prefix = "test:" + t.Name() + ":" + randomString()[:8] + ":"
	}
	s, err := New(rdb, opts)
	require.NoError(t, err)
	return s, rdb
}

func testToken(access string, life time.Duration) *m2m.SharedToken {
	now := time.Now()
	return &m2m.SharedToken{AccessToken: access, TokenType: "Bearer", Obtained: now, Expiry: now.Add(life), Scope: "event.view event.create"}
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func requireSameToken(t *testing.T, want, got *m2m.SharedToken) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.AccessToken, got.AccessToken)
	assert.Equal(t, want.TokenType, got.TokenType)
	assert.Equal(t, want.Scope, got.Scope)
	assert.True(t, want.Expiry.Equal(got.Expiry), "expiry %v, want %v", got.Expiry, want.Expiry)
	assert.True(t, want.Obtained.Equal(got.Obtained), "obtained %v, want %v", got.Obtained, want.Obtained)
}

func TestNew(t *testing.T) {
	t.Parallel()
	addr := srv.Addr()
	clients := map[string]redis.UniversalClient{
		"client":           redis.NewClient(&redis.Options{Addr: addr}),
		"universal client": redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true}),
		"ring":             redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}}),
	}
	for name, rdb := range clients {
		t.Run(name, func(t *testing.T) {
			defer rdb.Close()
			s, err := New(rdb, Options{})
			require.NoError(t, err)
			assert.Equal(t, DefaultPrefix, s.prefix)
			key := storeKey(t, "new", "secret")
			defer rdb.Del(context.Background(), s.tokenKey(key))
			tok := testToken("t", time.Minute)
			require.NoError(t, s.Save(ctxT(t), key, tok))
			got, err := s.Load(ctxT(t), key)
			require.NoError(t, err)
			requireSameToken(t, tok, got)
		})
	}
	t.Run("nil client", func(t *testing.T) {
		_, err := New(nil, Options{})
		require.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), "redisstore: "), err.Error())
	})
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "event", "secret-1")

	got, err := s.Load(ctx, key)
	require.NoError(t, err)
	assert.Nil(t, got, "nothing stored yet")

	tok := testToken("access-token-1", time.Hour)
	require.NoError(t, s.Save(ctx, key, tok))
	got, err = s.Load(ctx, key)
	require.NoError(t, err)
	requireSameToken(t, tok, got)

	// The value sits under prefix + ID, and holds neither the token nor
	// the scope in clear.
	raw, err := rdb.Get(ctx, s.prefix+key.ID()).Result()
	require.NoError(t, err)
	assert.NotContains(t, raw, "access-token-1")
	assert.NotContains(t, raw, "event.view")

	// Save replaces; an empty type and scope and no Obtained survive too.
	tok2 := &m2m.SharedToken{AccessToken: "access-token-2", Expiry: time.Now().Add(time.Hour)}
	require.NoError(t, s.Save(ctx, key, tok2))
	got, err = s.Load(ctx, key)
	require.NoError(t, err)
	requireSameToken(t, tok2, got)
	assert.True(t, got.Obtained.IsZero())

	// Another key of the same client is another entry.
	got, err = s.Load(ctx, storeKey(t, "file", "secret-1"))
	require.NoError(t, err)
	assert.Nil(t, got)
}

func TestTTL(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)

	t.Run("the entry expires with the token", func(t *testing.T) {
		key := storeKey(t, "ttl", "secret")
		life := 1500 * time.Millisecond
		require.NoError(t, s.Save(ctx, key, testToken("short-lived", life)))
		pttl, err := rdb.PTTL(ctx, s.prefix+key.ID()).Result()
		require.NoError(t, err)
		assert.Positive(t, pttl)
		assert.LessOrEqual(t, pttl, life)
		// Redis drops it once the token has expired (a property, waited
		// for with a generous bound).
		require.Eventually(t, func() bool {
			n, err := rdb.Exists(ctx, s.prefix+key.ID()).Result()
			return err == nil && n == 0
		}, 30*time.Second, 20*time.Millisecond)
		got, err := s.Load(ctx, key)
		require.NoError(t, err)
		assert.Nil(t, got)
	})

	t.Run("an expired token is not stored", func(t *testing.T) {
		key := storeKey(t, "expired", "secret")
		require.NoError(t, s.Save(ctx, key, testToken("expired", -time.Second)))
		n, err := rdb.Exists(ctx, s.prefix+key.ID()).Result()
		require.NoError(t, err)
		assert.Zero(t, n)
		require.NoError(t, s.Save(ctx, key, nil))
	})

	t.Run("a token expired by the loader's clock is absent", func(t *testing.T) {
		key := storeKey(t, "late", "secret")
		require.NoError(t, s.Save(ctx, key, testToken("late", time.Hour)))
		later, err := newStore(s.rdb, Options{Prefix: s.prefix}, func() time.Time { return time.Now().Add(2 * time.Hour) })
		require.NoError(t, err)
		got, err := later.Load(ctx, key)
		require.NoError(t, err)
		assert.Nil(t, got)
	})
}

// TestUnreadableValuesAreAbsent plants values a Store must not take: each
// loads as absent without an error, and Evict leaves it alone.
func TestUnreadableValuesAreAbsent(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{EncryptionContext: "prod"})
	ctx := ctxT(t)
	tok := testToken("the-token", time.Hour)

	sealedBy := func(t *testing.T, opts Options, key m2m.StoreKey) string {
		opts.Prefix = s.prefix + "other:"
		other, err := New(rdb, opts)
		require.NoError(t, err)
		require.NoError(t, other.Save(ctx, key, tok))
		raw, err := rdb.Get(ctx, other.tokenKey(key)).Result()
		require.NoError(t, err)
		return raw
	}
	random := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return string(b)
	}
	tests := []struct {
		name  string
		value func(t *testing.T, key m2m.StoreKey) string
	}{
		{"another encryption context", func(t *testing.T, key m2m.StoreKey) string {
			return sealedBy(t, Options{EncryptionContext: "staging"}, key)
		}},
		{"the default encryption context", func(t *testing.T, key m2m.StoreKey) string {
			return sealedBy(t, Options{}, key)
		}},
		{"planted without the client secret (same ID, another secret)", func(t *testing.T, key m2m.StoreKey) string {
			attacker := storeKey(t, t.Name(), "not-the-secret")
			require.Equal(t, key.ID(), attacker.ID())
			return sealedBy(t, Options{EncryptionContext: "prod"}, attacker)
		}},
		{"moved from another key", func(t *testing.T, _ m2m.StoreKey) string {
			return sealedBy(t, Options{EncryptionContext: "prod"}, storeKey(t, "elsewhere", "secret"))
		}},
		{"one bit flipped", func(t *testing.T, key m2m.StoreKey) string {
			raw := []byte(sealedBy(t, Options{EncryptionContext: "prod"}, key))
			raw[len(raw)/2] ^= 1
			return string(raw)
		}},
		{"truncated", func(t *testing.T, key m2m.StoreKey) string {
			raw := sealedBy(t, Options{EncryptionContext: "prod"}, key)
			return raw[:len(raw)-1]
		}},
		{"unknown format", func(t *testing.T, key m2m.StoreKey) string {
			raw := []byte(sealedBy(t, Options{EncryptionContext: "prod"}, key))
			raw[0] = 2
			return string(raw)
		}},
		{"random bytes", func(*testing.T, m2m.StoreKey) string { return random(200) }},
		{"random bytes after the format byte", func(*testing.T, m2m.StoreKey) string { return "\x01" + random(200) }},
		{"a plain token", func(*testing.T, m2m.StoreKey) string { return "the-token" }},
		{"one byte", func(*testing.T, m2m.StoreKey) string { return "\x01" }},
		{"larger than MaxValueSize", func(t *testing.T, key m2m.StoreKey) string {
			return sealedBy(t, Options{EncryptionContext: "prod"}, key) + random(MaxValueSize)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := storeKey(t, t.Name(), "secret")
			value := tt.value(t, key)
			require.NoError(t, rdb.Set(ctx, s.tokenKey(key), value, time.Hour).Err())

			got, err := s.Load(ctx, key)
			require.NoError(t, err)
			assert.Nil(t, got)

			require.NoError(t, s.Evict(ctx, key, "the-token"))
			still, err := rdb.Get(ctx, s.tokenKey(key)).Result()
			require.NoError(t, err)
			assert.Equal(t, value, still, "Evict removed a value it could not read")
		})
	}
}

func TestWrongTypeIsAnError(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "hash", "secret")
	require.NoError(t, rdb.HSet(ctx, s.tokenKey(key), "f", "v").Err())
	_, err := s.Load(ctx, key)
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "load", se.Op)
	assert.Regexp(t, `^redisstore: load: WRONGTYPE`, err.Error())
	// Save overwrites whatever is there.
	require.NoError(t, s.Save(ctx, key, testToken("t", time.Hour)))
}

func TestLeaseExclusive(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	const rounds, racers = 100, 16
	for round := range rounds {
		var wins atomic.Int32
		var winner func(context.Context)
		var mu sync.Mutex
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range racers {
			wg.Go(func() {
				<-start
				release, ok, err := s.TryLease(ctx, key, time.Minute)
				assert.NoError(t, err)
				if ok {
					wins.Add(1)
					mu.Lock()
					winner = release
					mu.Unlock()
				} else {
					assert.Nil(t, release)
				}
			})
		}
		close(start)
		wg.Wait()
		require.EqualValues(t, 1, wins.Load(), "round %d: winners", round)
		if round == 0 {
			pttl, err := rdb.PTTL(ctx, s.leaseKey(key)).Result()
			require.NoError(t, err)
			assert.Positive(t, pttl)
			assert.LessOrEqual(t, pttl, time.Minute)
		}
		winner(ctx)
	}
}

func TestLeaseReleasedOnlyByOwner(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	held := func() bool {
		n, err := rdb.Exists(ctx, s.leaseKey(key)).Result()
		require.NoError(t, err)
		return n == 1
	}

	releaseA, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "B took a held lease")

	// A's lease runs out (here: removed, as its expiry would) and B takes it.
	require.NoError(t, rdb.Del(ctx, s.leaseKey(key)).Err())
	releaseB, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	releaseA(ctx) // late: must leave B's lease alone
	releaseA(ctx)
	assert.True(t, held(), "A's late release removed B's lease")
	_, ok, err = s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	assert.False(t, ok)

	releaseB(ctx)
	assert.False(t, held())
	releaseC, ok, err := s.TryLease(ctx, key, time.Minute)
	require.NoError(t, err)
	assert.True(t, ok)
	releaseC(ctx)
}

func TestLeaseExpires(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, Options{})
	ctx := ctxT(t)
	key := storeKey(t, "lease", "secret")
	_, ok, err := s.TryLease(ctx, key, 100*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	var release func(context.Context)
	require.Eventually(t, func() bool {
		release, ok, err = s.TryLease(ctx, key, time.Minute)
		return err == nil && ok
	}, 30*time.Second, 10*time.Millisecond, "an abandoned lease never expired")
	release(ctx)
}

func TestEvict(t *testing.T) {
	t.Parallel()
	s, rdb := newTestStore(t, Options{})
	ctx := ctxT(t)

	tests := []struct {
		name      string
		stored    []string // saved in order; the last one stays in Redis
		evict     string
		wantAfter string // "" for none
	}{
		{"the rejected token is removed", []string{"old"}, "old", ""},
		{"a newer token stays", []string{"old", "new"}, "old", "new"},
		{"an unknown token removes nothing", []string{"new"}, "other", "new"},
		{"nothing stored", nil, "old", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := storeKey(t, t.Name(), "secret")
			for _, access := range tt.stored {
				require.NoError(t, s.Save(ctx, key, testToken(access, time.Hour)))
			}
			require.NoError(t, s.Evict(ctx, key, tt.evict))
			require.NoError(t, s.Evict(ctx, key, tt.evict), "a second eviction of the same token")
			got, err := s.Load(ctx, key)
			require.NoError(t, err)
			if tt.wantAfter == "" {
				assert.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tt.wantAfter, got.AccessToken)
		})
	}

	// The step after Evict's read: a value written since (even holding the
	// same token, sealed anew) is not deleted with the bytes that were read.
	t.Run("compare-and-delete on the bytes read", func(t *testing.T) {
		key := storeKey(t, t.Name(), "secret")
		tok := testToken("same", time.Hour)
		require.NoError(t, s.Save(ctx, key, tok))
		read, err := rdb.Get(ctx, s.tokenKey(key)).Result()
		require.NoError(t, err)
		require.NoError(t, s.Save(ctx, key, tok))
		n, err := compareAndDelete.Run(ctx, rdb, []string{s.tokenKey(key)}, read).Int()
		require.NoError(t, err)
		assert.Zero(t, n)
		got, err := s.Load(ctx, key)
		require.NoError(t, err)
		assert.NotNil(t, got)
	})
}

// TestStoreDown: with nothing listening, every operation returns an *Error
// wrapping the network error, within its context, and none panics or
// names the token.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	require.NoError(t, err)
	// Without go-redis's own retries, the error is the dial's; with them,
	// m2m's StoreTimeout ends the call (the "deadline" cases).
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ContextTimeoutEnabled: true,
		MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	s, err := New(rdb, Options{})
	require.NoError(t, err)
	retrying := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ContextTimeoutEnabled: true})
	t.Cleanup(func() { retrying.Close() })
	sr, err := New(retrying, Options{})
	require.NoError(t, err)
	key := storeKey(t, "down", "secret")
	tok := testToken("secret-token-value", time.Hour)

	ops := map[string]func(ctx context.Context) error{
		"load": func(ctx context.Context) error {
			got, err := s.Load(ctx, key)
			assert.Nil(t, got)
			return err
		},
		"save": func(ctx context.Context) error { return s.Save(ctx, key, tok) },
		"lease": func(ctx context.Context) error {
			release, ok, err := s.TryLease(ctx, key, time.Second)
			assert.False(t, ok)
			assert.Nil(t, release)
			return err
		},
		"evict": func(ctx context.Context) error { return s.Evict(ctx, key, tok.AccessToken) },
	}
	for op, call := range ops {
		t.Run(op, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := call(ctx)
			var se *Error
			require.ErrorAs(t, err, &se)
			assert.Equal(t, op, se.Op)
			var ne net.Error
			assert.True(t, errors.As(err, &ne), "want a net.Error inside, got %v", err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: "+op+": "), err.Error())
			assert.NotContains(t, err.Error(), tok.AccessToken)
		})
	}
	deadlineOps := map[string]func(ctx context.Context) error{
		"load":  func(ctx context.Context) error { _, err := sr.Load(ctx, key); return err },
		"save":  func(ctx context.Context) error { return sr.Save(ctx, key, tok) },
		"lease": func(ctx context.Context) error { _, _, err := sr.TryLease(ctx, key, time.Second); return err },
		"evict": func(ctx context.Context) error { return sr.Evict(ctx, key, tok.AccessToken) },
	}
	for op, call := range deadlineOps {
		t.Run(op+" deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := call(ctx)
			var se *Error
			require.ErrorAs(t, err, &se)
			assert.NotContains(t, err.Error(), tok.AccessToken)
		})
	}
}

func TestSaveTooLarge(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, Options{})
	err := s.Save(ctxT(t), storeKey(t, "big", "secret"), testToken(strings.Repeat("x", MaxValueSize), time.Hour))
	require.ErrorIs(t, err, ErrValueTooLarge)
}

// FuzzOpen: no value, however malformed, makes open panic or succeed
// without the key.
func FuzzOpen(f *testing.F) {
	s := &Store{info: "redisstore v1 "}
	key := storeKey(f, "fuzz", "secret")
	aead, err := s.aead(key)
	require.NoError(f, err)
	good, err := seal(aead, key.ID(), testToken("tok", time.Hour))
	require.NoError(f, err)
	f.Add(good)
	f.Add("")
	f.Add("\x01")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, ok := open(aead, key.ID(), raw)
		if ok {
			require.NotNil(t, tok)
			require.Equal(t, good, raw, "a value not sealed with the key opened")
		}
	})
}

// TestSlowRedis: behind a proxy that holds all traffic for 300 ms, each
// call returns its context's error when the context is cancelled (as m2m
// cancels at StoreTimeout), not Redis's late answer; and a lease Redis
// grants after its caller gave up is released, not held by no one for
// its whole TTL.
func TestSlowRedis(t *testing.T) {
	t.Parallel()
	proxy := newSlowProxy(t, srv.Addr(), 300*time.Millisecond)
	prefix := "test:" + t.Name() + ":" + randomString()[:8] + ":"
	slowClient := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { slowClient.Close() })
	slow, err := New(slowClient, Options{Prefix: prefix})
	require.NoError(t, err)
	direct, rdb := newTestStore(t, Options{Prefix: prefix})
	key := storeKey(t, "slow", "secret")
	require.NoError(t, direct.Save(ctxT(t), key, testToken("t", time.Hour)))

	cancelSoon := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		return ctx
	}
	got, err := slow.Load(cancelSoon(), key)
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, got)
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "load", se.Op)

	_, ok, err := slow.TryLease(cancelSoon(), key, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ok)
	// A new connection's handshake and the script's EVALSHA/EVAL each
	// cost round trips through the proxy: wait generously.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leased := func() bool {
		n, err := rdb.Exists(ctx, direct.leaseKey(key)).Result()
		require.NoError(t, err)
		return n == 1
	}
	require.Eventually(t, leased, 25*time.Second, 5*time.Millisecond, "the late SET never reached Redis")
	require.Eventually(t, func() bool { return !leased() }, 25*time.Second, 5*time.Millisecond,
		"the lease taken too late is still held")
}
