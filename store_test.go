package m2m

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memStore is an in-memory Store shared by the Clients of a test, as one
// Redis is shared by a fleet. Its knobs make it fail or hang.
type memStore struct {
	mu      sync.Mutex
	tokens  map[string]*SharedToken
	leases  map[string]int
	nextID  int
	evicted []string
	loads   atomic.Int64

	fail  atomic.Bool // every call fails
	hang  atomic.Bool // every call waits for its context to end
	plant *SharedToken
}

func newMemStore() *memStore {
	return &memStore{tokens: map[string]*SharedToken{}, leases: map[string]int{}}
}

var errStoreDown = errors.New("store: connection refused")

func (m *memStore) gate(ctx context.Context) error {
	if m.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.fail.Load() {
		return errStoreDown
	}
	return nil
}

func (m *memStore) Load(ctx context.Context, k StoreKey) (*SharedToken, error) {
	m.loads.Add(1)
	if err := m.gate(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.plant != nil {
		return m.plant, nil
	}
	return m.tokens[k.ID()], nil
}

func (m *memStore) Save(ctx context.Context, k StoreKey, t *SharedToken) error {
	if err := m.gate(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *t
	m.tokens[k.ID()] = &c
	return nil
}

func (m *memStore) TryLease(ctx context.Context, k StoreKey, ttl time.Duration) (func(context.Context), bool, error) {
	if err := m.gate(ctx); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, held := m.leases[k.ID()]; held {
		return nil, false, nil
	}
	m.nextID++
	id := m.nextID
	m.leases[k.ID()] = id
	return func(context.Context) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.leases[k.ID()] == id {
			delete(m.leases, k.ID())
		}
	}, true, nil
}

func (m *memStore) Evict(ctx context.Context, k StoreKey, token string) error {
	if err := m.gate(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evicted = append(m.evicted, token)
	if t := m.tokens[k.ID()]; t != nil && t.AccessToken == token {
		delete(m.tokens, k.ID())
	}
	return nil
}

// fleet returns n Clients of one client id that share store and ts, on
// one fake clock.
func fleet(t *testing.T, ts *tokenServer, store Store, n int, mod func(*Config)) ([]*Client, *clock.Fake) {
	t.Helper()
	c0, fc := newTestClient(t, ts, func(cfg *Config) {
		cfg.Store = store
		if mod != nil {
			mod(cfg)
		}
	})
	out := []*Client{c0}
	for range n - 1 {
		cfg := Config{TokenURL: ts.URL + "/auth/oauth/token", ClientID: testID, ClientSecret: testSecret, Store: store}
		if mod != nil {
			mod(&cfg)
		}
		c, err := newClient(cfg, fc, noJitter)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out, fc
}

func TestStoreSharesOneTokenAcrossTheFleet(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	store := newMemStore()
	rec := &recorder{}
	clients, _ := fleet(t, ts, store, 5, func(cfg *Config) { cfg.Observer = rec })
	var first string
	for i, c := range clients {
		tok, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
		require.NoError(t, err)
		if i == 0 {
			first = tok.AccessToken
		}
		assert.Equal(t, first, tok.AccessToken, "replica %d", i)
	}
	assert.EqualValues(t, 1, ts.hits.Load(), "one token request for the fleet")
	assert.Len(t, rec.of(EventStoreHit), 4)
}

func TestStoreLeaseLoserWaitsForTheWinner(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	hold, arrived := make(chan struct{}), make(chan struct{}, 1)
	ts.set(func(ts *tokenServer) { ts.hold, ts.arrived = hold, arrived })
	store := newMemStore()
	clients, fc := fleet(t, ts, store, 2, nil)
	winner := make(chan error, 1)
	go func() {
		_, err := mustSource(t, clients[0], eventAudience).TokenContext(context.Background())
		winner <- err
	}()
	<-arrived // the winner holds the lease and is fetching
	loser := make(chan string, 1)
	go func() {
		tok, err := mustSource(t, clients[1], eventAudience).TokenContext(context.Background())
		if assert.NoError(t, err) {
			loser <- tok.AccessToken
		}
	}()
	// The loser polls the store on the fake clock; let it poll a few times.
	for range 5 {
		require.Eventually(t, func() bool { _, ok := fc.NextTimer(); return ok }, 30*time.Second, time.Millisecond)
		d, _ := fc.NextTimer()
		fc.Advance(d)
	}
	close(hold)
	require.NoError(t, <-winner)
	got := drive(t, fc, loser, nil, 0)
	assert.Contains(t, got, "tok-1-")
	assert.EqualValues(t, 1, ts.hits.Load(), "the loser took the winner's token")
}

func TestStoreLeaseNeverReleasedFetchesLocally(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	store := newMemStore()
	clients, fc := fleet(t, ts, store, 1, nil)
	// Someone else holds the lease and never stores a token.
	_, ok, err := store.TryLease(context.Background(), clients[0].entry(mustSource(t, clients[0], eventAudience).key(eventScopesSorted)).skey, time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	done := make(chan error, 1)
	go func() {
		_, err := mustSource(t, clients[0], eventAudience).TokenContext(context.Background())
		done <- err
	}()
	require.NoError(t, drive(t, fc, done, nil, 0))
	assert.EqualValues(t, 1, ts.hits.Load(), "after half the fetch budget, it fetches itself")
}

var eventScopesSorted = []string{"event.create", "event.view"}

func TestStoreDownOrSlowNeverFailsARequest(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"down", "slow"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			store := newMemStore()
			if mode == "down" {
				store.fail.Store(true)
			} else {
				store.hang.Store(true)
			}
			rec := &recorder{}
			var logs testmain.Buffer
			clients, fc := fleet(t, ts, store, 1, func(cfg *Config) {
				cfg.Observer = rec
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			src := mustSource(t, clients[0], eventAudience)
			for _, scopes := range [][]string{{"event.view"}, {"event.create"}, {"event.create", "event.view"}} {
				done := make(chan error, 1)
				go func() { _, err := src.TokenContext(WithScopes(context.Background(), scopes...)); done <- err }()
				require.NoError(t, driveStore(t, fc, done), "a key fetched without the store")
			}
			assert.EqualValues(t, 3, ts.hits.Load())
			assert.Len(t, rec.of(EventStoreDown), 1, "reported once per change of state")
			assert.Equal(t, 1, countLines(logs.String(), "shared store failed"))

			store.fail.Store(false)
			store.hang.Store(false)
			_, err := mustSource(t, clients[0], Audience{Name: "file"}).TokenContext(context.Background())
			require.NoError(t, err)
			assert.Len(t, rec.of(EventStoreUp), 1)
		})
	}
}

// driveStore waits for done, moving the fake clock past StoreTimeout
// whenever a store call may be waiting on it.
func driveStore(t *testing.T, fc *clock.Fake, done <-chan error) error {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			t.Fatal("a store call was not bounded by StoreTimeout")
		case <-time.After(time.Millisecond):
			fc.Advance(DefaultStoreTimeout)
		}
	}
}

func TestStoreValuesThatCannotBeUsedAreIgnored(t *testing.T) {
	t.Parallel()
	for name, planted := range map[string]*SharedToken{
		"not bearer":        {AccessToken: "x", TokenType: "mac", Obtained: epoch, Expiry: epoch.Add(time.Hour)},
		"expired":           {AccessToken: "x", TokenType: "Bearer", Obtained: epoch.Add(-2 * time.Hour), Expiry: epoch.Add(-time.Hour)},
		"past its refresh":  {AccessToken: "x", TokenType: "Bearer", Obtained: epoch.Add(-59 * time.Minute), Expiry: epoch.Add(time.Minute)},
		"header injection":  {AccessToken: "x\r\nX-Evil: 1", TokenType: "Bearer", Obtained: epoch, Expiry: epoch.Add(time.Hour)},
		"empty":             {TokenType: "Bearer", Obtained: epoch, Expiry: epoch.Add(time.Hour)},
		"expiry before now": {AccessToken: "x", TokenType: "Bearer", Obtained: epoch, Expiry: epoch},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			store := newMemStore()
			store.plant = planted
			clients, _ := fleet(t, ts, store, 1, nil)
			tok, err := mustSource(t, clients[0], eventAudience).TokenContext(context.Background())
			require.NoError(t, err)
			assert.NotEqual(t, planted.AccessToken, tok.AccessToken)
			assert.EqualValues(t, 1, ts.hits.Load())
		})
	}
}

