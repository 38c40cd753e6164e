package m2m

import (
	"errors"
	"fmt"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error New and Client.Source
	// return for a bad Config or Audience.
	ErrInvalidConfig = errors.New("m2m: invalid config")
	// ErrUndeclaredScope is wrapped when WithScopes asks for a scope the
	// audience does not declare, or for a malformed scope.
	ErrUndeclaredScope = errors.New("m2m: scope not declared for audience")
	// ErrInvalidResponse is wrapped when the token endpoint answered 2xx
	// with something that is not a usable token.
	ErrInvalidResponse = wire.ErrInvalidResponse
	// ErrClosed is returned once the Client has been closed.
	ErrClosed = errors.New("m2m: client closed")
)

// TokenError is a non-2xx answer of the token endpoint. Its fields follow
// RFC 6749 §5.2. It never holds the client secret.
type TokenError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// ErrorCode is the "error" field, e.g. "invalid_client"; empty when
	// the body was not an OAuth2 error.
	ErrorCode string
	// ErrorDescription is "error_description", truncated to 512 bytes.
	ErrorDescription string
	// ErrorURI is "error_uri".
	ErrorURI string
	// Body is the raw response body, at most 1 MiB.
	Body []byte
	// Audience is the audience the token was asked for.
	Audience string
	// Hint says what to change in Config, when the SDK can tell.
	Hint string
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "m2m: token endpoint answered %d", e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(" " + e.ErrorCode)
	}
	if e.Audience != "" {
		fmt.Fprintf(&b, " for audience %q", e.Audience)
	}
	switch {
	case e.ErrorDescription != "":
		b.WriteString(": " + e.ErrorDescription)
	case e.ErrorCode == "" && len(e.Body) > 0:
		b.WriteString(": " + excerpt(e.Body, 120))
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// excerpt returns the start of b with anything unprintable replaced.
func excerpt(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(b) > n {
		s += "…"
	}
	return strings.TrimSpace(s)
}
