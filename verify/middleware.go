package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	scheme, token, err := authorization(r)
	if err != nil {
		return "", err
	}
	if scheme != schemeBearer {
		return "", ErrNoToken
	}
	return token, nil
}

// The authorization schemes a token may come with.
const (
	schemeBearer = iota + 1
	schemeDPoP   // RFC 9449 §7.1
)

// authorization returns the scheme and token of the request's
// Authorization header, under BearerToken's rules for either scheme.
func authorization(r *http.Request) (scheme int, token string, err error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return 0, "", fmt.Errorf("%w: more than one Authorization header", ErrInvalidRequest)
	}
	if len(values) == 0 {
		return 0, "", ErrNoToken
	}
	name, token, ok := strings.Cut(values[0], " ")
	switch {
	case !ok:
		return 0, "", ErrNoToken
	case strings.EqualFold(name, "Bearer"):
		scheme = schemeBearer
	case strings.EqualFold(name, "DPoP"):
		scheme = schemeDPoP
	default:
		return 0, "", ErrNoToken
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return 0, "", ErrNoToken
	}
	if !b64token(token) {
		return scheme, "", fmt.Errorf("%w: the token is not a b64token (RFC 6750 §2.1)", ErrInvalidRequest)
	}
	if r.URL != nil && r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		return scheme, "", fmt.Errorf("%w: a token in both the Authorization header and the URL", ErrInvalidRequest)
	}
	return scheme, token, nil
}

// b64token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=" (RFC 6750 §2.1).
func b64token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
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

// b64tokenChar marks the characters of a b64token before its padding.
var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// Middleware returns net/http middleware that lets a request through only
// with a valid token carrying every one of requiredScopes, and puts its
// *Claims in the request context (see ClaimsFromContext):
//
//	mux.Handle("POST /events", v.Middleware("event.create")(http.HandlerFunc(createEvent)))
//	mux.Handle("GET /events", v.Middleware("event.view")(http.HandlerFunc(listEvents)))
//
// A token comes as "Authorization: Bearer <token>", or, when it is
// DPoP-bound (cnf jkt), as "Authorization: DPoP <token>" with a DPoP
// header holding a proof for this request (see VerifyDPoP; the request's
// URL is what Config.DPoPBaseURL or DPoPRequestURL make of it). A token
// bound to a client certificate (cnf x5t#S256) passes only over a TLS
// connection on which the client presented that certificate (see
// Config.ClientCertificate). A bound token sent as a bearer token, and a
// token that is not DPoP-bound sent with the DPoP scheme, are refused.
//
// It answers as RFC 6750 §3 and RFC 9449 §7.1 ask, with a JSON body
// {error, error_description} and a WWW-Authenticate challenge of the
// request's scheme: 401 without an error code when there is no token
// (challenges Bearer and DPoP, with the proof algorithms); 400
// invalid_request when the request carries it wrongly (see BearerToken);
// 401 invalid_token with the reason when the token is refused, 401
// invalid_dpop_proof when the proof is, 401 use_dpop_nonce with a
// DPoP-Nonce header when Config.DPoPNonceInterval asks for a nonce the
// proof lacks; 403 insufficient_scope with the scopes the route needs.
// When the verifier cannot decide (the introspection endpoint fails, or
// the DPoP replay cache is full) it answers 503. It never echoes the
// token or the proof.
func (v *Verifier) Middleware(requiredScopes ...string) func(http.Handler) http.Handler {
	required := append([]string(nil), requiredScopes...)
	scope := strings.Join(required, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, raw, err := authorization(r)
			switch {
			case errors.Is(err, ErrInvalidRequest):
				desc := strings.TrimPrefix(err.Error(), ErrInvalidRequest.Error()+": ")
				v.answer(w, scheme, http.StatusBadRequest, `error="invalid_request", error_description="`+headerSafe(desc)+`"`, "invalid_request", desc)
				return
			case err != nil:
				w.Header().Set("WWW-Authenticate", `Bearer`)
				w.Header().Add("WWW-Authenticate", `DPoP `+v.challenge)
				writeError(w, http.StatusUnauthorized, "invalid_request", "a bearer token is required, or a DPoP token with its proof")
				return
			}
			var c *Claims
			if scheme == schemeDPoP {
				var req DPoPRequest
				if req, err = v.requestProof(r); err == nil {
					c, err = v.verifyDPoP(r.Context(), raw, &req)
				}
				if v.nonces != nil {
					w.Header().Set("DPoP-Nonce", v.DPoPNonce())
				}
			} else if c, err = v.verify(r.Context(), raw, nil); err == nil && c.bound() {
				if err = boundErr(c, v.clientCertificate(r)); err != nil {
					c = nil
				}
			}
			if err != nil {
				v.refuse(w, scheme, err)
				return
			}
			if c.missing(required) != "" {
				v.answer(w, scheme, http.StatusForbidden, `error="insufficient_scope", scope="`+headerSafe(scope)+`"`, "insufficient_scope", "the token lacks scope "+scope)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		})
	}
}

// refuse answers a request whose token or proof was not accepted.
func (v *Verifier) refuse(w http.ResponseWriter, scheme int, err error) {
	var rej *rejection
	if !errors.As(err, &rej) {
		if errors.Is(err, ErrReplayCacheFull) {
			secs := int64(v.replay.retryAfter(v.clock.Now().UnixNano())/time.Second) + 1
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token could not be checked now")
		return
	}
	desc := rej.kind.Error()
	if rej.detail != "" {
		desc += ": " + rej.detail
	}
	code := "invalid_token"
	switch {
	case rej.kind == ErrUseDPoPNonce:
		code = "use_dpop_nonce"
	case rej.proof:
		code = "invalid_dpop_proof"
	}
	if rej.kind == ErrDPoPBinding {
		scheme = schemeDPoP // a DPoP-bound token sent as a bearer token: say how to send it
	}
	v.answer(w, scheme, http.StatusUnauthorized, `error="`+code+`", error_description="`+headerSafe(desc)+`"`, code, desc)
}

// answer answers with status and a WWW-Authenticate challenge of the
// request's scheme carrying params, and the JSON error body.
func (v *Verifier) answer(w http.ResponseWriter, scheme, status int, params, code, desc string) {
	if scheme == schemeDPoP {
		w.Header().Set("WWW-Authenticate", `DPoP `+params+`, `+v.challenge)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer `+params)
	}
	writeError(w, status, code, desc)
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
