package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

type claimsKey struct{}

// NewContext returns a copy of ctx carrying c, which ClaimsFromContext
// returns. Middleware calls it for every request it lets through; call it
// yourself to test a handler that reads ClaimsFromContext without minting
// a token, or in a middleware of your own built on Verify.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims Middleware (or NewContext) put in
// ctx.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// BearerToken returns the token of the request's "Authorization: Bearer"
// header (the scheme is case-insensitive, RFC 7235 §2.1). It returns
// ErrNoToken when there is none, and an error wrapping ErrInvalidRequest
// when the request breaks RFC 6750 §2: more than one Authorization
// header, a token in the URL as well (access_token), or a token that is
// not a b64token (§2.1).
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return "", fmt.Errorf("%w: more than one Authorization header", ErrInvalidRequest)
	}
	if len(values) == 0 {
		return "", ErrNoToken
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", ErrNoToken
	}
	if !b64token(token) {
		return "", fmt.Errorf("%w: the bearer token is not a b64token (RFC 6750 §2.1)", ErrInvalidRequest)
	}
	if r.URL != nil && strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return "", fmt.Errorf("%w: a token in both the Authorization header and the URL", ErrInvalidRequest)
	}
	return token, nil
}

// b64token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=" (RFC 6750 §2.1).
func b64token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// Middleware returns net/http middleware that lets a request through only
// with a valid bearer token carrying every one of requiredScopes, and puts
// its *Claims in the request context (see ClaimsFromContext):
//
//	mux.Handle("POST /events", v.Middleware("event.create")(http.HandlerFunc(createEvent)))
//	mux.Handle("GET /events", v.Middleware("event.view")(http.HandlerFunc(listEvents)))
//
// It answers as RFC 6750 §3 asks, with a JSON body {error,
// error_description} and WWW-Authenticate: Bearer: 401 without an error
// code when there is no bearer token; 400 invalid_request when the
// request carries it wrongly (see BearerToken); 401 invalid_token with
// the reason when Verify rejects it; 403 insufficient_scope with the
// scopes the route needs. When the verifier cannot decide (the
// introspection endpoint fails) it answers 503. It never echoes the token.
func (v *Verifier) Middleware(requiredScopes ...string) func(http.Handler) http.Handler {
	required := append([]string(nil), requiredScopes...)
	scope := strings.Join(required, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := BearerToken(r)
			switch {
			case errors.Is(err, ErrInvalidRequest):
				desc := strings.TrimPrefix(err.Error(), ErrInvalidRequest.Error()+": ")
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="`+headerSafe(desc)+`"`)
				writeError(w, http.StatusBadRequest, "invalid_request", desc)
				return
			case err != nil:
				w.Header().Set("WWW-Authenticate", `Bearer`)
				writeError(w, http.StatusUnauthorized, "invalid_request", "a bearer token is required")
				return
			}
			c, err := v.Verify(r.Context(), raw)
			if err != nil {
				var rej *rejection
				if !errors.As(err, &rej) {
					writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token could not be checked now")
					return
				}
				desc := rej.kind.Error()
				if rej.detail != "" {
					desc += ": " + rej.detail
				}
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+headerSafe(desc)+`"`)
				writeError(w, http.StatusUnauthorized, "invalid_token", desc)
				return
			}
			if c.missing(required) != "" {
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+headerSafe(scope)+`"`)
				writeError(w, http.StatusForbidden, "insufficient_scope", "the token lacks scope "+scope)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		})
	}
}

// headerSafe keeps the characters RFC 6750 §3 allows in error_description
// and scope (%x20-21 / %x23-5B / %x5D-7E), replacing others with '?'.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E || r == '"' || r == '\\' {
			if r == '"' {
				return '\''
			}
			return '?'
		}
		return r
	}, s)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
