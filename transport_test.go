package m2m

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoServer answers each request with the Authorization header it got.
func echoServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("Authorization")) }
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, hc *http.Client, ctx context.Context, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTransportRoutesByURL(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	calendar := echoServer(t, nil)
	files := echoServer(t, nil)
	cal := mustSource(t, c, Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: calendar.URL})
	fil := mustSource(t, c, Audience{Name: "file", Scopes: []string{"file.view"}, URL: files.URL + "/api/"})
	admin := mustSource(t, c, Audience{Name: "admin", Scopes: []string{"admin"}, URL: files.URL + "/api/admin"})
	hc := &http.Client{Transport: NewTransport(nil, cal, fil, admin)}
	ctx := context.Background()

	_, got := get(t, hc, ctx, calendar.URL+"/events")
	assert.Equal(t, "Bearer tok-1-event-event.create+event.view", got)
	_, got = get(t, hc, WithScopes(ctx, "event.create"), calendar.URL+"/events")
	assert.Equal(t, "Bearer tok-2-event-event.create", got)
	_, got = get(t, hc, ctx, files.URL+"/api/list")
	assert.Equal(t, "Bearer tok-3-file-file.view", got)
	_, got = get(t, hc, ctx, files.URL+"/api")
	assert.Equal(t, "Bearer tok-3-file-file.view", got)
	_, got = get(t, hc, ctx, files.URL+"/api/admin/users")
	assert.Equal(t, "Bearer tok-4-admin-admin", got, "longest prefix wins")

	for _, outside := range []string{
		files.URL + "/",
		files.URL + "/apix",
		files.URL + "/api/../secret",
		files.URL + "/api/%2e%2e/secret",
		strings.Replace(files.URL, "127.0.0.1", "localhost", 1) + "/api/list", // another host name
	} {
		_, got = get(t, hc, ctx, outside)
		assert.Empty(t, got, outside)
	}
	get(t, hc, ctx, calendar.URL+"/x")
	assert.EqualValues(t, 4, ts.hits.Load(), "requests outside every audience fetch no token")

	// An undeclared scope fails before any network call.
	req, _ := http.NewRequestWithContext(WithScopes(ctx, "file.delete"), http.MethodGet, files.URL+"/api/x", nil)
	_, err := hc.Do(req)
	require.ErrorIs(t, err, ErrUndeclaredScope)
}

func TestTransportLeavesCallerAuthorizationAndRequestAlone(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	api := echoServer(t, nil)
	tr := NewTransport(nil, mustSource(t, c, Audience{Name: "event", URL: api.URL}))

	req, _ := http.NewRequest(http.MethodGet, api.URL, nil)
	req.Header.Set("X-Trace", "1")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, req.Header.Get("Authorization"), "the caller's request is not modified")
	assert.Len(t, req.Header, 1)

	req.Header.Set("Authorization", "Basic mine")
	resp, err = tr.RoundTrip(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "Basic mine", string(b))
}

func TestRedirectsNeverCarryTokenOutside(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	var foreignSaw atomic.Value
	foreignSaw.Store("unset")
	foreign := echoServer(t, func(w http.ResponseWriter, r *http.Request) { foreignSaw.Store(r.Header.Get("Authorization")) })
	var sawInside, sawOutside atomic.Value
	api := echoServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/to-foreign":
			// Inside the audience's path, on another port of the same
			// host: only the origin check keeps the token back.
			http.Redirect(w, r, foreign.URL+"/api/steal", http.StatusTemporaryRedirect)
		case "/api/to-outside":
			http.Redirect(w, r, "/public", http.StatusFound)
		case "/api/to-inside":
			http.Redirect(w, r, "/api/final", http.StatusFound)
		case "/public":
			sawOutside.Store(r.Header.Get("Authorization"))
		case "/api/final":
			sawInside.Store(r.Header.Get("Authorization"))
		}
	})
	hc := &http.Client{Transport: NewTransport(nil, mustSource(t, c, Audience{Name: "event", URL: api.URL + "/api"}))}
	ctx := context.Background()

	status, _ := get(t, hc, ctx, api.URL+"/api/to-foreign")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "", foreignSaw.Load(), "a redirect to another host carries no token")
	get(t, hc, ctx, api.URL+"/api/to-outside")
	assert.Equal(t, "", sawOutside.Load(), "a redirect outside the path prefix carries no token")
	get(t, hc, ctx, api.URL+"/api/to-inside")
	assert.True(t, strings.HasPrefix(sawInside.Load().(string), "Bearer tok-"))
}

// trackingBody records whether it was closed.
type trackingBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackingBody) Close() error { b.closed.Store(true); return nil }

func TestTransportErrorsCloseBody(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.ClientSecret = "wrong" })
	api := echoServer(t, nil)
	good := mustSource(t, c, Audience{Name: "event", URL: api.URL})
	noURL := mustSource(t, c, Audience{Name: "file"})
	dup := mustSource(t, c, Audience{Name: "other", URL: api.URL + "/"})

	tests := []struct {
		name string
		tr   *Transport
		want string
	}{
		{"token fetch fails", NewTransport(nil, good), "invalid_client"},
		{"nil source", NewTransport(nil, good, nil), "source 1 is nil"},
		{"source without URL", NewTransport(nil, noURL), "has no URL"},
		{"two audiences one URL", NewTransport(nil, good, dup), "both claim"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := &trackingBody{Reader: strings.NewReader("payload")}
			req, _ := http.NewRequest(http.MethodPost, api.URL+"/x", body)
			resp, err := tc.tr.RoundTrip(req)
			require.Error(t, err)
			assert.Nil(t, resp)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, body.closed.Load(), "the body is closed on every error path")
		})
	}
}

func TestTransportPortAndScheme(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, Audience{Name: "event", URL: "https://calendar.test", ExtraURLs: []string{"http://127.0.0.1:8080/v1"}})
	tr := NewTransport(nil, src)
	for u, want := range map[string]bool{
		"https://calendar.test/x":      true,
		"https://CALENDAR.test/x":      true,
		"https://calendar.test./x":     false, // an absolute name: not what a search domain makes of "calendar.test"
		"https://calendar.test:443/x":  true,
		"https://calendar.test:8443/x": false,
		"http://calendar.test/x":       false,
		"http://127.0.0.1:8080/v1/a":   true,
		"http://127.0.0.1:8081/v1/a":   false,
		"http://127.0.0.1:8080/v2":     false,
	} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		assert.Equal(t, want, requestRoute(tr.routes, req) != nil, u)
	}
	assert.Contains(t, tr.String(), `calendar.test:443/ → "event"`)
}

func TestTransportHotPathAllocations(t *testing.T) {
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	src := mustSource(t, c, Audience{Name: "event", URL: "https://calendar.test"})
	ok := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return ok, nil })
	tr := NewTransport(base, src)
	req, _ := http.NewRequest(http.MethodGet, "https://calendar.test/events", nil)
	req.Header.Set("Accept", "application/json")
	_, err := tr.RoundTrip(req)
	require.NoError(t, err)
	// The request copy and its header map (two allocations for a small map):
	// what the RoundTripper contract forces.
	assert.LessOrEqual(t, testing.AllocsPerRun(100, func() { tr.RoundTrip(req) }), 3.0)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
