package m2m

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/oauth2"
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
	// TokenType is the token type, "Bearer" (or "DPoP" for a DPoP-bound
	// token, RFC 9449).
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
//
// String, Format and MarshalJSON have value receivers, so a SharedToken
// value, a slice of them or a dereferenced pointer is redacted too.
func (t SharedToken) String() string {
	return fmt.Sprintf("m2m.SharedToken{TokenType: %q, Obtained: %s, Expiry: %s, Scope: %q, AccessToken: %s}",
		t.TokenType, t.Obtained.UTC().Format(time.RFC3339), t.Expiry.UTC().Format(time.RFC3339), t.Scope, redacted)
}

// Format prints String for every verb, so no verb can show the token.
func (t SharedToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, t.String()) }

// LogValue implements slog.LogValuer without the token.
//
// Unlike the others it has a pointer receiver, so a nil *SharedToken (a
// Load that found nothing) logs as "<nil>"; a value logs through Format
// or MarshalJSON, which leave the token out too.
func (t *SharedToken) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("token_type", t.TokenType), slog.Time("obtained", t.Obtained),
		slog.Time("expiry", t.Expiry), slog.String("scope", t.Scope))
}

// MarshalJSON implements json.Marshaler without the token.
func (t SharedToken) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenType   string    `json:"token_type"`
		Obtained    time.Time `json:"obtained"`
		Expiry      time.Time `json:"expiry"`
		Scope       string    `json:"scope"`
		AccessToken string    `json:"access_token"`
	}{t.TokenType, t.Obtained, t.Expiry, t.Scope, redacted})
}

// StoreKey names one cached token in a Store: the token endpoint, the
// client, the audience's request shape and the scope set. Its ID is a
// SHA-256 hash of those, never of the secret; it also carries key material
// derived from the client's credentials, which DeriveKey hands out, so
// that only holders of the credentials can read or plant a stored token.
// Formatting a StoreKey shows only its ID. It is a small value, safe to
// copy and to use concurrently. Compare StoreKeys by ID, not with ==: two
// keys for the same token hold their material in different places.
type StoreKey struct {
	id string
	// secret is behind a pointer: fmt cannot call Format on a StoreKey
	// in an unexported field of a struct, and then prints an address,
	// not the material.
	secret *[32]byte
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
	if k.secret == nil {
		return nil, errors.New("m2m: DeriveKey on a StoreKey without key material")
	}
	return hkdf.Key(sha256.New, k.secret[:], []byte(k.id), info, n)
}

// newStoreKey builds the StoreKey of k for a client whose credentials are
// secret: the ID hashes what identifies the token, the material is
// HKDF-extracted from the secret so the raw secret never leaves the Client.
func newStoreKey(tokenURL, clientID string, k cacheKey, secret string) StoreKey {
	return newStoreKeyBound(tokenURL, clientID, k, "", []byte(secret))
}

// storeKey returns the StoreKey of k for this Client. Its material comes
// from the client's secret, else its private key or TLS key (as first
// read). A token bound to a DPoP key or a TLS certificate is of use only
// to its holders, so the key's or certificate's thumbprint is part of the
// ID: processes holding another never load it.
func (e *env) storeKey(k cacheKey) StoreKey {
	var binding string
	if e.dpop != nil {
		binding += "jkt=" + e.dpop.jkt + ";"
	}
	if e.auth.cert != nil {
		if c := e.auth.cert.cur.Load(); len(c.Certificate) > 0 {
			sum := sha256.Sum256(c.Certificate[0])
			binding += "x5t#S256=" + b64.EncodeToString(sum[:]) + ";"
		}
	}
	return newStoreKeyBound(e.cfg.TokenURL+" "+e.cfg.Issuer, e.cfg.ClientID, k, binding, e.auth.storeMaterial())
}

