package m2m

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Store is a token cache shared by every process of a fleet, behind each
// Client's in-process cache, so that a fleet asks the authorization server
// for about one token per key per lifetime instead of one per process.
// Package redisstore (a module of its own) implements it on Redis.
//
// A Client consults its Store only when it would otherwise fetch (a cold
// key, or a token past its refresh point), never on the hot path. Every
// call gets a context bounded by Config.StoreTimeout. The Client treats
// any error as "no store": it fetches on its own and never fails a request
// because of the Store.
//
// Implementations must be safe for concurrent use, must not keep the
// tokens they are given in clear text where others can read them (use
// StoreKey.DeriveKey for an encryption key), must treat a value they cannot
// decrypt or parse as absent, and must never log a token.
type Store interface {
	// Load returns the token stored under key, or nil and no error when
	// there is none (or none this Client can read).
	Load(ctx context.Context, key StoreKey) (*SharedToken, error)
	// Save stores tok under key until tok.Expiry, replacing what is there.
	Save(ctx context.Context, key StoreKey, tok *SharedToken) error
	// TryLease tries to take key's lease, the right to fetch its token,
	// for ttl. It returns ok false and no error when someone else holds
	// it. release gives the lease back early, and only if it is still
	// this holder's; it is safe to call once the lease has expired.
	TryLease(ctx context.Context, key StoreKey, ttl time.Duration) (release func(context.Context), ok bool, err error)
	// Evict removes key's token only if it is still accessToken (a callee
	// rejected it), so that concurrent evictions of one token across the
	// fleet remove it once and never a newer one.
	Evict(ctx context.Context, key StoreKey, accessToken string) error
}

// SharedToken is a token as a Store keeps it. Formatting it with fmt,
// slog or encoding/json never shows AccessToken.
type SharedToken struct {
	// AccessToken is the token itself.
	AccessToken string
	// TokenType is the token type, "Bearer".
	TokenType string
	// Obtained is when the token was asked for, and Expiry when it
	// expires, by the clock of the process that fetched it: a process
	// that loads it schedules its refresh from both, as the fetching one
	// did. Store both.
	Obtained, Expiry time.Time
	// Scope is the scope the server granted, as it sent it; may be empty.
	Scope string
}

// String describes t without its token.
func (t *SharedToken) String() string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("m2m.SharedToken{TokenType: %q, Obtained: %s, Expiry: %s, Scope: %q, AccessToken: %s}",
		t.TokenType, t.Obtained.UTC().Format(time.RFC3339), t.Expiry.UTC().Format(time.RFC3339), t.Scope, redacted)
}

// Format prints String for every verb, so no verb can show the token.
func (t *SharedToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, t.String()) }

// LogValue implements slog.LogValuer without the token.
func (t *SharedToken) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("token_type", t.TokenType), slog.Time("obtained", t.Obtained),
		slog.Time("expiry", t.Expiry), slog.String("scope", t.Scope))
}

// MarshalJSON implements json.Marshaler without the token.
func (t *SharedToken) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"token_type":%q,"obtained":%q,"expiry":%q,"scope":%q,"access_token":%q}`,
		t.TokenType, t.Obtained.UTC().Format(time.RFC3339Nano), t.Expiry.UTC().Format(time.RFC3339Nano), t.Scope, redacted), nil
}

// StoreKey names one cached token in a Store: the token endpoint, the
// client, the audience's request shape and the scope set. Its ID is a
// SHA-256 hash of those, never of the secret; it also carries key material
// derived from the client's credentials, which DeriveKey hands out, so
// that only holders of the credentials can read or plant a stored token.
// Formatting a StoreKey shows only its ID. It is a small value, safe to
// copy and to use concurrently.
type StoreKey struct {
	id     string
	secret [32]byte
}

// ID returns the key's identity: 64 hex digits, the same in every process
// of the same client, endpoint, audience shape and scope set. Use it (with
// a prefix of your own) as the store's key.
func (k StoreKey) ID() string { return k.id }

// String returns ID.
func (k StoreKey) String() string { return k.id }

// Format prints ID for every verb, so no verb shows the key material.
func (k StoreKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.id) }

// LogValue implements slog.LogValuer with the ID alone.
func (k StoreKey) LogValue() slog.Value { return slog.StringValue(k.id) }

// DeriveKey returns n bytes of key material for this key, derived with
// HKDF-SHA256 (RFC 5869) from the client's credentials, with the key's ID
// as salt and info as context: a different info (say, a deployment name)
// gives an unrelated key. n is at most 255·32.
func (k StoreKey) DeriveKey(info string, n int) ([]byte, error) {
	if k.id == "" {
		return nil, errors.New("m2m: DeriveKey on a zero StoreKey")
	}
	return hkdf.Key(sha256.New, k.secret[:], []byte(k.id), info, n)
}

// newStoreKey builds the StoreKey of k for a client whose credentials are
// secret: the ID hashes what identifies the token, the material is
// HKDF-extracted from the secret so the raw secret never leaves the Client.
func newStoreKey(tokenURL, clientID string, k cacheKey, secret string) StoreKey {
	h := sha256.New()
	for _, part := range []string{"m2m store key v1", tokenURL, clientID, k.audience, k.shape, k.scopes} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	sk := StoreKey{id: hex.EncodeToString(h.Sum(nil))}
	prk, err := hkdf.Extract(sha256.New, []byte(secret), []byte("m2m store"))
	if err == nil {
		copy(sk.secret[:], prk)
	}
	return sk
}

// redacted stands in for a secret or token in formatted output.
const redacted = "[REDACTED]"
