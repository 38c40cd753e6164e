// Package backoff computes retry delays: capped exponential backoff with
// full jitter, and the Retry-After header of RFC 9110 §10.2.3.
package backoff

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Delay returns the wait before retry number attempt (0 for the first
// retry): a uniformly random duration in [0, min(max, base·2^attempt)),
// "full jitter", so clients that failed together do not retry together.
// r is a random number in [0, 1).
func Delay(attempt int, base, max time.Duration, r float64) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	ceil := base
	for i := 0; i < attempt && ceil < max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, max)
	return time.Duration(r * float64(ceil))
}

// RetryAfter parses a Retry-After value, delay-seconds or an HTTP-date,
// relative to now. ok is false when the value is absent or malformed; a
// date in the past is a zero delay.
func RetryAfter(value string, now time.Time) (d time.Duration, ok bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
