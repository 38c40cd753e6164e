package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the most of a token-endpoint response body that is read.
const MaxBody = 1 << 20

// MaxLifetime caps the lifetime taken from a response, so that an absurd
// expires_in cannot overflow time arithmetic or pin a token for decades.
const MaxLifetime = 365 * 24 * time.Hour

// ErrInvalidResponse is wrapped by every error about a 2xx token response
// that cannot be used (not JSON, no access_token, a token type other than
// bearer, a bad expires_in, an oversized body).
var ErrInvalidResponse = errors.New("m2m: invalid token response")

// LifetimeSource says where a token's lifetime came from.
type LifetimeSource string

// The sources of a token's lifetime, in the order they are tried.
const (
	FromExpiresIn LifetimeSource = "expires_in"
	FromJWT       LifetimeSource = "jwt exp"
	FromDefault   LifetimeSource = "default"
	FromStore     LifetimeSource = "shared store"
)

// Token is a parsed successful token response (RFC 6749 §5.1).
type Token struct {
	AccessToken  string
	TokenType    string // always "Bearer"
	Lifetime     time.Duration
	LifetimeFrom LifetimeSource
	Scope        string // as granted by the server; may be empty
}

// ErrorBody is a non-2xx token-endpoint answer (RFC 6749 §5.2).
type ErrorBody struct {
	Status      int
	Code        string // "error"
	Description string // "error_description"
	URI         string // "error_uri"
	Body        []byte // at most MaxBody bytes of the raw body
	RetryAfter  string // the Retry-After header, verbatim
}

func (e *ErrorBody) Error() string {
	return fmt.Sprintf("token endpoint answered %d %s", e.Status, e.Code)
}

// invalid builds an ErrInvalidResponse with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidResponse, fmt.Sprintf(format, args...))
}

// ReadBody reads at most MaxBody bytes and reports whether there was more.
func ReadBody(r io.Reader) (body []byte, truncated bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, MaxBody+1))
	if len(body) > MaxBody {
		return body[:MaxBody], true, err
	}
	return body, false, err
}

// Parse turns one token-endpoint response into a Token, an *ErrorBody, or
// an error wrapping ErrInvalidResponse. now and defaultLifetime settle the
// lifetime when the response has no usable expires_in.
func Parse(status int, header http.Header, body []byte, truncated bool, now time.Time, defaultLifetime time.Duration) (*Token, error) {
	if status < 200 || status > 299 {
		return nil, parseError(status, header, body)
	}
	if truncated {
		return nil, invalid("body larger than %d bytes", MaxBody)
	}
	var raw struct {
		AccessToken *string         `json:"access_token"`
		TokenType   *string         `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Scope       *string         `json:"scope"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalid("body is not a JSON object (content type %q)", mediaType(header))
	}
	if raw.AccessToken == nil || *raw.AccessToken == "" {
		return nil, invalid("no access_token")
	}
	if !HeaderSafe(*raw.AccessToken) {
		return nil, invalid("access_token holds characters not allowed in an HTTP header")
	}
	if raw.TokenType != nil && *raw.TokenType != "" && !strings.EqualFold(*raw.TokenType, "bearer") {
		return nil, invalid("token_type %q is not bearer", truncate(*raw.TokenType, 32))
	}
	t := &Token{AccessToken: *raw.AccessToken, TokenType: "Bearer"}
	if raw.Scope != nil {
		t.Scope = *raw.Scope
	}
	life, ok, err := parseExpiresIn(raw.ExpiresIn)
	if err != nil {
		return nil, err
	}
	exp, isJWT := JWTExpiry(t.AccessToken)
	switch {
	case ok:
		t.Lifetime, t.LifetimeFrom = life, FromExpiresIn
		// A JWT whose exp comes sooner (exp is whole seconds, so it can be
		// up to a second short of expires_in) is used only until its exp.
		// An exp already past by our clock is clock skew: trust expires_in.
		if left := exp.Sub(now); isJWT && left > 0 && left < life {
			t.Lifetime = left
		}
	default:
		if isJWT {
			left := exp.Sub(now)
			if left <= 0 {
				return nil, invalid("no expires_in, and the JWT's exp is already past")
			}
			t.Lifetime, t.LifetimeFrom = min(left, MaxLifetime), FromJWT
		} else {
			t.Lifetime, t.LifetimeFrom = defaultLifetime, FromDefault
		}
	}
	return t, nil
}

// parseExpiresIn accepts a JSON number or a numeric string of seconds.
// Absent, null and 0 report ok=false ("not given": RFC 6749 makes the field
// optional, and some servers send 0 for unknown); negative, non-finite and
// non-numeric values are errors; fractions are kept to the millisecond;
// values above MaxLifetime are clamped.
func parseExpiresIn(raw json.RawMessage) (time.Duration, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, false, invalid("expires_in is not a number")
		}
		text = strings.TrimSpace(text)
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, false, invalid("expires_in %q is not a number", truncate(text, 32))
	}
	switch {
	case secs < 0:
		return 0, false, invalid("expires_in %v is negative", secs)
	case secs == 0:
		return 0, false, nil
	case secs >= MaxLifetime.Seconds():
		return MaxLifetime, true, nil
	}
	d := time.Duration(secs * float64(time.Second)).Truncate(time.Millisecond)
	if d <= 0 {
		return 0, false, invalid("expires_in %v is below a millisecond", secs)
	}
	return d, true, nil
}

// parseError reads an RFC 6749 §5.2 error body; a body that is not one is
// kept raw so the caller can still see what the server said.
func parseError(status int, header http.Header, body []byte) error {
	e := &ErrorBody{Status: status, Body: body, RetryAfter: header.Get("Retry-After")}
	var raw struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		URI         string `json:"error_uri"`
	}
	if json.Unmarshal(body, &raw) == nil {
		e.Code = truncate(raw.Error, 64)
		e.Description = truncate(raw.Description, 512)
		e.URI = truncate(raw.URI, 512)
	}
	return e
}

func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return h.Get("Content-Type")
	}
	return mt
}

// HeaderSafe reports whether s can be sent in a header value as is.
func HeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// truncate shortens s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
