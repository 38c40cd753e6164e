package m2m

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sourceAt is an audience URL and the source whose token goes there.
type sourceAt struct {
	raw string
	src *TokenSource
}

// testRoutes returns the routes of audience URLs, longest prefix first,
// each checked as New checks it.
func testRoutes(t *testing.T, at []sourceAt) []route {
	t.Helper()
	var routes []route
	for _, a := range at {
		u, err := url.Parse(a.raw)
		require.NoError(t, err)
		require.NoError(t, checkRoutePath(u))
		r := newRoute(u)
		r.src = a.src
		routes = append(routes, r)
	}
	return routes
}

func TestRouteMatchesEscapedPath(t *testing.T) {
	t.Parallel()
	api := &TokenSource{}
	pub := &TokenSource{}
	routes := testRoutes(t, []sourceAt{{"https://files.test/api/", api}, {"https://files.test/", pub}})
	tests := []struct {
		path string
		want *TokenSource // nil: no token at all
	}{
		{"/api/x", api},
		{"/api", api},
		{"/apix", pub},
		{"/public/x", pub},
		{"/api/a%2Fb", api},              // one segment "a/b" inside /api
		{"/public/..%2F..%2Fapi/x", nil}, // escaped: under /public; decoded: /api/x
		{"/api/..%2F..%2Fpublic", nil},   // escaped: under /api; decoded: /public
		{"/public/%2e%2e/api/x", nil},    // %2e is a dot to some servers (RFC 3986 §6.2.2.2), a name to others
		{"/api/%2E%2E/public", nil},      // likewise
		{"/api/../public", pub},          // dot segments resolve
		{"/public/./../api/x", api},      // likewise
		{"/public//../api/x", nil},       // RFC: /public/api/x; merged: /api/x
		{"/api//x", api},                 // both readings stay in /api
		{"/%61pi/x", nil},                // %61 is "a" once decoded, "%61pi" before
		{"/api/%7Ex", api},               // every reading stays in /api
		{"/api%2Fx", nil},                // escaped: one segment under /; decoded: /api/x
		{"/api/..;/x", nil},              // servlet containers drop ";" parameters: /x
		{"/public/..;/api/x", nil},       // likewise: /api/x
		{"/api/items;v=2", api},          // every reading stays in /api
		{"/api/..%5Cx", nil},             // a backslash is a separator to some servers: /x
		{"/api/%252e%252e/x", nil},       // decoded twice: /x
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse("https://files.test" + tc.path)
			require.NoError(t, err)
			got := routeOf(routes, u)
			name := map[*TokenSource]string{api: "api", pub: "public", nil: "none"}
			assert.Equal(t, name[tc.want], name[got])
		})
	}
}

func TestRouteWithEscapedPrefix(t *testing.T) {
	t.Parallel()
	ab, pub := &TokenSource{}, &TokenSource{}
	routes := testRoutes(t, []sourceAt{{"https://files.test/a%2Fb/", ab}, {"https://files.test/", pub}})
	name := map[*TokenSource]string{ab: "a%2Fb", pub: "public", nil: "none"}
	for path, want := range map[string]*TokenSource{
		"/a%2Fb/x":         ab,
		"/a%2fb":           ab,  // hex case does not matter
		"/a/b/x":           pub, // two segments: not the one-segment prefix
		"/a%2Fb/..%2Fc":    nil, // escaped: under a%2Fb; decoded: /a/c
		"/a%2Fb/%2e%2e/x":  nil, // "%2e%2e" is a name to some servers, ".." to others
		"/a%2Fbc/x":        pub,
		"/a%2Fb/x%20y/../": ab,
	} {
		u, err := url.Parse("https://files.test" + path)
		require.NoError(t, err)
		assert.Equal(t, name[want], name[routeOf(routes, u)], path)
	}
}

// Two audiences that are one place to a server that decodes before it
// routes get no token on the path where they meet; an opaque URL (sent as
// it is, whatever URL.Host and URL.Path say) gets none; a trailing dot
// names another host.
func TestRouteRefusesWhatServersReadAnotherWay(t *testing.T) {
	t.Parallel()
	ab, ab2 := &TokenSource{}, &TokenSource{}
	routes := testRoutes(t, []sourceAt{{"https://files.test/a%2Fb/", ab}, {"https://files.test/a/b/", ab2}})
	name := map[*TokenSource]string{ab: "a%2Fb", ab2: "a/b", nil: "none"}
	for raw, want := range map[string]*TokenSource{
		"https://files.test/a%2Fb/x":  nil, // decoded, it is /a/b/x: both audiences
		"https://files.test/a/b/x":    ab2,
		"https://files.test./a/b/x":   nil,
		"https://FILES.TEST/a/b/x":    ab2,
		"https://files.test:443/a/b/": ab2,
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		assert.Equal(t, name[want], name[routeOf(routes, u)], raw)
	}
	req := httptest.NewRequest(http.MethodGet, "https://files.test/a/b/x", nil)
	require.Equal(t, ab2, requestRoute(routes, req))
	req.URL.Opaque = "//evil.test/a/b/x"
	assert.Nil(t, requestRoute(routes, req), "an opaque URL is not matched")
}

func TestNoTokenWhenHostHeaderNamesAnotherHost(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	var saw atomic.Value
	api := echoServer(t, func(w http.ResponseWriter, r *http.Request) { saw.Store(r.Header.Get("Authorization")) })
	hc := &http.Client{Transport: NewTransport(nil, mustSource(t, c, Audience{Name: "event", URL: api.URL}))}
	u, _ := url.Parse(api.URL)
	for host, wantToken := range map[string]bool{
		"":                              true,
		u.Host:                          true,
		strings.ToUpper(u.Host):         true,
		"127.0.0.1." + ":" + u.Port():   false, // an absolute name, not the address
		"other.test":                    false,
		"other.test:" + u.Port():        false,
		u.Hostname() + ":1":             false,
		"calendar.internal:" + u.Port(): false,
	} {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/x", nil)
		req.Host = host
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, wantToken, strings.HasPrefix(saw.Load().(string), "Bearer "), "Host %q", host)
	}
}

func TestRedirectIntoAudienceFromOutsideCarriesNoToken(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	var saw atomic.Value
	api := echoServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/inside-to-inside" {
			http.Redirect(w, r, "/api/final", http.StatusTemporaryRedirect)
			return
		}
		saw.Store(r.Header.Get("Authorization"))
	})
	webhook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, api.URL+"/api/final", http.StatusTemporaryRedirect)
	}))
	defer webhook.Close()
	hc := &http.Client{Transport: NewTransport(nil, mustSource(t, c, Audience{Name: "event", URL: api.URL + "/api"}))}

	get(t, hc, context.Background(), webhook.URL+"/hook")
	assert.Equal(t, "", saw.Load(), "a chain that began outside the audience gets no token")
	get(t, hc, context.Background(), api.URL+"/api/inside-to-inside")
	assert.True(t, strings.HasPrefix(saw.Load().(string), "Bearer "), "a chain inside the audience keeps its token")
	assert.EqualValues(t, 1, ts.hits.Load())
}

func TestLoopbackMeansLiteralLoopback(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:9/token":       true,
		"http://[::1]:9/token":           true,
		"http://localhost:9/token":       true,
		"http://auth.localhost:9/token":  false,
		"http://127.0.0.1.nip.io/token":  false,
		"https://auth.localhost:9/token": true,
	} {
		_, err := New(Config{TokenURL: raw, ClientID: "id", ClientSecret: "s"})
		assert.Equal(t, ok, err == nil, "%s: %v", raw, err)
	}
}
