package wire

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testID     = "svc-a"
	testSecret = `S3c/+ <é😀"`
)

func TestScrubberForms(t *testing.T) {
	t.Parallel()
	sc := NewScrubber(testID, testSecret)
	// Written out by hand, so a mistake in how the Scrubber derives its
	// forms cannot hide here.
	forms := map[string]string{
		"raw":                      testSecret,
		"query escaped":            `S3c%2F%2B+%3C%C3%A9%F0%9F%98%80%22`,
		"query escaped, lower":     `S3c%2f%2b+%3c%c3%a9%f0%9f%98%80%22`,
		"path escaped":             `S3c%2F+%20%3C%C3%A9%F0%9F%98%80%22`,
		"path escaped, lower":      `S3c%2f+%20%3c%c3%a9%f0%9f%98%80%22`,
		"json":                     `S3c/+ \u003cé😀\"`,
		"json, no html escaping":   `S3c/+ <é😀\"`,
		"json, slash escaped":      `S3c\/+ <é😀\"`,
		"json, all escaped":        `S3c\u002f\u002b\u0020\u003c\u00e9\ud83d\ude00\u0022`,
		"json, all escaped, upper": `S3c\u002F\u002B\u0020\u003C\u00E9\uD83D\uDE00\u0022`,
	}
	for _, plain := range []struct{ name, text string }{
		{"id:secret", testID + ":" + testSecret},
		{"basic credential", testID + ":" + `S3c%2F%2B+%3C%C3%A9%F0%9F%98%80%22`},
		{"secret", testSecret},
	} {
		std := base64.StdEncoding.EncodeToString([]byte(plain.text))
		urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(std)
		forms["base64 "+plain.name] = std
		forms["base64url "+plain.name] = urlSafe
		forms["base64 unpadded "+plain.name] = strings.TrimRight(std, "=")
		forms["base64url unpadded "+plain.name] = strings.TrimRight(urlSafe, "=")
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			text := `{"error":"invalid_client","echo":"` + form + `" and again:` + form
			want := `{"error":"invalid_client","echo":"[REDACTED]" and again:[REDACTED]`
			assert.Equal(t, want, sc.String(text, false))
			assert.Equal(t, want, string(sc.Bytes([]byte(text), false)))
			assert.Equal(t, want, sc.String(text, true))
		})
	}
}

func TestScrubberCut(t *testing.T) {
	t.Parallel()
	sc := NewScrubber(testID, testSecret)
	b64 := base64.StdEncoding.EncodeToString([]byte(testID + ":" + testSecret))
	tests := []struct {
		name, text string
		cut        bool
		want       string
	}{
		{"4-byte prefix at the end", "x " + testSecret[:4], true, "x [REDACTED]"},
		{"long prefix at the end", "x " + testSecret[:len(testSecret)-1], true, "x [REDACTED]"},
		{"escaped prefix at the end", "x S3c%2F%2", true, "x [REDACTED]"},
		{"base64 prefix at the end", "Basic " + b64[:10], true, "Basic [REDACTED]"},
		{"full and partial", testSecret + " " + testSecret[:5], true, "[REDACTED] [REDACTED]"},
		{"prefix not at the end", testSecret[:5] + "xyz", true, testSecret[:5] + "xyz"},
		{"3-byte prefix is kept", "x " + testSecret[:3], true, "x " + testSecret[:3]},
		{"not cut: prefix is kept", "x " + testSecret[:5], false, "x " + testSecret[:5]},
		{"nothing to scrub", "plain text", true, "plain text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, sc.String(tc.text, tc.cut))
			assert.Equal(t, tc.want, string(sc.Bytes([]byte(tc.text), tc.cut)))
		})
	}
}

// Encodings other encoders choose: HTML character references (an error
// page), "+" for a space (form encoders of other languages, which also
// escape other characters than Go's), and a cut inside an escape.
func TestScrubberOtherEncoders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, secret, text string
		cut                bool
		want               string
	}{
		{"html references", `Tr0ub4dor&3"x`, "<p>bad secret Tr0ub4dor&amp;3&#34;x</p>", false, "<p>bad secret [REDACTED]</p>"},
		{"html hex reference", `Tr0ub4dor&3'x`, "Tr0ub4dor&amp;3&#x27;x!", false, "[REDACTED]!"},
		{"plus and another escape", "correct horse~battery", "secret=correct+horse%7Ebattery;", false, "secret=[REDACTED];"},
		{"plus and a plain mark", "correct horse!battery", "secret=correct+horse!battery", false, "secret=[REDACTED]"},
		{"plus is a plus without a space in the secret", "a+b+c+d+e", "a%2Bb%2Bc+d+e", false, "[REDACTED]"},
		{"cut after a percent", "Zq8vN2rT5w", "x %5A%71%38%76%", true, "x [REDACTED]"},
		{"cut inside a percent escape", "Zq8vN2rT5w", "x %5A%71%38%76%4", true, "x [REDACTED]"},
		{"cut inside a unicode escape", "Zq8vN2rT5w", `x \u005a\u0071\u0038\u0076\u00`, true, "x [REDACTED]"},
		{"cut inside an html reference", "Zq8v&N2rT5w", "x Zq8v&am", true, "x [REDACTED]"},
		{"a reference as text, json escapes", "pässw&lt;rd9", `p\u00e4ssw&lt;rd9!`, false, "[REDACTED]!"},
		{"a numeric reference as text", "ünïcode&#38;Q", `\u00fcn\u00efcode&#38;Q`, false, "[REDACTED]"},
		{"a reference as text, percent escapes", "50%&amp;Q9z", "50%25&amp;Q9z.", false, "[REDACTED]."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, NewScrubber(testID, tc.secret).String(tc.text, tc.cut))
		})
	}
}

