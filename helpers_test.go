package m2m

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testmain.Run(m) }

const (
	testID     = "task-service"
	testSecret = "s3cr3t:with%odd chars+ü"
)

// tokenServer is an httptest token endpoint that counts requests, checks
// the client's credentials and can hold requests until released.
type tokenServer struct {
	*httptest.Server
	hits atomic.Int64

	mu        sync.Mutex
	expiresIn any                                               // the expires_in value sent
	hold      chan struct{}                                     // if set, requests wait for it to close
	arrived   chan struct{}                                     // if set, gets a value when a request arrives
	forms     []url.Values                                      // every request's body parameters
	reply     func(w http.ResponseWriter, r *http.Request) bool // optional override
}

func newTokenServer(t *testing.T) *tokenServer {
	t.Helper()
	ts := &tokenServer{expiresIn: 3600}
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	n := ts.hits.Add(1)
	ts.mu.Lock()
	hold, arrived, reply, exp := ts.hold, ts.arrived, ts.reply, ts.expiresIn
	ts.mu.Unlock()
	if arrived != nil {
		arrived <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if reply != nil && reply(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ts.mu.Lock()
	ts.forms = append(ts.forms, r.PostForm)
	ts.mu.Unlock()
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testID || secret != testSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"Client authentication failed"}`)
		return
	}
	scope := r.PostForm.Get("scope")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": fmt.Sprintf("tok-%d-%s-%s", n, r.PostForm.Get("audience"), strings.ReplaceAll(scope, " ", "+")),
		"expires_in":   exp,
		"scope":        scope,
		"token_type":   "bearer",
		"status":       "OK",
	})
}

func (ts *tokenServer) set(f func(ts *tokenServer)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(ts)
}

func (ts *tokenServer) form(i int) url.Values {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.forms[i]
}

// noJitter is a jitter source that always draws 0.
func noJitter() float64 { return 0 }

var epoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// newTestClient returns a Client for ts with a fake clock and no jitter.
func newTestClient(t *testing.T, ts *tokenServer, mod func(*Config)) (*Client, *clock.Fake) {
	t.Helper()
	return newTestClientRand(t, ts, noJitter, mod)
}

// newTestClientRand is newTestClient with the jitter source rnd.
func newTestClientRand(t *testing.T, ts *tokenServer, rnd func() float64, mod func(*Config)) (*Client, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(epoch)
	cfg := Config{TokenURL: ts.URL + "/auth/oauth/token", ClientID: testID, ClientSecret: testSecret}
	if mod != nil {
		mod(&cfg)
	}
	c, err := newClient(cfg, fc, rnd)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, fc
}

func mustSource(t *testing.T, c *Client, a Audience) *TokenSource {
	t.Helper()
	s, err := c.Source(a)
	require.NoError(t, err)
	return s
}

var eventAudience = Audience{Name: "event", Scopes: []string{"event.view", "event.create"}}
