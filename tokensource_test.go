package m2m

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

var _ oauth2.TokenSource = (*TokenSource)(nil)

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	good := Config{TokenURL: "https://auth.test/auth/oauth/token", ClientID: "id", ClientSecret: "secret"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; empty means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"loopback http", func(c *Config) { c.TokenURL = "http://127.0.0.1:3567/auth/oauth/token" }, ""},
		{"insecure allowed", func(c *Config) { c.TokenURL = "http://auth.test/t"; c.AllowInsecureHTTP = true }, ""},
		{"no token url", func(c *Config) { c.TokenURL = "" }, "TokenURL (or Issuer, to discover it) is required"},
		{"plain http", func(c *Config) { c.TokenURL = "http://auth.test/t" }, "plain http"},
		{"relative url", func(c *Config) { c.TokenURL = "/oauth/token" }, "absolute"},
		{"credentials in url", func(c *Config) { c.TokenURL = "https://u:hunter2@auth.test/t" }, "must not hold credentials"},
		{"credentials in a url that does not parse", func(c *Config) { c.TokenURL = "https://u:hunter2%@auth.test/t" }, `"https://…@auth.test/t" does not parse`},
		{"credentials in an issuer that does not parse", func(c *Config) { c.TokenURL, c.Issuer = "", "https://u:hunter2%@auth.test" }, "does not parse"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "ClientID is required"},
		{"control char id", func(c *Config) { c.ClientID = "a\nb" }, "ClientID holds control"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret is required"},
		{"control char secret", func(c *Config) { c.ClientSecret = "a\x00b" }, "ClientSecret holds control"},
		{"bad auth style", func(c *Config) { c.AuthStyle = 7 }, "AuthStyle 7"},
		{"bad encoding", func(c *Config) { c.Encoding = 9 }, "Encoding 9"},
		{"fraction 1", func(c *Config) { c.RefreshFraction = 1 }, "RefreshFraction"},
		{"fraction negative", func(c *Config) { c.RefreshFraction = -0.1 }, "RefreshFraction"},
		{"jitter above 1", func(c *Config) { c.RefreshJitter = 1.5 }, "RefreshJitter"},
		{"negative timeout", func(c *Config) { c.FetchTimeout = -time.Second }, "negative"},
		{"reserved param", func(c *Config) { c.EndpointParams = url.Values{"scope": {"x"}} }, `"scope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tc.mod(&cfg)
			c, err := New(cfg)
			if tc.want == "" {
				require.NoError(t, err)
				require.NoError(t, c.Close())
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "hunter2")
			assert.NotContains(t, err.Error(), "secret\"")
		})
	}
}

func TestSourceChecksAudience(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	tests := []struct {
		name string
		a    Audience
		want string
	}{
		{"minimal", Audience{Name: "event"}, ""},
		{"no name", Audience{Scopes: []string{"x"}}, ""},
		{"with urls", Audience{Name: "file", URL: "https://files.test/api/", ExtraURLs: []string{"http://127.0.0.1:9/api"}}, ""},
		{"space in name", Audience{Name: "event file"}, "white space"},
		{"empty scope", Audience{Name: "e", Scopes: []string{""}}, "not a valid scope"},
		{"scope with space", Audience{Name: "e", Scopes: []string{"a b"}}, "not a valid scope"},
		{"scope with quote", Audience{Name: "e", Scopes: []string{`a"`}}, "not a valid scope"},
		{"http url", Audience{Name: "e", URL: "http://calendar.test"}, "plain http"},
		{"url with query", Audience{Name: "e", URL: "https://calendar.test/?a=1"}, "query"},
		{"empty extra base", Audience{Name: "e", ExtraURLs: []string{"https://x.test"}}, "URL is empty"},
		{"escaped separator", Audience{Name: "e", URL: "https://x.test/a%2Fb/"}, ""},
		{"escaped space", Audience{Name: "e", URL: "https://x.test/my%20files"}, ""},
		{"dot segment", Audience{Name: "e", URL: "https://x.test/."}, `write it as "/"`},
		{"dot-dot segment", Audience{Name: "e", URL: "https://x.test/api/../admin"}, `write it as "/admin"`},
		{"encoded dot-dot", Audience{Name: "e", URL: "https://x.test/api/%2e%2e/admin"}, `write it as "/admin"`},
		{"empty segment", Audience{Name: "e", URL: "https://x.test//api"}, `write it as "/api"`},
		{"escaped letter", Audience{Name: "e", URL: "https://x.test/%61pi"}, `write it as "/api"`},
		{"decodes to dot-dot", Audience{Name: "e", URL: "https://x.test/a%2F..%2Fb"}, "dot or empty segments"},
		{"path parameter", Audience{Name: "e", URL: "https://x.test/api;v=1/"}, "';' or '\\'"},
		{"escaped backslash", Audience{Name: "e", URL: "https://x.test/a%5Cb"}, "';' or '\\'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := c.Source(tc.a)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.a.Name, s.Audience().Name)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestWireDefaultsAndOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mod   func(*Config)
		check func(t *testing.T, r *http.Request, body []byte)
	}{
		{"form and basic by default", nil, func(t *testing.T, r *http.Request, body []byte) {
			assert.Equal(t, "application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
			id, secret, ok := r.BasicAuth()
			require.True(t, ok)
			assert.Equal(t, url.QueryEscape(testID), id)
			assert.Equal(t, url.QueryEscape(testSecret), secret)
			form, _ := url.ParseQuery(string(body))
			assert.Equal(t, "client_credentials", form.Get("grant_type"))
			assert.Equal(t, "event.create event.view", form.Get("scope"))
			assert.Equal(t, "event", form.Get("audience"))
			assert.Equal(t, "t1", form.Get("tenant"))
			assert.Empty(t, form.Get("client_secret"))
		}},
		{"json in body", func(c *Config) { c.Encoding = EncodingJSON; c.AuthStyle = AuthStyleInBody }, func(t *testing.T, r *http.Request, body []byte) {
			assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
			assert.Empty(t, r.Header.Get("Authorization"))
			var m map[string]string // every value a string, never an array
			require.NoError(t, json.Unmarshal(body, &m))
			assert.Equal(t, "event.create event.view", m["scope"])
			assert.Equal(t, testSecret, m["client_secret"])
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			ts.set(func(ts *tokenServer) {
				ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
					var buf bytes.Buffer
					buf.ReadFrom(r.Body)
					tc.check(t, r, buf.Bytes())
					fmt.Fprint(w, `{"access_token":"x","expires_in":60}`)
					return true
				}
			})
			c, _ := newTestClient(t, ts, func(cfg *Config) {
				cfg.EndpointParams = url.Values{"tenant": {"t1"}}
				if tc.mod != nil {
					tc.mod(cfg)
				}
			})
			_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
			require.NoError(t, err)
		})
	}
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	hydraMismatch := `{"error":"invalid_client","error_description":"Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method). The OAuth 2.0 Client supports client authentication method 'client_secret_post', but method 'client_secret_basic' was requested. You must configure the OAuth 2.0 client's 'token_endpoint_auth_method' value to accept 'client_secret_basic'."}`
	tests := []struct {
		name    string
		status  int
		body    string
		mod     func(*Config)
		code    string
		hint    string
		inError string
	}{
		{name: "auth method mismatch", status: 401, body: hydraMismatch, code: "invalid_client", hint: "AuthStyleInBody"},
		{name: "basic wanted", status: 401, body: strings.ReplaceAll(hydraMismatch, "supports client authentication method 'client_secret_post'", "supports client authentication method 'client_secret_basic'"),
			mod: func(c *Config) { c.AuthStyle = AuthStyleInBody }, code: "invalid_client", hint: "AuthStyleBasic"},
		{name: "json to form-only server", status: 400, body: `{"error":"invalid_request","error_description":"The POST body can not be empty."}`,
			mod: func(c *Config) { c.Encoding = EncodingJSON }, code: "invalid_request", hint: "EncodingForm"},
		{name: "invalid scope", status: 400, body: `{"error":"invalid_scope","error_description":"The requested scope is invalid"}`, code: "invalid_scope", inError: "requested scope is invalid"},
		{name: "html 502", status: 502, body: "<html>\n<h1>Bad Gateway</h1></html>", inError: "<html> <h1>Bad Gateway"},
		{name: "echoed secret is scrubbed", status: 400, body: `{"error":"invalid_request","error_description":"bad secret ` + testSecret + `"}`, code: "invalid_request", inError: "[REDACTED]"},
		{name: "redirect", status: 302, body: "", hint: "set TokenURL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			ts.set(func(ts *tokenServer) {
				ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
					if tc.status == 302 {
						w.Header().Set("Location", "https://elsewhere.test/token")
					}
					w.WriteHeader(tc.status)
					fmt.Fprint(w, tc.body)
					return true
				}
			})
			c, _ := newTestClient(t, ts, tc.mod)
			_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
			var te *TokenError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tc.status, te.StatusCode)
			assert.Equal(t, tc.code, te.ErrorCode)
			assert.Equal(t, "event", te.Audience)
			assert.Contains(t, te.Hint, tc.hint)
			assert.Contains(t, err.Error(), tc.inError)
			assert.NotContains(t, err.Error(), testSecret)
			assert.NotContains(t, string(te.Body), testSecret)
		})
	}
}