func TestScrubberTruncate(t *testing.T) {
	t.Parallel()
	sc := NewScrubber(testID, testSecret)
	tests := []struct {
		name, text string
		n          int
		want       string
	}{
		{"short text kept", "abc", 5, "abc"},
		{"cut with ellipsis", "abcdef", 3, "abc…"},
		{"cut on a rune boundary", "aé", 2, "a…"},
		{"secret across the limit", strings.Repeat("a", 10) + testSecret + "tail", 14, strings.Repeat("a", 10) + "[RED…"},
		{"secret prefix across the limit", strings.Repeat("a", 10) + testSecret[:6] + "zz", 15, strings.Repeat("a", 10) + "…"},
		{"secret ends at the limit", "ab" + testSecret, 2 + len(testSecret), "ab[REDACTED]"},
		{"negative limit", "abc", -1, "…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, sc.Truncate(tc.text, tc.n))
		})
	}
}

func TestScrubberNoSecret(t *testing.T) {
	t.Parallel()
	for name, sc := range map[string]*Scrubber{"nil": nil, "empty secret": NewScrubber("id", "")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := []byte("text [REDACTED] id:")
			assert.Equal(t, &b[0], &sc.Bytes(b, true)[0], "the same slice")
			assert.Equal(t, "text id", sc.String("text id", true))
			assert.Equal(t, "ab…", sc.Truncate("abcd", 2))
			assert.Empty(t, sc.Bytes(nil, true))
		})
	}
}

// TestScrubberMarkerClash covers secrets that could combine with the
// marker into one of their forms.
func TestScrubberMarkerClash(t *testing.T) {
	t.Parallel()
	const allMarkers = "#[REDACTED]<redacted>(redacted)***"
	tests := []struct {
		name, secret, text, want string
	}{
		{"inside the marker", "ACT", "x ACT y", "x <redacted> y"},
		{"the marker itself", "[REDACTED]", "x [REDACTED] y", "x <redacted> y"},
		{"starts with its end", "]x", "a]xx", "a<redacted>x"},
		{"clashes with every marker", allMarkers, "a " + allMarkers + " b", ""},
		{"clashes with every marker, nothing to scrub", allMarkers, "a b", "a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := NewScrubber("id", tc.secret).String(tc.text, false)
			assert.Equal(t, tc.want, got)
			assert.NotContains(t, got, tc.secret)
		})
	}
}

// TestParseScrubbed checks that server text quoted in a 2xx error is
// scrubbed.
func TestParseScrubbed(t *testing.T) {
	t.Parallel()
	sc := NewScrubber(testID, "hunter2-secret")
	const secret = "hunter2-secret"
	t.Run("2xx messages", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{
			`{"access_token":"a","token_type":"` + secret + `"}`,
			`{"access_token":"a","expires_in":"` + secret + `"}`,
		} {
			_, err := ParseScrubbed(sc, 200, http.Header{}, []byte(body), false, now, time.Minute)
			require.ErrorIs(t, err, ErrInvalidResponse)
			assert.NotContains(t, err.Error(), secret[:4])
		}
	})
}

// TestTruncateValidUTF8 checks that a cut never splits a rune.
func TestTruncateValidUTF8(t *testing.T) {
	t.Parallel()
	sc := NewScrubber("id", "ünïcode-sécret")
	text := strings.Repeat("é", 20) + "ünïcode-sécret" + strings.Repeat("😀", 5)
	for n := range len(text) + 2 {
		got := sc.Truncate(text, n)
		require.True(t, utf8.ValidString(got), "n=%d: %q", n, got)
		require.NotContains(t, got, "ünïc", "n=%d", n)
	}
}

// BenchmarkScrub measures the error-path cost of scrubbing: a 1 MiB body
// cut at the limit and a description at its limit, each holding the
// secret once, against bytes.ReplaceAll of the raw secret alone.
func BenchmarkScrub(b *testing.B) {
	sc := NewScrubber(testID, testSecret)
	body := []byte(strings.Repeat("lorem ipsum ", MaxBody/12) + testSecret)
	desc := strings.Repeat("d", MaxErrorDescription-4) + testSecret
	b.Run("NewScrubber", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewScrubber(testID, testSecret)
		}
	})
	b.Run("Bytes/1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			sc.Bytes(body, true)
		}
	})
	b.Run("ReplaceAll/1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			bytes.ReplaceAll(body, []byte(testSecret), []byte("[REDACTED]"))
		}
	})
	b.Run("Truncate/description", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sc.Truncate(desc, MaxErrorDescription)
		}
	})
}
