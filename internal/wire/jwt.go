package wire

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxJWT bounds the token JWTExpiry is willing to decode.
const maxJWT = 64 << 10

// JWTExpiry reads the exp claim of a compact JWS without verifying it. It
// is only used to learn how long a token the server just handed us lives
// when the response has no expires_in; it never establishes trust.
// ok is false when token is not a JWT with a numeric, finite exp.
func JWTExpiry(token string) (exp time.Time, ok bool) {
	if len(token) > maxJWT {
		return time.Time{}, false
	}
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return time.Time{}, false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
	}
	// NumericDate (RFC 7519 §2) is a JSON number; a string is refused.
	if json.Unmarshal(payload, &claims) != nil || len(claims.Exp) == 0 || claims.Exp[0] == '"' {
		return time.Time{}, false
	}
	secs, err := strconv.ParseFloat(string(claims.Exp), 64)
	// Reject values time.Unix cannot represent sensibly (year > 9999).
	if err != nil || math.IsNaN(secs) || secs <= 0 || secs > 253402300799 {
		return time.Time{}, false
	}
	whole, frac := math.Modf(secs)
	return time.Unix(int64(whole), int64(frac*1e9)), true
}
