package verify

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSameHTU pins RFC 9449 §4.3's comparison: query and fragment
// ignored, RFC 3986 §6.2.2 and §6.2.3 normalization, nothing looser.
func TestSameHTU(t *testing.T) {
	t.Parallel()
	const want = "https://api.example.com/events/a%2Fb"
	tests := []struct {
		name, htu string
		same      bool
	}{
		{"exact", want, true},
		{"query ignored", want + "?x=1", true},
		{"fragment ignored", want + "#f", true},
		{"scheme and host case", "HTTPS://API.Example.COM/events/a%2Fb", true},
		{"default port", "https://api.example.com:443/events/a%2Fb", true},
		{"empty port", "https://api.example.com:/events/a%2Fb", true},
		{"lower-case hex", "https://api.example.com/events/a%2fb", true},
		{"encoded unreserved", "https://api.example.com/%65vents/a%2Fb", true},
		{"dot segments", "https://api.example.com/x/../events/./a%2Fb", true},
		{"encoded dot segment", "https://api.example.com/x/%2E%2E/events/a%2Fb", true},
		{"path case", "https://api.example.com/Events/a%2Fb", false},
		{"encoded slash is not a slash", "https://api.example.com/events/a/b", false},
		{"trailing slash", want + "/", false},
		{"double slash", "https://api.example.com//events/a%2Fb", false},
		{"other port", "https://api.example.com:8443/events/a%2Fb", false},
		{"port 80 on https", "https://api.example.com:80/events/a%2Fb", false},
		{"http", "http://api.example.com/events/a%2Fb", false},
		{"other host", "https://api.example.org/events/a%2Fb", false},
		{"user info", "https://u@api.example.com/events/a%2Fb", false},
		{"relative", "/events/a%2Fb", false},
		{"no scheme", "//api.example.com/events/a%2Fb", false},
		{"other scheme", "wss://api.example.com/events/a%2Fb", false},
		{"bad escape", "https://api.example.com/events/a%2", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.same, sameHTU(tc.htu, want))
		})
	}
	assert.True(t, sameHTU("http://h:80", "http://h/"), "empty path is /, port 80 is http's")
	assert.True(t, sameHTU("http://[::1]:80/a", "http://[::1]/a"))
	assert.True(t, sameHTU("https://h/a/b/..", "https://h/a/"))
	for _, same := range []string{"", "/events", "http://", "https:///events", "http://?x", "events"} {
		assert.False(t, sameHTU(same, same), "%q names no host", same)
	}
}

// TestRequestURL: the URL Middleware expects in htu, from the request or
// from Config.
func TestRequestURL(t *testing.T) {
	t.Parallel()
	plain := httptest.NewRequest("GET", "http://10.0.0.5:8080/events/a%2Fb?x=1", nil)
	overTLS := httptest.NewRequest("GET", "/events", nil)
	overTLS.Host = "api.example.com"
	overTLS.TLS = &tls.ConnectionState{}
	tests := []struct {
		name string
		cfg  Config
		r    string
		want string
	}{
		{"from the request", Config{}, "plain", "http://10.0.0.5:8080/events/a%2Fb"},
		{"over TLS", Config{}, "tls", "https://api.example.com/events"},
		{"base URL", Config{DPoPBaseURL: "https://API.example.com:443/"}, "plain", "https://api.example.com/events/a%2Fb"},
		{"base URL with a prefix", Config{DPoPBaseURL: "https://example.com/calendar"}, "plain", "https://example.com/calendar/events/a%2Fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := &Verifier{cfg: tc.cfg}
			v.base, _ = baseURL(tc.cfg.DPoPBaseURL)
			r := plain
			if tc.r == "tls" {
				r = overTLS
			}
			assert.Equal(t, tc.want, v.requestURL(r))
		})
	}
	for _, bad := range []string{"api.example.com", "https://api.example.com/?x", "https://api.example.com/#x", "ftp://h", "https://u:p@h"} {
		_, ok := baseURL(bad)
		assert.False(t, ok, bad)
	}
}
