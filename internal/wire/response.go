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

// MaxClockSkew is how far in the past a JWT access token's exp may lie, by
// our clock, and the token still be taken: the server's clock may run
// behind ours. Within it expires_in sets the lifetime; beyond it the
// response is refused, whatever expires_in says.
const MaxClockSkew = time.Minute

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
	TokenType    string // "Bearer", or "DPoP" from ParseScrubbedAs
	Lifetime     time.Duration
	LifetimeFrom LifetimeSource
	Scope        string // as granted by the server; may be empty
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

// Parse is ParseScrubbed with no secret to scrub: it keeps server text as
// the server sent it, apart from the length limits.
func Parse(status int, header http.Header, body []byte, truncated bool, now time.Time, defaultLifetime time.Duration) (*Token, error) {
	return ParseScrubbed(nil, status, header, body, truncated, now, defaultLifetime)
}

// ParseScrubbed turns one successful (2xx) token-endpoint response into a
// Token, or an error wrapping ErrInvalidResponse; error answers (RFC 6749
// §5.2) are the caller's to read, with Scrubber.Truncate and the Max*
// limits. now and
// defaultLifetime settle the lifetime when the response has no usable
// expires_in; truncated says ReadBody cut the body. Every piece of server
// text kept in the result or quoted in an error is scrubbed by sc and then
// cut to its limit. A Token's Lifetime is above zero.
func ParseScrubbed(sc *Scrubber, status int, header http.Header, body []byte, truncated bool, now time.Time, defaultLifetime time.Duration) (*Token, error) {
	return ParseScrubbedAs(sc, "Bearer", status, header, body, truncated, now, defaultLifetime)
}

// ParseScrubbedAs is ParseScrubbed for a token of type want: "Bearer"
// (token_type bearer in any case, or absent), or "DPoP" for a request that
// carried a DPoP proof (RFC 9449 §5: token_type must then be DPoP, in any
// case; a bearer answer means the server did not bind the token).
func ParseScrubbedAs(sc *Scrubber, want string, status int, header http.Header, body []byte, truncated bool, now time.Time, defaultLifetime time.Duration) (*Token, error) {
	if status < 200 || status > 299 {
		return nil, invalid("status %d is not a success", status)
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
		return nil, invalid("body is not a JSON object (content type %q)", sc.Truncate(mediaType(header), 64))
	}
	if raw.AccessToken == nil || *raw.AccessToken == "" {
		return nil, invalid("no access_token")
	}
	if !HeaderSafe(*raw.AccessToken) {
		return nil, invalid("access_token holds characters not allowed in an HTTP header")
	}
	var typ string
	if raw.TokenType != nil {
		typ = *raw.TokenType
	}
	switch {
	case want == "DPoP" && !strings.EqualFold(typ, "dpop"):
		return nil, invalid("token_type %q is not DPoP although the request carried a DPoP proof: the server did not bind the token to the key", sc.Truncate(typ, 32))
	case want != "DPoP" && typ != "" && !strings.EqualFold(typ, "bearer"):
		return nil, invalid("token_type %q is not bearer", sc.Truncate(typ, 32))
	}
	t := &Token{AccessToken: *raw.AccessToken, TokenType: want}
	if raw.Scope != nil {
		t.Scope = *raw.Scope
	}
	life, ok, err := parseExpiresIn(sc, raw.ExpiresIn)
	if err != nil {
		return nil, err
	}
	exp, isJWT := JWTExpiry(t.AccessToken)
	left := exp.Sub(now)
	if isJWT && -left > MaxClockSkew {
		return nil, invalid("the access token's exp passed %v ago, more than the %v allowed for clock skew",
			(-left).Truncate(time.Second), MaxClockSkew)
	}
	switch {
	case ok:
		t.Lifetime, t.LifetimeFrom = life, FromExpiresIn
		// A JWT whose exp comes sooner (exp is whole seconds, so it can be
		// up to a second short of expires_in) is used only until its exp.
		// An exp past by no more than MaxClockSkew is clock skew: trust
		// expires_in.
		if isJWT && left > 0 && left < life {
			t.Lifetime = left
		}
	case isJWT:
		if left <= 0 {
			return nil, invalid("no expires_in, and the access token's exp is already past")
		}
		t.Lifetime, t.LifetimeFrom = min(left, MaxLifetime), FromJWT
	default:
		t.Lifetime, t.LifetimeFrom = defaultLifetime, FromDefault
	}
	if t.Lifetime <= 0 {
		return nil, invalid("the token is already expired (lifetime %v from %s)", t.Lifetime, t.LifetimeFrom)
	}
	return t, nil
}

// parseExpiresIn accepts a JSON number or a numeric string of seconds.
// Absent, null and 0 report ok=false ("not given": RFC 6749 makes the field
// optional, and some servers send 0 for unknown); negative, NaN, infinite
// and non-numeric values are errors; fractions are kept to the
// millisecond; values above MaxLifetime, including those too large for a
// float64 (1e400), are clamped.
func parseExpiresIn(sc *Scrubber, raw json.RawMessage) (time.Duration, bool, error) {
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
	// A number too large for a float64 parses as ±Inf with ErrRange; the
	// literals "Inf" and "NaN" parse without an error and are refused.
	if errors.Is(err, strconv.ErrRange) && math.IsInf(secs, 0) {
		err = nil
	} else if err == nil && (math.IsNaN(secs) || math.IsInf(secs, 0)) {
		err = strconv.ErrSyntax
	}
	if err != nil {
		return 0, false, invalid("expires_in %q is not a number", sc.Truncate(text, 32))
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

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
