package wire

import (
	"bytes"
	"strings"
)

// Scrubber removes a client secret from server text. (Interim version.)
type Scrubber struct{ forms []string }

// NewScrubber returns a Scrubber for secret.
func NewScrubber(clientID, secret string) *Scrubber {
	if secret == "" {
		return &Scrubber{}
	}
	return &Scrubber{forms: []string{secret}}
}

// Bytes scrubs b.
func (s *Scrubber) Bytes(b []byte, cut bool) []byte {
	for _, f := range s.forms {
		b = bytes.ReplaceAll(b, []byte(f), []byte("[REDACTED]"))
	}
	return b
}

// String scrubs v.
func (s *Scrubber) String(v string, cut bool) string {
	for _, f := range s.forms {
		v = strings.ReplaceAll(v, f, "[REDACTED]")
	}
	return v
}

// Truncate scrubs v then cuts it to n bytes.
func (s *Scrubber) Truncate(v string, n int) string { return truncate(s.String(v, false), n) }
