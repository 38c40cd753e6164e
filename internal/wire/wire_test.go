package wire

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func jwtWith(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2ln"
}

func TestParse(t *testing.T) {
	t.Parallel()
	jwt := jwtWith(`{"exp":` + jsonNum(now.Add(90*time.Second).Unix()) + `}`)
	pastJWT := jwtWith(`{"exp":` + jsonNum(now.Add(-time.Second).Unix()) + `}`)
	skewJWT := jwtWith(`{"exp":` + jsonNum(now.Add(-MaxClockSkew).Unix()) + `}`)
	stale := jwtWith(`{"exp":` + jsonNum(now.Add(-MaxClockSkew-time.Second).Unix()) + `}`)
	tests := []struct {
		name     string
		status   int
		body     string
		trunc    bool
		life     time.Duration
		from     LifetimeSource
		scope    string
		wantErr  string // substring; empty means success
		errBody  bool   // an *ErrorBody is expected
		wantCode string
	}{
		{name: "supertokens", status: 200, body: `{"access_token":"a","expires_in":3599,"scope":"event.create","token_type":"bearer","status":"OK"}`, life: 3599 * time.Second, from: FromExpiresIn, scope: "event.create"},
		{name: "hydra", status: 200, body: `{"access_token":"a","expires_in":3599,"scope":"","token_type":"bearer"}`, life: 3599 * time.Second, from: FromExpiresIn},
		{name: "token type upper case", status: 200, body: `{"access_token":"a","token_type":"Bearer","expires_in":60}`, life: time.Minute, from: FromExpiresIn},
		{name: "token type missing", status: 200, body: `{"access_token":"a","expires_in":60}`, life: time.Minute, from: FromExpiresIn},
		{name: "token type mac", status: 200, body: `{"access_token":"a","token_type":"mac","expires_in":60}`, wantErr: "not bearer"},
		{name: "token type DPoP", status: 200, body: `{"access_token":"a","token_type":"DPoP","expires_in":60}`, wantErr: "not bearer"},
		{name: "token type number", status: 200, body: `{"access_token":"a","token_type":1}`, wantErr: "not a JSON object"},
		{name: "expires_in string", status: 200, body: `{"access_token":"a","expires_in":"120"}`, life: 2 * time.Minute, from: FromExpiresIn},
		{name: "expires_in string padded", status: 200, body: `{"access_token":"a","expires_in":" 120 "}`, life: 2 * time.Minute, from: FromExpiresIn},
		{name: "expires_in fractional", status: 200, body: `{"access_token":"a","expires_in":1.5}`, life: 1500 * time.Millisecond, from: FromExpiresIn},
		{name: "expires_in zero falls back to default", status: 200, body: `{"access_token":"a","expires_in":0}`, life: 7 * time.Minute, from: FromDefault},
		{name: "expires_in null falls back to default", status: 200, body: `{"access_token":"a","expires_in":null}`, life: 7 * time.Minute, from: FromDefault},
		{name: "expires_in negative", status: 200, body: `{"access_token":"a","expires_in":-5}`, wantErr: "negative"},
		{name: "expires_in word", status: 200, body: `{"access_token":"a","expires_in":"soon"}`, wantErr: "not a number"},
		{name: "expires_in NaN string", status: 200, body: `{"access_token":"a","expires_in":"NaN"}`, wantErr: "not a number"},
		{name: "expires_in bool", status: 200, body: `{"access_token":"a","expires_in":true}`, wantErr: "not a number"},
		{name: "expires_in tiny", status: 200, body: `{"access_token":"a","expires_in":0.0001}`, wantErr: "below a millisecond"},
		{name: "expires_in absurd clamped", status: 200, body: `{"access_token":"a","expires_in":1e300}`, life: MaxLifetime, from: FromExpiresIn},
		{name: "expires_in overflowing float64 clamped", status: 200, body: `{"access_token":"a","expires_in":1e400}`, life: MaxLifetime, from: FromExpiresIn},
		{name: "expires_in overflowing string clamped", status: 200, body: `{"access_token":"a","expires_in":"1e400"}`, life: MaxLifetime, from: FromExpiresIn},
		{name: "expires_in overflowing negative", status: 200, body: `{"access_token":"a","expires_in":-1e400}`, wantErr: "negative"},
		{name: "expires_in Infinity string", status: 200, body: `{"access_token":"a","expires_in":"Infinity"}`, wantErr: "not a number"},
		{name: "expires_in -Inf string", status: 200, body: `{"access_token":"a","expires_in":"-Inf"}`, wantErr: "not a number"},
		{name: "no expires_in, JWT exp", status: 200, body: `{"access_token":"` + jwt + `"}`, life: 90 * time.Second, from: FromJWT},
		{name: "no expires_in, JWT exp past", status: 200, body: `{"access_token":"` + pastJWT + `"}`, wantErr: "already past"},
		{name: "JWT exp sooner than expires_in", status: 200, body: `{"access_token":"` + jwt + `","expires_in":120}`, life: 90 * time.Second, from: FromExpiresIn},
		{name: "JWT exp later than expires_in", status: 200, body: `{"access_token":"` + jwt + `","expires_in":60}`, life: 60 * time.Second, from: FromExpiresIn},
		{name: "JWT exp past by our clock: skew, expires_in wins", status: 200, body: `{"access_token":"` + pastJWT + `","expires_in":60}`, life: 60 * time.Second, from: FromExpiresIn},
		{name: "JWT exp past by MaxClockSkew: expires_in wins", status: 200, body: `{"access_token":"` + skewJWT + `","expires_in":60}`, life: 60 * time.Second, from: FromExpiresIn},
		{name: "JWT exp past beyond MaxClockSkew, expires_in ignored", status: 200, body: `{"access_token":"` + stale + `","expires_in":3600}`, wantErr: "allowed for clock skew"},
		{name: "JWT exp past beyond MaxClockSkew, no expires_in", status: 200, body: `{"access_token":"` + stale + `"}`, wantErr: "allowed for clock skew"},
		{name: "no expires_in, opaque", status: 200, body: `{"access_token":"opaque"}`, life: 7 * time.Minute, from: FromDefault},
		{name: "missing access_token", status: 200, body: `{"token_type":"bearer","expires_in":60}`, wantErr: "no access_token"},
		{name: "empty access_token", status: 200, body: `{"access_token":"","expires_in":60}`, wantErr: "no access_token"},
		{name: "access_token with newline", status: 200, body: `{"access_token":"a\nX-Evil: 1","expires_in":60}`, wantErr: "not allowed in an HTTP header"},
		{name: "html", status: 200, body: `<html>hi</html>`, wantErr: "not a JSON object"},
		{name: "empty body", status: 200, body: ``, wantErr: "not a JSON object"},
		{name: "truncated json", status: 200, body: `{"access_token":"a","expi`, wantErr: "not a JSON object"},
		{name: "oversized", status: 200, body: `{}`, trunc: true, wantErr: "larger than"},
		{name: "201 accepted", status: 201, body: `{"access_token":"a","expires_in":60}`, life: time.Minute, from: FromExpiresIn},
		{name: "oauth error", status: 401, body: `{"error":"invalid_client","error_description":"bad secret","error_uri":"https://x"}`, errBody: true, wantCode: "invalid_client"},
		{name: "html error", status: 502, body: `<html>bad gateway</html>`, errBody: true},
		{name: "redirect", status: 302, body: ``, errBody: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{"Content-Type": {"application/json"}}
			tok, err := Parse(tc.status, h, []byte(tc.body), tc.trunc, now, 7*time.Minute)
			switch {
			case tc.errBody:
				require.ErrorIs(t, err, ErrInvalidResponse, "an error answer is not parsed as a token")
				assert.Nil(t, tok)
			case tc.wantErr != "":
				require.ErrorIs(t, err, ErrInvalidResponse)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "eyJ", "the access token is never quoted")
				assert.Nil(t, tok)
			default:
				require.NoError(t, err)
				assert.Equal(t, tc.life, tok.Lifetime)
				assert.Equal(t, tc.from, tok.LifetimeFrom)
				assert.Equal(t, "Bearer", tok.TokenType)
				assert.Equal(t, tc.scope, tok.Scope)
			}
		})
	}
}

