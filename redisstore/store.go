// Package redisstore is an m2m.Store on Redis: the token cache a fleet of
// m2m clients shares, so that the fleet asks its authorization server for
// about one token per key per lifetime instead of one per process.
//
// It works with every go-redis UniversalClient (a single node, Sentinel,
// Cluster or a Ring). Every operation touches one Redis key, so none
// crosses a Cluster slot. Every call returns when its context ends (m2m's
// Config.StoreTimeout, 50 ms by default), however slowly Redis answers;
// ContextTimeoutEnabled on the client also frees the connection then,
// instead of at the client's ReadTimeout:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.New(rdb, redisstore.Options{EncryptionContext: "prod"})
//	c, err := m2m.New(m2m.Config{TokenURL: u, ClientID: id, ClientSecret: secret, Store: store})
//
// # What Redis holds
//
// Under Prefix + StoreKey.ID (a SHA-256 hash of the token URL, the client
// id, the audience's request shape and the scope set, never of the secret)
// it keeps the token, its type, scope, when it was obtained and when it
// expires, encrypted and authenticated with AES-256-GCM under a key
// derived with HKDF from the client secret, the key's ID and
// EncryptionContext, with the key's ID as additional data. The entry expires with the token. Whoever can read
// Redis but does not hold the client secret learns only which keys exist
// and when their tokens expire; they can neither use a stored token nor
// plant one (a value that does not decrypt, including one moved from
// another key, is treated as absent). Whoever can write Redis can still
// delete entries, fill them with garbage, or hold a key's lease: m2m then
// fetches its own tokens, as without a store (after waiting, for a held
// lease, up to half its FetchTimeout for a token that will not come).
//
// Stores with different EncryptionContexts (or clients with different
// secrets) under the same Prefix share keys and leases without reading
// each other's values, so each overwrites the other's and both fetch more
// often: give separate deployments separate Prefixes.
//
// Under Prefix + StoreKey.ID + ":lease" it keeps, while one process
// fetches the key's token, a random owner token (SET NX PX); only that
// owner's release deletes it (compare-and-delete in a Lua script).
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "m2m:"

// MaxValueSize is the largest value Load reads and Save writes, in bytes.
// A larger stored value is treated as absent; a token too large to fit is
// not saved (Save returns ErrValueTooLarge).
const MaxValueSize = 64 << 10

// Options configure a Store. Zero values are the defaults.
type Options struct {
	// Prefix namespaces the Store's Redis keys. Optional; default
	// DefaultPrefix ("m2m:").
	Prefix string
	// EncryptionContext goes into the derivation of the encryption key:
	// Stores with different contexts cannot read each other's values, even
	// for the same client. Set it per deployment (say "prod" and
	// "staging") when several share a Redis and a client, each with a
	// Prefix of its own (see the package doc). It is not a secret.
	// Optional; default "".
	EncryptionContext string
}

// ErrValueTooLarge is returned by Save for a token whose encrypted value
// would exceed MaxValueSize.
var ErrValueTooLarge = errors.New("redisstore: value too large")

// Error is a failed Redis call. Its message names the operation and the
// go-redis error, never a key's material, a value or a token.
type Error struct {
	// Op is the Store operation: "load", "save", "lease" or "evict".
	Op string
	// Err is the go-redis error.
	Err error
}

// Error returns "redisstore: " followed by Op and the go-redis error.
func (e *Error) Error() string { return "redisstore: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Store is an m2m.Store on Redis. It is safe for concurrent use and holds
// no state of its own beyond its options; it does not own the Redis
// client, which the caller closes.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	info   string // HKDF info of the encryption keys
	now    func() time.Time
}

var _ m2m.Store = (*Store)(nil)

// compareAndDelete deletes KEYS[1] only if it holds ARGV[1]: the release
// of a lease by its owner, and the eviction of one exact token.
var compareAndDelete = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	return newStore(rdb, opts, time.Now)
}

func newStore(rdb redis.UniversalClient, opts Options, now func() time.Time) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: nil Redis client")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, prefix: prefix, info: "redisstore v1 " + opts.EncryptionContext, now: now}, nil
}

func (s *Store) tokenKey(key m2m.StoreKey) string { return s.prefix + key.ID() }
func (s *Store) leaseKey(key m2m.StoreKey) string { return s.prefix + key.ID() + ":lease" }

// Load returns the token stored under key, or nil and no error when there
// is none, it has expired, or its value does not decrypt and parse with
// this Store's key for it (garbage, another EncryptionContext, another
// secret, a value moved from another key).
func (s *Store) Load(ctx context.Context, key m2m.StoreKey) (*m2m.SharedToken, error) {
	tok, _, err := s.load(ctx, "load", key)
	return tok, err
}