func TestStoreEvictionOn401(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	store := newMemStore()
	clients, _ := fleet(t, ts, store, 1, nil)
	src := mustSource(t, clients[0], eventAudience)
	tok, err := src.TokenContext(context.Background())
	require.NoError(t, err)
	e := src.full.Load()
	require.True(t, e.evict(e.state.Load()))
	store.mu.Lock()
	defer store.mu.Unlock()
	assert.Equal(t, []string{tok.AccessToken}, store.evicted)
	assert.Empty(t, store.tokens, "the fleet's copy of the rejected token is gone")
}

func TestStoreKeyShowsNoSecret(t *testing.T) {
	t.Parallel()
	k := newStoreKey("https://auth.test/token", testID, cacheKey{audience: "event", scopes: "a b"}, testSecret)
	other := newStoreKey("https://auth.test/token", testID, cacheKey{audience: "event", scopes: "a"}, testSecret)
	assert.Len(t, k.ID(), 64)
	assert.NotEqual(t, k.ID(), other.ID())
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", k, k, k, k), k.String()} {
		assert.NotContains(t, s, testSecret)
		assert.Equal(t, k.ID(), s[:64])
	}
	b, err := json.Marshal(&SharedToken{AccessToken: "secret-token", TokenType: "Bearer"})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "secret-token")
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v", &SharedToken{AccessToken: "secret-token"}, &SharedToken{AccessToken: "secret-token"}, &SharedToken{AccessToken: "secret-token"}), "secret-token")
	// Values, slices and dereferenced pointers too.
	tok := SharedToken{AccessToken: "secret-token", TokenType: "Bearer"}
	ptr := &SharedToken{AccessToken: "secret-token"}
	many := []SharedToken{tok, *ptr}
	b, err = json.Marshal(many)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "secret-token")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "tok", tok, "many", many)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "tok", tok)
	assert.NotContains(t, logged.String(), "secret-token")
	var none *SharedToken // what a Load that found nothing returns
	logged.Reset()
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "tok", none)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "tok", none)
	assert.NotContains(t, logged.String(), "panic")
	assert.Equal(t, 2, strings.Count(logged.String(), "<nil>"))
	assert.Equal(t, "<nil>", fmt.Sprint(none))
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v %s", tok, many, tok, many), "secret-token")
	// A StoreKey in an unexported field (where fmt cannot call Format)
	// shows an address, not its material.
	nested := fmt.Sprintf("%+v %#v", struct{ key StoreKey }{k}, struct{ key StoreKey }{k})
	assert.NotContains(t, nested, fmt.Sprint(k.secret[:4]))
	assert.NotContains(t, nested, fmt.Sprintf("%x", k.secret[:4]))
	a, err := k.DeriveKey("ctx-a", 32)
	require.NoError(t, err)
	b2, err := k.DeriveKey("ctx-b", 32)
	require.NoError(t, err)
	assert.NotEqual(t, a, b2, "another context, another key")
	k2 := newStoreKey("https://auth.test/token", testID, cacheKey{audience: "event", scopes: "a b"}, "other secret")
	c, err := k2.DeriveKey("ctx-a", 32)
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "another secret, another key")
}

func countLines(text, sub string) int { return strings.Count(text, sub) }