// TestParseAlreadyExpired checks that a response whose lifetime works out
// at zero or less is an error, never a token.
func TestParseAlreadyExpired(t *testing.T) {
	t.Parallel()
	for _, def := range []time.Duration{0, -time.Second} {
		t.Run(def.String(), func(t *testing.T) {
			t.Parallel()
			tok, err := Parse(200, http.Header{}, []byte(`{"access_token":"opaque"}`), false, now, def)
			require.ErrorIs(t, err, ErrInvalidResponse)
			assert.Contains(t, err.Error(), "already expired")
			assert.Nil(t, tok)
		})
	}
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestReadBodyLimit(t *testing.T) {
	t.Parallel()
	body, trunc, err := ReadBody(strings.NewReader(strings.Repeat("a", MaxBody+10)))
	require.NoError(t, err)
	assert.True(t, trunc)
	assert.Len(t, body, MaxBody)
	body, trunc, err = ReadBody(strings.NewReader("abc"))
	require.NoError(t, err)
	assert.False(t, trunc)
	assert.Equal(t, "abc", string(body))
}

func TestJWTExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token string
		ok    bool
		want  time.Time
	}{
		{"integer", jwtWith(`{"exp":1700000000}`), true, time.Unix(1700000000, 0)},
		{"fraction", jwtWith(`{"exp":1700000000.5}`), true, time.Unix(1700000000, 5e8)},
		{"padded segment", strings.Replace(jwtWith(`{"exp":1700000000}`), ".c2ln", "", 1) + "==.c2ln", true, time.Unix(1700000000, 0)},
		{"string exp", jwtWith(`{"exp":"1700000000"}`), false, time.Time{}},
		{"no exp", jwtWith(`{"sub":"x"}`), false, time.Time{}},
		{"negative", jwtWith(`{"exp":-1}`), false, time.Time{}},
		{"year 10000", jwtWith(`{"exp":253402300800}`), false, time.Time{}},
		{"two segments", "a.b", false, time.Time{}},
		{"four segments", "a.b.c.d", false, time.Time{}},
		{"opaque", "opaque-token", false, time.Time{}},
		{"bad base64", "a.!!!.c", false, time.Time{}},
		{"payload not json", "a." + base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".c", false, time.Time{}},
		{"too long", jwtWith(`{"exp":1700000000,"x":"` + strings.Repeat("a", maxJWT) + `"}`), false, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := JWTExpiry(tc.token)
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.True(t, tc.want.Equal(got), "got %v want %v", got, tc.want)
			}
		})
	}
}