// load returns the token under key and the raw value it was read from.
func (s *Store) load(ctx context.Context, op string, key m2m.StoreKey) (*m2m.SharedToken, string, error) {
	// GETRANGE bounds what a planted value can make this process read.
	raw, err := bounded(ctx, func(ctx context.Context) (string, error) {
		return s.rdb.GetRange(ctx, s.tokenKey(key), 0, MaxValueSize).Result()
	}, nil)
	if err != nil {
		return nil, "", &Error{Op: op, Err: err}
	}
	if raw == "" || len(raw) > MaxValueSize {
		return nil, "", nil
	}
	aead, err := s.aead(key)
	if err != nil {
		return nil, "", err
	}
	tok, ok := open(aead, key.ID(), raw)
	if !ok || !tok.Expiry.After(s.now()) {
		return nil, "", nil
	}
	return tok, raw, nil
}

// Save stores tok under key until tok.Expiry (Redis expires it then). A
// token already expired is not stored.
func (s *Store) Save(ctx context.Context, key m2m.StoreKey, tok *m2m.SharedToken) error {
	if tok == nil {
		return nil
	}
	ttl := tok.Expiry.Sub(s.now())
	if ttl <= 0 {
		return nil
	}
	aead, err := s.aead(key)
	if err != nil {
		return err
	}
	raw, err := seal(aead, key.ID(), tok)
	if err != nil {
		return err
	}
	if len(raw) > MaxValueSize {
		return ErrValueTooLarge
	}
	_, err = bounded(ctx, func(ctx context.Context) (string, error) {
		return s.rdb.Set(ctx, s.tokenKey(key), raw, roundUpMillis(ttl)).Result()
	}, nil)
	if err != nil {
		return &Error{Op: "save", Err: err}
	}
	return nil
}

// TryLease tries to take key's lease for ttl (SET NX PX with a random
// owner token). It returns ok false and no error when another holder has
// it. release deletes the lease only while it still holds this owner
// token, so a release after the lease expired and someone else took it
// leaves theirs alone; release ignores errors (the lease expires anyway).
// A lease taken after ctx ended (Redis answered too late) is released as
// soon as the answer comes, rather than held by no one until it expires.
func (s *Store) TryLease(ctx context.Context, key m2m.StoreKey, ttl time.Duration) (release func(context.Context), ok bool, err error) {
	var b [16]byte
	rand.Read(b[:])
	owner := hex.EncodeToString(b[:])
	lk := s.leaseKey(key)
	rel := func(ctx context.Context) {
		bounded(ctx, func(ctx context.Context) (any, error) {
			return compareAndDelete.Run(ctx, s.rdb, []string{lk}, owner).Result()
		}, nil)
	}
	ok, err = bounded(ctx, func(ctx context.Context) (bool, error) {
		return s.rdb.SetNX(ctx, lk, owner, roundUpMillis(ttl)).Result()
	}, func(taken bool, err error) {
		if err == nil && taken {
			rel(context.WithoutCancel(ctx))
		}
	})
	if err != nil {
		return nil, false, &Error{Op: "lease", Err: err}
	}
	if !ok {
		return nil, false, nil
	}
	return rel, true, nil
}

// Evict deletes key's token only if it is still accessToken: it reads the
// value, and if it decrypts to accessToken, deletes it only if Redis still
// holds those exact bytes (compare-and-delete in one Lua script), so that
// a token saved in between by another process stays.
func (s *Store) Evict(ctx context.Context, key m2m.StoreKey, accessToken string) error {
	tok, raw, err := s.load(ctx, "evict", key)
	if err != nil || tok == nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(tok.AccessToken), []byte(accessToken)) != 1 {
		return nil
	}
	_, err = bounded(ctx, func(ctx context.Context) (any, error) {
		return compareAndDelete.Run(ctx, s.rdb, []string{s.tokenKey(key)}, raw).Result()
	}, nil)
	if err != nil {
		return &Error{Op: "evict", Err: err}
	}
	return nil
}

// bounded returns f's result, or ctx's error as soon as ctx ends if f has
// not returned by then. go-redis ends a call at its context's deadline
// (with ContextTimeoutEnabled) but not when the context is cancelled, and
// m2m cancels; so each call runs on a goroutine of its own that the
// caller stops waiting for. An abandoned call goes on until go-redis
// returns (within its ReadTimeout and WriteTimeout) and then hands its
// result to late, if not nil.
func bounded[T any](ctx context.Context, f func(context.Context) (T, error), late func(T, error)) (T, error) {
	if ctx.Done() == nil {
		return f(ctx)
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, ctx.Err()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result)   // unbuffered: a send succeeds only while the caller waits
	gone := make(chan struct{}) // closed when the caller stopped waiting
	go func() {
		v, err := f(ctx)
		select {
		case done <- result{v, err}:
		case <-gone:
			if late != nil {
				late(v, err)
			}
		}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		close(gone)
		var zero T
		return zero, ctx.Err()
	}
}

// String describes s by its prefix alone.
func (s *Store) String() string { return fmt.Sprintf("redisstore.Store{Prefix: %q}", s.prefix) }

// roundUpMillis rounds d up to whole milliseconds, at least one: Redis
// expiries have millisecond precision, and a TTL that rounded down to zero
// would mean "no expiry" to go-redis.
func roundUpMillis(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}
