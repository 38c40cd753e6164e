package m2m

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

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
	// ErrTokenUnavailable is what a BackoffError wraps when the failure
	// that started the wait is no longer kept.
	ErrTokenUnavailable = errors.New("m2m: no token available")
)

// TokenError is a non-2xx answer of the token endpoint. Its fields follow
// RFC 6749 §5.2. Every field is scrubbed of the client secret in every
// encoding a server may echo it in, before it is cut to its limit.
type TokenError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// ErrorCode is the "error" field, e.g. "invalid_client"; empty when
	// the body was not an OAuth2 error. At most 64 bytes.
	ErrorCode string
	// ErrorDescription is "error_description", at most 512 bytes.
	ErrorDescription string
	// ErrorURI is "error_uri", at most 512 bytes.
	ErrorURI string
	// Body is the raw response body, at most 1 MiB.
	Body []byte
	// Audience is the name of the audience the token was asked for.
	Audience string
	// Hint says what to change in Config, when the SDK can tell.
	Hint string
}

// Error describes the answer in one line: status, error code, audience,
// description (or the start of a body that is not an OAuth2 error) and
// the hint.
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

// BackoffError is returned to a caller that has no valid token while the
// key's fetches are spaced after a failure: rather than each caller
// starting a fetch (a flood during an outage), callers get the last
// failure at once until Next, when one caller starts the next fetch.
type BackoffError struct {
	// Audience is the name of the audience.
	Audience string
	// Next is when the next fetch may start.
	Next time.Time
	// Err is the failure that started the wait (a *TokenError, a network
	// error, …), or ErrTokenUnavailable.
	Err error
}

// Error says why there is no token and when the next try is.
func (e *BackoffError) Error() string {
	return fmt.Sprintf("m2m: no token for audience %q until the next try at %s: %v",
		e.Audience, e.Next.UTC().Format("15:04:05.000"), e.Err)
}

// Unwrap returns Err.
func (e *BackoffError) Unwrap() error { return e.Err }

// tokenError builds the exported error of a non-2xx answer (RFC 6749
// §5.2), scrubbing the credential the request carried (sc) from every
// field before cutting it.
func (e *env) tokenError(sc *wire.Scrubber, resp *http.Response, body []byte, truncated bool, audience string) *TokenError {
	te := &TokenError{StatusCode: resp.StatusCode, Body: sc.Bytes(body, truncated), Audience: audience}
	var raw struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		URI         string `json:"error_uri"`
	}
	if json.Unmarshal(body, &raw) == nil {
		te.ErrorCode = sc.Truncate(raw.Error, wire.MaxErrorCode)
		te.ErrorDescription = sc.Truncate(raw.Description, wire.MaxErrorDescription)
		te.ErrorURI = sc.Truncate(raw.URI, wire.MaxErrorURI)
	}
	te.Hint = e.hint(te, sc.Truncate(resp.Header.Get("Location"), wire.MaxLocation))
	return te
}

// hint says what to change in Config for the failures the SDK recognises.
func (e *env) hint(te *TokenError, location string) string {
	desc := strings.ToLower(te.ErrorDescription)
	switch {
	case te.StatusCode >= 300 && te.StatusCode < 400:
		return fmt.Sprintf("the token endpoint redirects to %q; set TokenURL to the final URL", location)
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_post'"):
		return "the client is registered for client_secret_post: set AuthStyle to m2m.AuthStyleInBody"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_basic'"):
		return "the client is registered for client_secret_basic: set AuthStyle to m2m.AuthStyleBasic"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'private_key_jwt'"):
		return "the client is registered for private_key_jwt: set PrivateKey or PrivateKeyFile"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "tls_client_auth'"):
		return "the client is registered for mTLS client authentication: set TLSCertFile (and TLSKeyFile) and no other credential"
	case strings.Contains(desc, "signing key with kid") && strings.Contains(desc, "could not be found"):
		return "the server does not know the assertion's kid: register the key's public JWK (m2m.PublicJWK) or set KeyID to the registered kid"
	case te.ErrorCode == "use_dpop_nonce":
		return "the server refused the DPoP nonce it had just given; it may be rotating nonces too fast"
	case te.ErrorCode == "invalid_dpop_proof":
		return "the server refused the DPoP proof: check that it accepts DPoPKey's algorithm and that the clocks agree"
	case e.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusBadRequest && strings.Contains(desc, "post body can not be empty"):
		return "this server reads only form bodies: leave Encoding at m2m.EncodingForm"
	case e.cfg.Encoding == EncodingJSON && te.StatusCode == http.StatusInternalServerError:
		return "if this server only reads form bodies, leave Encoding at m2m.EncodingForm"
	}
	return ""
}
