package verify

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// cannot use; the message names the field and what is wrong with it.
var ErrInvalidConfig = errors.New("verify: invalid config")

// ErrInvalidToken is wrapped by every rejection of a token: Verify's error
// then also wraps exactly one of the specific rejections (ErrExpired,
// ErrAudience, …), and its message says what was expected and what the
// token had, never the token itself. An error that does not wrap
// ErrInvalidToken (ErrIntrospection, a context error) says nothing about
// the token: the verifier could not decide.
var ErrInvalidToken = errors.New("verify: invalid token")

// The specific rejections. They are never returned alone: Verify wraps each
// in ErrInvalidToken, whose prefix the message carries once.
var (
	// ErrTokenTooLarge means the token is longer than MaxTokenSize bytes.
	ErrTokenTooLarge = errors.New("token too large")
	// ErrMalformed means the token is not a compact JWS in strict base64url
	// whose header and payload are each exactly one JSON object with no
	// duplicate member, or a registered claim has the wrong JSON type or
	// an out-of-range value (a NumericDate before 1970 or after 9999).
	ErrMalformed = errors.New("malformed token")
	// ErrUnsupportedHeader means the JOSE header carries a member the verifier
	// refuses to act on (jku, x5u, jwk, x5c, crit, b64, zip, enc, or cty
	// "JWT" for a nested token).
	ErrUnsupportedHeader = errors.New("unsupported header")
	// ErrAlgorithm means the alg header is not in Config.Algorithms, or does not
	// fit the key it names (its type, curve, or the JWK's own alg).
	ErrAlgorithm = errors.New("algorithm not allowed")
	// ErrUnknownKey means no usable key in the JWKS has the token's kid (or, for
	// a token without kid, the JWKS does not hold exactly one key), even
	// after a refetch the rate limit allowed.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrSignature means the signature does not verify with the key.
	ErrSignature = errors.New("bad signature")
	// ErrExpired means the token's exp, plus Config.Leeway, has passed.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid means the token's nbf or iat lies in the future by more
	// than Config.Leeway.
	ErrNotYetValid = errors.New("token not valid yet")
	// ErrMissingClaim means a claim the profile requires is absent (exp always;
	// RFC 9068 §2.2's iss, exp, aud, sub, client_id, iat and jti under
	// ProfileRFC9068 and ProfileHydra).
	ErrMissingClaim = errors.New("required claim missing")
	// ErrAudience means Config.Audience is not in the token's aud.
	ErrAudience = errors.New("wrong audience")
	// ErrIssuer means the token's iss is not Config.Issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrTokenType means the token is not an access token of the kind the
	// verifier accepts: wrong stt (ProfileSuperTokens) or typ header
	// (ProfileRFC9068, ProfileHydra), a refresh token presented to
	// introspection, or a token issued for a user where
	// Config.ClientCredentialsOnly asks for a client-credentials token.
	ErrTokenType = errors.New("wrong token type")
	// ErrScopeClaim means scp is not an array of scope tokens, scope is not a
	// space-separated string of them (RFC 6749 §3.3), or both are present
	// and name different scopes.
	ErrScopeClaim = errors.New("malformed scope claim")
	// ErrClientID means the token's client_id is not in Config.ClientIDs.
	ErrClientID = errors.New("client_id not allowed")
	// ErrInactive means the introspection endpoint answered that the token is
	// not active (RFC 7662 §2.2): unknown, expired or revoked.
	ErrInactive = errors.New("token not active")
)

// ErrInsufficientScope means a valid token lacks a scope the route
// requires. Middleware answers it with 403 insufficient_scope; Verify
// never returns it.
var ErrInsufficientScope = errors.New("verify: insufficient scope")

// ErrNoToken is returned by BearerToken when the request has no
// Authorization header with the Bearer scheme and a token.
var ErrNoToken = errors.New("verify: no bearer token")

// ErrInvalidRequest is returned by BearerToken when the request carries
// its token in a way RFC 6750 §2 does not allow: more than one
// Authorization header, a token in both the header and the URL, or a
// token that is not a b64token. Middleware answers it with 400.
var ErrInvalidRequest = errors.New("verify: invalid request")

// ErrIntrospection means the introspection endpoint could not be asked or
// gave an unusable answer (network failure, a status other than 200, a
// body that is not one JSON object). It says nothing about the token, so
// it does not wrap ErrInvalidToken; Middleware answers 503.
var ErrIntrospection = errors.New("verify: introspection failed")

// rejection is the error of a refused token: ErrInvalidToken, one specific
// kind, and a detail that says what was expected and what the token had.
type rejection struct {
	kind   error
	detail string
}

func (r *rejection) Error() string {
	if r.detail == "" {
		return ErrInvalidToken.Error() + ": " + r.kind.Error()
	}
	return ErrInvalidToken.Error() + ": " + r.kind.Error() + ": " + r.detail
}

// Unwrap lets errors.Is find both ErrInvalidToken and the kind.
func (r *rejection) Unwrap() []error { return []error{ErrInvalidToken, r.kind} }

// reject builds a rejection of kind with a formatted detail.
func reject(kind error, format string, args ...any) error {
	if len(args) == 0 {
		return &rejection{kind: kind, detail: format}
	}
	return &rejection{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// maxShown bounds how much of one value taken from a token an error shows.
const maxShown = 64

// shown returns s cut to maxShown bytes on a rune boundary, with "…" when
// cut, so a hostile claim cannot make an error (or a header) huge.
func shown(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quoted formats a value from a token for an error: %q of shown(s).
func quoted(s string) string { return fmt.Sprintf("%q", shown(s)) }

// quotedList formats a list from a token: ["a" "b"], at most 8 items.
func quotedList(list []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i == 8 {
			fmt.Fprintf(&b, ", … %d more", len(list)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoted(s))
	}
	b.WriteByte(']')
	return b.String()
}
