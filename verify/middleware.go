package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type claimsKey struct{}

// NewContext returns ctx carrying claims, as Middleware does.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims Middleware put in ctx.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// BearerToken returns the token of an "Authorization: Bearer" header (the
// scheme is case-insensitive, RFC 7235 §2.1), or ErrNoToken.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", ErrNoToken
	}
	return token, nil
}

// Middleware returns net/http middleware that lets a request through only
// with a valid bearer token carrying every one of requiredScopes, and puts
// its *Claims in the request context (see ClaimsFromContext). It answers
// as RFC 6750 §3 asks: 401 with WWW-Authenticate: Bearer when the token is
// missing or invalid (error="invalid_token"), 403 with
// error="insufficient_scope" and the scopes needed. It never echoes the
// token.
func (v *Verifier) Middleware(requiredScopes ...string) func(http.Handler) http.Handler {
	required := append([]string(nil), requiredScopes...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := BearerToken(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer`)
				writeError(w, http.StatusUnauthorized, "invalid_request", "a bearer token is required")
				return
			}
			c, err := v.Verify(r.Context(), raw)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+describe(err)+`"`)
				writeError(w, http.StatusUnauthorized, "invalid_token", describe(err))
				return
			}
			if c.missing(required) != "" {
				scope := strings.Join(required, " ")
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
				writeError(w, http.StatusForbidden, "insufficient_scope", "the token lacks scope "+scope)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		})
	}
}

// describe returns the specific reason of a rejection, safe to show: it
// names the rule that failed, never the token or its claims.
func describe(err error) string {
	for _, kind := range []error{ErrTokenTooLarge, ErrMalformed, ErrUnsupportedHeader, ErrAlgorithm, ErrUnknownKey,
		ErrSignature, ErrExpired, ErrNotYetValid, ErrMissingClaim, ErrAudience, ErrIssuer, ErrTokenType, ErrScopeClaim, ErrClientID} {
		if errors.Is(err, kind) {
			return kind.Error()
		}
	}
	return "invalid token"
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