func TestRequestEncoding(t *testing.T) {
	t.Parallel()
	secret := "p:a%s s+wörd"
	base := Request{TokenURL: "https://auth.test/oauth/token", ClientID: "id:1", ClientSecret: secret,
		Audience: "event", Scopes: []string{"event.create", "event.view"},
		Resource: "https://calendar.test/", Extra: url.Values{"tenant": {"t1"}, "scope": {"smuggled"}, "resource": {"smuggled"}}}

	t.Run("form basic", func(t *testing.T) {
		t.Parallel()
		r := base
		req, err := r.Build(context.Background())
		require.NoError(t, err)
		assert.Equal(t, http.MethodPost, req.Method)
		assert.Equal(t, "application/x-www-form-urlencoded", req.Header.Get("Content-Type"))
		assert.Equal(t, "application/json", req.Header.Get("Accept"))
		user, pass, ok := req.BasicAuth()
		require.True(t, ok)
		// RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
		assert.Equal(t, url.QueryEscape("id:1"), user)
		assert.Equal(t, url.QueryEscape(secret), pass)
		body, _ := io.ReadAll(req.Body)
		form, err := url.ParseQuery(string(body))
		require.NoError(t, err)
		assert.Equal(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"event.create event.view"},
			"audience": {"event"}, "resource": {"https://calendar.test/"}, "tenant": {"t1"}}, form)
		require.NotNil(t, req.GetBody, "body must be replayable")
	})
	t.Run("form in body", func(t *testing.T) {
		t.Parallel()
		r := base
		r.SecretInBody = true
		req, err := r.Build(context.Background())
		require.NoError(t, err)
		assert.Empty(t, req.Header.Get("Authorization"))
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		assert.Equal(t, "id:1", form.Get("client_id"))
		assert.Equal(t, secret, form.Get("client_secret"))
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		r := base
		r.JSON = true
		r.SecretInBody = true
		r.Extra = url.Values{"tenant": {"t1", "t2"}}
		req, err := r.Build(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
		body, _ := io.ReadAll(req.Body)
		var m map[string]any
		require.NoError(t, json.Unmarshal(body, &m))
		// Every value a string: the scope array crashes SuperTokens.
		assert.Equal(t, map[string]any{"grant_type": "client_credentials", "scope": "event.create event.view",
			"audience": "event", "client_id": "id:1", "client_secret": secret, "resource": "https://calendar.test/", "tenant": "t1 t2"}, m)
	})
	t.Run("no scope no audience", func(t *testing.T) {
		t.Parallel()
		r := Request{TokenURL: "https://a.test/t", ClientID: "i", ClientSecret: "s"}
		body, _, err := r.Body()
		require.NoError(t, err)
		assert.Equal(t, "grant_type=client_credentials", string(body))
	})
	t.Run("bad url", func(t *testing.T) {
		t.Parallel()
		r := Request{TokenURL: "://bad"}
		_, err := r.Build(context.Background())
		require.Error(t, err)
	})
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw      string
		insecure bool
		err      string
	}{
		{"https://auth.test/token", false, ""},
		{"http://127.0.0.1:8080/token", false, ""},
		{"http://localhost/token", false, ""},
		{"http://[::1]:9/token", false, ""},
		{"http://a.localhost/token", false, "plain http"},
		{"http://127.0.0.2/token", false, ""},
		{"http://auth.test/token", false, "plain http"},
		{"http://auth.test/token", true, ""},
		{"ftp://auth.test/token", false, "absolute http(s)"},
		{"/token", false, "absolute http(s)"},
		{"https:///token", false, "no host"},
		{"https://u:p@auth.test/token", false, "credentials"},
		{"https://auth.test/token#x", false, "fragment"},
		{"https://auth.test/%zz", false, "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			t.Parallel()
			_, err := CheckURL(tc.raw, tc.insecure)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.NotContains(t, err.Error(), "u:p", "credentials must not be echoed")
		})
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://auth.test/token":               "https://auth.test/token",
		"https://id:pa%ss@auth.test/token":      "https://…@auth.test/token",
		"https://id:pa/ss@auth.test/token":      "https://…@auth.test/token",
		"https://admin:pw@hydra.test:4445":      "https://…@hydra.test:4445",
		"admin:pw@hydra.test":                   "…@hydra.test",
		"id:ab//PASS@auth.example/token":        "…@auth.example/token",
		"https://auth.test/token?user=a@b.test": "https://…@b.test",
		"https://auth.test/token with a space":  "https://auth.test/token with a space",
		"":                                      "",
	} {
		assert.Equal(t, want, Redacted(raw), raw)
	}
}
