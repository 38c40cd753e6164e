package m2m_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m"
	"golang.org/x/oauth2"
)

// newAuthServer starts a token endpoint that issues "token-for-<audience>:<scopes>".
func newAuthServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "task-service" || secret != "task-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": "token-for-" + r.PostForm.Get("audience") + ":" + strings.ReplaceAll(r.PostForm.Get("scope"), " ", ","),
			"expires_in":   3600,
			"token_type":   "bearer",
		})
	}))
}

// newService starts a service that answers with the Authorization header it got.
func newService() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s: %s", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}))
}

func call(hc *http.Client, ctx context.Context, method, url string) string {
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A Task Service calls a Calendar Service and a File Service, each with a
// token for its own audience, through one http.Client.
func ExampleNewTransport() {
	auth, calendar, files := newAuthServer(), newService(), newService()
	defer auth.Close()
	defer calendar.Close()
	defer files.Close()

	c, err := m2m.New(m2m.Config{TokenURL: auth.URL + "/auth/oauth/token", ClientID: "task-service", ClientSecret: "task-secret"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cal, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: calendar.URL})
	if err != nil {
		log.Fatal(err)
	}
	fil, err := c.Source(m2m.Audience{Name: "file", Scopes: []string{"file.view"}, URL: files.URL + "/api/"})
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: m2m.NewTransport(nil, cal, fil)}

	ctx := context.Background()
	fmt.Println(call(hc, ctx, "GET", calendar.URL+"/events"))
	fmt.Println(call(hc, ctx, "GET", files.URL+"/api/files"))
	fmt.Println(call(hc, ctx, "GET", files.URL+"/public")) // outside the audience's URL: no token
	// Output:
	// GET /events: Bearer token-for-event:event.create,event.view
	// GET /api/files: Bearer token-for-file:file.view
	// GET /public:
}

// WithScopes narrows one request's token to the scopes it needs.
func ExampleWithScopes() {
	auth, calendar := newAuthServer(), newService()
	defer auth.Close()
	defer calendar.Close()

	c, _ := m2m.New(m2m.Config{TokenURL: auth.URL + "/auth/oauth/token", ClientID: "task-service", ClientSecret: "task-secret"})
	defer c.Close()
	cal, _ := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: calendar.URL})
	hc := &http.Client{Transport: m2m.NewTransport(nil, cal)}

	ctx := m2m.WithScopes(context.Background(), "event.create")
	fmt.Println(call(hc, ctx, "POST", calendar.URL+"/events"))
	_, err := cal.TokenContext(m2m.WithScopes(context.Background(), "event.delete"))
	fmt.Println(err)
	// Output:
	// POST /events: Bearer token-for-event:event.create
	// m2m: scope not declared for audience: "event.delete" is not among the scopes of audience "event"
}

// A TokenSource is an oauth2.TokenSource, so it fits code written for
// golang.org/x/oauth2.
func ExampleTokenSource_Token() {
	auth := newAuthServer()
	defer auth.Close()

	c, _ := m2m.New(m2m.Config{TokenURL: auth.URL + "/auth/oauth/token", ClientID: "task-service", ClientSecret: "task-secret"})
	defer c.Close()
	files, _ := c.Source(m2m.Audience{Name: "file", Scopes: []string{"file.view"}})

	var ts oauth2.TokenSource = files
	tok, err := ts.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), tok.AccessToken, tok.Valid())
	// Output: Bearer token-for-file:file.view true
}

// A callee that speaks another protocol than HTTP refused a token: Evict
// drops it, as Transport does for a 401, so the retry gets a new one.
// Refusals of that new token too call for PauseEvictions instead.
func ExampleTokenSource_Evict() {
	var issued atomic.Int32
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"token-%d","token_type":"Bearer","expires_in":3600}`, issued.Add(1))
	}))
	defer auth.Close()
	client, err := m2m.New(m2m.Config{TokenURL: auth.URL, ClientID: "task-service", ClientSecret: "task-secret"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	events, _ := client.Source(m2m.Audience{Name: "event"})
	ctx := context.Background()

	tok, _ := events.TokenContext(ctx)
	fmt.Println("sent:", tok.AccessToken)
	// ... the callee answers "unauthenticated" ...
	if events.Evict(ctx, tok) {
		tok, _ = events.TokenContext(ctx)
		fmt.Println("sent again:", tok.AccessToken)
	}
	// Output:
	// sent: token-1
	// sent again: token-2
}

// Errors from the token endpoint are *m2m.TokenError values.
func ExampleTokenError() {
	auth := newAuthServer()
	defer auth.Close()

	c, _ := m2m.New(m2m.Config{TokenURL: auth.URL + "/auth/oauth/token", ClientID: "task-service", ClientSecret: "wrong"})
	defer c.Close()
	files, _ := c.Source(m2m.Audience{Name: "file", Scopes: []string{"file.view"}})
	_, err := files.TokenContext(context.Background())
	fmt.Println(err)
	// Output: m2m: token endpoint answered 401 invalid_client for audience "file"
}

// A server that selects the audience by an RFC 8707 resource indicator,
// rather than an audience parameter: each Audience names its Resource,
// and the two never share a token.
func ExampleAudience_resource() {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		_, sentAudience := r.PostForm["audience"]
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("token-for-%s-audience-param-%t", r.PostForm.Get("resource"), sentAudience),
			"expires_in":   3600,
			"token_type":   "bearer",
		})
	}))
	defer auth.Close()

	c, err := m2m.New(m2m.Config{TokenURL: auth.URL, ClientID: "task-service", ClientSecret: "task-secret"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, a := range []m2m.Audience{
		{Name: "calendar", Resource: "https://calendar.example/", OmitAudienceParam: true},
		{Name: "files", Resource: "https://files.example/", OmitAudienceParam: true},
	} {
		src, err := c.Source(a)
		if err != nil {
			log.Fatal(err)
		}
		tok, err := src.TokenContext(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(a.Name, tok.AccessToken)
	}
	// Output:
	// calendar token-for-https://calendar.example/-audience-param-false
	// files token-for-https://files.example/-audience-param-false
}

// During an outage, callers without a token get the last failure at once,
// with the time of the next try, instead of each starting a request.
func ExampleBackoffError() {
	var requests int
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer auth.Close()

	c, err := m2m.New(m2m.Config{TokenURL: auth.URL, ClientID: "task-service", ClientSecret: "task-secret",
		MaxRetries: -1, RetryBaseDelay: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	src, err := c.Source(m2m.Audience{Name: "event"})
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		_, err := src.TokenContext(context.Background())
		var be *m2m.BackoffError
		var te *m2m.TokenError
		fmt.Println(errors.As(err, &be), errors.As(err, &te) && te.StatusCode == http.StatusServiceUnavailable)
	}
	fmt.Println("token requests:", requests)
	// Output:
	// false true
	// true true
	// true true
	// token requests: 1
}