func TestInvalidResponseIsTyped(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
			fmt.Fprint(w, `{"token_type":"bearer"}`)
			return true
		}
	})
	c, _ := newTestClient(t, ts, nil)
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	require.ErrorIs(t, err, ErrInvalidResponse)
	assert.Contains(t, err.Error(), `audience "event"`)
}

func TestOversizedBodyIsRefused(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
			fmt.Fprintf(w, `{"access_token":"%s"}`, strings.Repeat("a", 2<<20))
			return true
		}
	})
	c, _ := newTestClient(t, ts, nil)
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	require.ErrorIs(t, err, ErrInvalidResponse)
	assert.Contains(t, err.Error(), "larger than")
}

func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.Logger = logger })
	src := mustSource(t, c, eventAudience)
	tok, err := src.TokenContext(context.Background())
	require.NoError(t, err)

	cfg := Config{TokenURL: ts.URL, ClientID: testID, ClientSecret: testSecret}
	type wrapper struct{ Cfg Config }
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, v := range []any{cfg, &cfg, wrapper{cfg}, c, src, NewTransport(nil, src)} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "config", cfg, "client", c, "source", src)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "config", cfg, "client", c, "source", src)
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	out.Write(b)

	// A failing fetch logs its error too.
	bad, _ := newTestClient(t, ts, func(cfg *Config) { cfg.ClientSecret = "other-" + testSecret; cfg.Logger = logger })
	_, err = mustSource(t, bad, eventAudience).TokenContext(context.Background())
	require.Error(t, err)
	out.WriteString(err.Error())

	all := out.String() + logs.String()
	assert.NotContains(t, all, testSecret)
	assert.NotContains(t, all, url.QueryEscape(testSecret))
	assert.NotContains(t, all, tok.AccessToken)
	assert.Contains(t, out.String(), "[REDACTED]")
	assert.Contains(t, logs.String(), "m2m: token fetched")
	assert.Contains(t, logs.String(), "m2m: token fetch failed")
}

func TestTokenAdapter(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	var src oauth2.TokenSource = mustSource(t, c, eventAudience)
	tok, err := src.Token()
	require.NoError(t, err)
	assert.Equal(t, "Bearer", tok.TokenType)
	assert.EqualValues(t, 3600, tok.ExpiresIn)
	assert.Equal(t, epoch.Add(time.Hour), tok.Expiry)
	assert.True(t, strings.HasPrefix(tok.AccessToken, "tok-1-event-"))
}

func TestErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	for _, e := range []error{ErrInvalidConfig, ErrUndeclaredScope, ErrInvalidResponse, ErrClosed} {
		assert.True(t, strings.HasPrefix(e.Error(), "m2m: "))
		for _, o := range []error{ErrInvalidConfig, ErrUndeclaredScope, ErrInvalidResponse, ErrClosed} {
			assert.Equal(t, e == o, errors.Is(e, o))
		}
	}
	assert.Equal(t, "AuthStyle(5)", AuthStyle(5).String())
	assert.Equal(t, "Encoding(5)", Encoding(5).String())
}
