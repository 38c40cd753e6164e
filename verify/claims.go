package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the verified claims of an access token. A *Claims returned by
// Verify or ClaimsFromContext is shared: treat it as read-only.
type Claims struct {
	// Subject is "sub" (for client-credentials tokens, the client id).
	Subject string
	// ClientID is "client_id".
	ClientID string
	// Audience is "aud", as a list whether it came as a string or array.
	Audience []string
	// Scopes is "scp"; empty, not nil, when the array is empty. Nil for a
	// session token without scp.
	Scopes []string
	// TokenType is SuperTokens' "stt": 0 session, 1 OAuth2 access token,
	// 2 ID token; -1 when absent, -2 when not one of those integers.
	TokenType int
	// SessionHandle is "sessionHandle"; only session tokens have one.
	SessionHandle string
	// Issuer is "iss".
	Issuer string
	// ID is "jti".
	ID string
	// ExpiresAt, IssuedAt and NotBefore are "exp", "iat" and "nbf"; zero
	// when absent.
	ExpiresAt, IssuedAt, NotBefore time.Time
	// Raw is every claim as decoded (numbers as json.Number).
	Raw map[string]any

	kid string // the signing key, to drop cache hits when it is removed
}

// HasScope reports whether the token carries scope, compared exactly.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// IsSession reports whether this is a SuperTokens session token rather
// than an OAuth2 client-credentials token (which has no sessionHandle).
func (c *Claims) IsSession() bool { return c.SessionHandle != "" }

// missing returns the first of scopes the token lacks, or "".
func (c *Claims) missing(scopes []string) string {
	for _, s := range scopes {
		if !c.HasScope(s) {
			return s
		}
	}
	return ""
}

// newClaims extracts typed claims from a verified MapClaims.
func newClaims(m jwt.MapClaims, kid string) (*Claims, error) {
	c := &Claims{Raw: m, kid: kid, TokenType: -1}
	var ok bool
	for name, dst := range map[string]*string{"sub": &c.Subject, "client_id": &c.ClientID, "iss": &c.Issuer, "jti": &c.ID, "sessionHandle": &c.SessionHandle} {
		v, present := m[name]
		if !present {
			continue
		}
		if *dst, ok = v.(string); !ok {
			return nil, reject(ErrMalformed, "%s is not a string", name)
		}
	}
	aud, err := m.GetAudience()
	if err != nil {
		return nil, reject(ErrAudience, "aud is neither a string nor an array of strings")
	}
	c.Audience = aud
	if v, present := m["scp"]; present {
		list, isList := v.([]any)
		if !isList {
			return nil, reject(ErrScopeClaim, "scp must be an array of strings")
		}
		c.Scopes = make([]string, 0, len(list))
		for _, s := range list {
			str, isStr := s.(string)
			if !isStr {
				return nil, reject(ErrScopeClaim, "scp must be an array of strings")
			}
			c.Scopes = append(c.Scopes, str)
		}
	}
	if v, present := m["stt"]; present {
		c.TokenType = -2
		if n, isNum := v.(json.Number); isNum {
			switch n.String() {
			case "0":
				c.TokenType = 0
			case "1":
				c.TokenType = 1
			case "2":
				c.TokenType = 2
			}
		}
	}
	for name, get := range map[string]func() (*jwt.NumericDate, error){"exp": m.GetExpirationTime, "iat": m.GetIssuedAt, "nbf": m.GetNotBefore} {
		d, err := get()
		if err != nil {
			return nil, reject(ErrMalformed, "%s is not a NumericDate", name)
		}
		if d == nil {
			continue
		}
		switch t := d.Time.UTC(); name {
		case "exp":
			c.ExpiresAt = t
		case "iat":
			c.IssuedAt = t
		case "nbf":
			c.NotBefore = t
		}
	}
	return c, nil
}

// header is what precheck learns from the JOSE header.
type header struct {
	kid string
}

// precheck refuses, before any signature work, what golang-jwt would
// accept or misread: anything but compact serialization in strict
// base64url, duplicate JSON member names, an alg outside the allow-list,
// key-locating headers and crit.
func precheck(raw string, algs []string) (header, error) {
	var h header
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return h, reject(ErrMalformed, "not a compact JWS in base64url")
		}
	}
	if dots != 2 {
		return h, reject(ErrMalformed, "not a compact JWS (three parts)")
	}
	parts := strings.SplitN(raw, ".", 3)
	hb, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return h, reject(ErrMalformed, "header is not base64url")
	}
	pb, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return h, reject(ErrMalformed, "payload is not base64url")
	}
	if err := noDuplicateMembers(hb); err != nil {
		return h, reject(ErrMalformed, "header: %v", err)
	}
	if err := noDuplicateMembers(pb); err != nil {
		return h, reject(ErrMalformed, "payload: %v", err)
	}
	var hdr struct {
		Alg                      json.RawMessage `json:"alg"`
		Kid                      json.RawMessage `json:"kid"`
		JKU, X5U, JWK, X5C, Crit json.RawMessage
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return h, reject(ErrMalformed, "header is not a JSON object")
	}
	// Key-locating headers are never used to find keys, and no extension
	// is understood: such a token is refused rather than verified with a
	// key it did not choose.
	for name, v := range map[string]json.RawMessage{"jku": hdr.JKU, "x5u": hdr.X5U, "jwk": hdr.JWK, "x5c": hdr.X5C, "crit": hdr.Crit} {
		if v != nil {
			return h, reject(ErrUnsupportedHeader, "%q", name)
		}
	}
	var alg string
	if json.Unmarshal(hdr.Alg, &alg) != nil || !slices.Contains(algs, alg) {
		return h, reject(ErrAlgorithm, "%q", truncate(alg, 16))
	}
	if hdr.Kid != nil {
		if json.Unmarshal(hdr.Kid, &h.kid) != nil || h.kid == "" {
			return h, reject(ErrMalformed, "kid is not a non-empty string")
		}
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

var errDuplicate = errors.New("duplicate member name")

// noDuplicateMembers reports an error if any JSON object in b names a
// member twice: encoding/json would silently keep the last one, and
// another parser the first. It only finds member names; the JSON parser
// that runs later rejects anything else that is malformed.
func noDuplicateMembers(b []byte) error {
	type frame struct {
		object, expectKey bool
		keys              [][]byte
	}
	var buf [8]frame
	stack := buf[:0]
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			stack = append(stack, frame{object: true, expectKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			if len(stack) == 0 {
				return errors.New("unbalanced JSON")
			}
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		case '"':
			start := i
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return errors.New("unterminated string")
			}
			top := len(stack) - 1
			if top < 0 || !stack[top].object || !stack[top].expectKey {
				continue
			}
			key := b[start+1 : i]
			if bytes.IndexByte(key, '\\') >= 0 {
				var s string
				if err := json.Unmarshal(b[start:i+1], &s); err != nil {
					return err
				}
				key = []byte(s)
			}
			for _, k := range stack[top].keys {
				if bytes.Equal(k, key) {
					return errDuplicate
				}
			}
			stack[top].keys = append(stack[top].keys, key)
			stack[top].expectKey = false
		}
	}
	return nil
}
