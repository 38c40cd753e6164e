package redisstore

import (
	"context"
	"crypto/rand"
	"strings"
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
