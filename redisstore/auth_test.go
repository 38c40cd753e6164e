package redisstore

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fleetAuth is the fleet tests' authorization server and callee in one
// httptest server: POST /token issues opaque tokens living exactly
// lifetime to registered clients and records when each client asked;
// GET /work is the callee, which accepts only a token it issued that has
// not expired (give or take leeway, as a JWT verifier's).
type fleetAuth struct {
	srv      *httptest.Server
	lifetime time.Duration
	leeway   time.Duration

	mu       sync.Mutex
	secrets  map[string]string      // client id → secret
	tokens   map[string]issuedToken // access token → who and until when
	asked    map[string][]time.Time // client id → token request times
	accepted map[string]int         // client id → callee requests accepted
	rejected map[string]int         // client id → callee requests rejected
	borrowed map[string]int         // replica → callee requests with a token another replica fetched
}

type issuedToken struct {
	client, fetchedBy string // client id; replicaHeader of the token request
	expiry            time.Time
}

func newFleetAuth(t testing.TB, lifetime time.Duration) *fleetAuth {
	a := &fleetAuth{lifetime: lifetime, leeway: time.Second,
		secrets: map[string]string{}, tokens: map[string]issuedToken{},
		asked: map[string][]time.Time{}, accepted: map[string]int{}, rejected: map[string]int{}, borrowed: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", a.token)
	mux.HandleFunc("GET /work", a.work)
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// register adds a client and returns a replica configuration for it.
func (a *fleetAuth) register(id string) replicaConfig {
	secret := randomString()
	a.mu.Lock()
	a.secrets[id] = secret
	a.mu.Unlock()
	return replicaConfig{TokenURL: a.srv.URL + "/token", ClientID: id, ClientSecret: secret, CalleeURL: a.srv.URL}
}

func (a *fleetAuth) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok || secret == "" || a.secrets[id] != secret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	now := time.Now()
	a.asked[id] = append(a.asked[id], now)
	tok := randomString()
	a.tokens[tok] = issuedToken{client: id, fetchedBy: r.Header.Get(replicaHeader), expiry: now.Add(a.lifetime)}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": int(a.lifetime / time.Second)})
}

func (a *fleetAuth) work(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	issued, known := a.tokens[tok]
	valid := ok && known && time.Now().Before(issued.expiry.Add(a.leeway))
	if valid {
		a.accepted[issued.client]++
		if user := r.Header.Get(replicaHeader); user != issued.fetchedBy {
			a.borrowed[user]++
		}
	} else if known {
		a.rejected[issued.client]++
	} else {
		a.rejected[""]++
	}
	a.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// tokenRequests returns how many tokens client asked for in [from, to).
func (a *fleetAuth) tokenRequests(client string, from, to time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, at := range a.asked[client] {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// calls returns the callee's accepted and rejected requests of client.
func (a *fleetAuth) calls(client string) (accepted, rejected int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted[client], a.rejected[client]
}

// borrowedBy returns how many accepted callee requests of replica carried
// a token another replica had fetched.
func (a *fleetAuth) borrowedBy(replica string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.borrowed[replica]
}

// unknownTokens returns how many callee requests carried no token this
// server issued.
func (a *fleetAuth) unknownTokens() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rejected[""]
}

func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