// newStoreKeyBound is newStoreKey for a token bound to binding ("" for
// bearer tokens), with material as the secret.
func newStoreKeyBound(tokenURL, clientID string, k cacheKey, binding string, material []byte) StoreKey {
	h := sha256.New()
	parts := []string{"m2m store key v1", tokenURL, clientID, k.audience, k.shape, k.scopes}
	if binding != "" {
		parts = append(parts, binding)
	}
	for _, part := range parts {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	sk := StoreKey{id: hex.EncodeToString(h.Sum(nil))}
	prk, err := hkdf.Extract(sha256.New, material, []byte("m2m store"))
	if err == nil {
		sk.secret = new([32]byte)
		copy(sk.secret[:], prk)
	}
	return sk
}

// redacted stands in for a secret or token in formatted output.
const redacted = "[REDACTED]"

// Shared-store timing.
const (
	// leaseMargin is how much longer than FetchTimeout a lease lasts, so
	// it never ends while its holder may still be fetching.
	leaseMargin = 5 * time.Second
	// firstPoll and maxPoll bound the interval at which a process that
	// lost the lease looks for the winner's token.
	firstPoll = 10 * time.Millisecond
	maxPoll   = 200 * time.Millisecond
)

// storeGate wraps a Client's Store: every call is bounded by
// StoreTimeout, failures turn into "no store" (a local fetch), and changes
// between a failing and an answering store are logged and reported once.
type storeGate struct {
	env  *env
	s    Store
	down atomic.Bool
}

// call runs f with a context bounded by StoreTimeout (on the Client's
// clock) and records whether the store answered.
func (g *storeGate) call(ctx context.Context, e *entry, f func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := g.env.clock.AfterFunc(g.env.cfg.StoreTimeout, func() { cancel(errStoreTimeout) })
	err := f(ctx)
	stop()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	cancel(nil)
	g.record(e, err)
	return err
}

// errStoreTimeout ends a store call that ran past StoreTimeout.
var errStoreTimeout = fmt.Errorf("m2m: shared store took longer than StoreTimeout: %w", context.DeadlineExceeded)

// record reports a change between a failing and an answering store.
func (g *storeGate) record(e *entry, err error) {
	switch {
	case err != nil && !g.down.Swap(true):
		e.observe(Event{Kind: EventStoreDown, Err: err})
		e.log(slog.LevelWarn, "m2m: shared store failed; fetching tokens locally until it answers again", slog.String("error", err.Error()))
	case err == nil && g.down.Swap(false):
		e.observe(Event{Kind: EventStoreUp})
		e.log(slog.LevelInfo, "m2m: shared store answers again")
	}
}

// obtain gets e's token through the store: a usable stored token if there
// is one; else, holding the key's lease, a fetch whose token is stored for
// the fleet; else, while another process holds the lease, that process's
// token once it is stored, or a fetch of our own if it does not come while
// half the fetch budget lasts. It never fails because of the store.
func (g *storeGate) obtain(ctx context.Context, e *entry) fetchResult {
	if st := g.load(ctx, e); st != nil {
		return fetchResult{st: st}
	}
	release, ok, err := g.lease(ctx, e)
	if err != nil {
		return e.fetch(ctx)
	}
	clk := g.env.clock
	if !ok {
		giveUp := clk.Now().Add(g.env.cfg.FetchTimeout / 2)
		for delay := firstPoll; !ok; delay = min(2*delay, maxPoll) {
			if !clk.Now().Add(delay).Before(giveUp) || !sleep(ctx, clk, delay) {
				return e.fetch(ctx) // the winner's token did not come in time
			}
			if st := g.load(ctx, e); st != nil {
				return fetchResult{st: st}
			}
			if release, ok, err = g.lease(ctx, e); err != nil {
				return e.fetch(ctx)
			}
		}
	}
	defer g.call(context.WithoutCancel(ctx), e, func(ctx context.Context) error { release(ctx); return nil })
	if st := g.load(ctx, e); st != nil {
		return fetchResult{st: st} // stored while we took the lease
	}
	res := e.fetch(ctx)
	if res.err == nil {
		st := res.st
		g.call(ctx, e, func(ctx context.Context) error {
			return g.s.Save(ctx, e.skey, &SharedToken{AccessToken: st.tok.AccessToken, TokenType: st.tok.TokenType,
				Obtained: st.obtained, Expiry: st.tok.Expiry, Scope: scopeOf(st.tok)})
		})
	}
	return res
}

// lease tries to take e's lease.
func (g *storeGate) lease(ctx context.Context, e *entry) (release func(context.Context), ok bool, err error) {
	err = g.call(ctx, e, func(ctx context.Context) error {
		release, ok, err = g.s.TryLease(ctx, e.skey, g.env.cfg.FetchTimeout+leaseMargin)
		return err
	})
	if err == nil && ok && release == nil {
		release = func(context.Context) {}
	}
	return release, ok, err
}

// load returns the stored token of e as a cache state if it is usable: a
// bearer token that is still fresh by this process's schedule.
func (g *storeGate) load(ctx context.Context, e *entry) *tokenState {
	var t *SharedToken
	err := g.call(ctx, e, func(ctx context.Context) (err error) {
		t, err = g.s.Load(ctx, e.skey)
		return err
	})
	typ := "Bearer"
	if g.env.dpop != nil {
		typ = "DPoP"
	}
	if err != nil || t == nil || t.AccessToken == "" || !t.Expiry.After(t.Obtained) ||
		!strings.EqualFold(t.TokenType, typ) || !wire.HeaderSafe(t.AccessToken) {
		return nil
	}
	life := min(t.Expiry.Sub(t.Obtained), wire.MaxLifetime)
	st := e.newState(t.AccessToken, typ, t.Scope, t.Obtained, life, wire.FromStore)
	if !g.env.clock.Now().Before(st.refreshAt) {
		return nil // stale here too: time for a new one
	}
	st.shared = true
	return st
}

// evict removes a rejected token from the store, if it is still there.
func (g *storeGate) evict(e *entry, token string) {
	g.call(g.env.ctx, e, func(ctx context.Context) error { return g.s.Evict(ctx, e.skey, token) })
}

// scopeOf returns the granted scope a cached token carries.
func scopeOf(t *oauth2.Token) string {
	s, _ := t.Extra("scope").(string)
	return s
}

// sleep waits d on clk, or until ctx ends (then it reports false).
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	timer, stop := clk.NewTimer(d)
	defer stop()
	select {
	case <-timer:
		return true
	case <-ctx.Done():
		return false
	}
}
