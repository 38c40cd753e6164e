package wire

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"a","expires_in":3599,"scope":"event.create","token_type":"bearer","status":"OK"}`},
		{200, `{"access_token":"a","expires_in":"60"}`},
		{200, `{"access_token":"a","expires_in":1e300,"token_type":"Bearer"}`},
		{200, `{"access_token":"` + jwtWith(`{"exp":1800000000}`) + `"}`},
		{200, `{"access_token":"a\u0000b"}`},
		{200, `<html>`},
		{401, `{"error":"invalid_client","error_description":"x"}`},
		{500, ``},
	} {
		f.Add(seed.status, []byte(seed.body), false)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, truncated bool) {
		tok, err := Parse(status, http.Header{}, body, truncated, now, time.Minute)
		if err != nil {
			var eb *ErrorBody
			if !errors.As(err, &eb) && !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("untyped error %v", err)
			}
			if tok != nil {
				t.Fatal("token with an error")
			}
			return
		}
		if status < 200 || status > 299 {
			t.Fatalf("status %d gave a token", status)
		}
		if tok.AccessToken == "" || !HeaderSafe(tok.AccessToken) {
			t.Fatalf("unusable token %q", tok.AccessToken)
		}
		if tok.Lifetime <= 0 || tok.Lifetime > MaxLifetime {
			t.Fatalf("lifetime %v out of range", tok.Lifetime)
		}
		if tok.TokenType != "Bearer" {
			t.Fatalf("token type %q", tok.TokenType)
		}
	})
}

func FuzzJWTExpiry(f *testing.F) {
	for _, seed := range []string{
		jwtWith(`{"exp":1700000000}`), jwtWith(`{"exp":1.5e9}`), jwtWith(`{"exp":"1"}`),
		jwtWith(`{"exp":-1}`), jwtWith(`{"exp":1e400}`), "a.b.c", "...", "", "e30.e30.e30",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		exp, ok := JWTExpiry(token)
		if !ok {
			if !exp.IsZero() {
				t.Fatal("a time without ok")
			}
			return
		}
		if exp.Unix() <= 0 || exp.Year() > 9999 {
			t.Fatalf("exp %v out of range", exp)
		}
	})
}
