package wire

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"a","expires_in":3599,"scope":"event.create","token_type":"bearer","status":"OK"}`},
		{200, `{"access_token":"a","expires_in":"60"}`},
		{200, `{"access_token":"a","expires_in":1e300,"token_type":"Bearer"}`},
		{200, `{"access_token":"` + jwtWith(`{"exp":1800000000}`) + `"}`},
		{200, `{"access_token":"a\u0000b"}`},
		{200, `<html>`},
		{401, `{"error":"invalid_client","error_description":"x"}`},
		{500, ``},
	} {
		f.Add(seed.status, []byte(seed.body), false)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, truncated bool) {
		tok, err := Parse(status, http.Header{}, body, truncated, now, time.Minute)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("untyped error %v", err)
			}
			if tok != nil {
				t.Fatal("token with an error")
			}
			return
		}
		if status < 200 || status > 299 {
			t.Fatalf("status %d gave a token", status)
		}
		if tok.AccessToken == "" || !HeaderSafe(tok.AccessToken) {
			t.Fatalf("unusable token %q", tok.AccessToken)
		}
		if tok.Lifetime <= 0 || tok.Lifetime > MaxLifetime {
			t.Fatalf("lifetime %v out of range", tok.Lifetime)
		}
		if tok.TokenType != "Bearer" {
			t.Fatalf("token type %q", tok.TokenType)
		}
	})
}

func FuzzJWTExpiry(f *testing.F) {
	for _, seed := range []string{
		jwtWith(`{"exp":1700000000}`), jwtWith(`{"exp":1.5e9}`), jwtWith(`{"exp":"1"}`),
		jwtWith(`{"exp":-1}`), jwtWith(`{"exp":1e400}`), "a.b.c", "...", "", "e30.e30.e30",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		exp, ok := JWTExpiry(token)
		if !ok {
			if !exp.IsZero() {
				t.Fatal("a time without ok")
			}
			return
		}
		if exp.Unix() <= 0 || exp.Year() > 9999 {
			t.Fatalf("exp %v out of range", exp)
		}
	})
}

// FuzzScrub checks the Scrubber against forms of the secret built here by
// other means (by hand, byte by byte, after the rules of net/url,
// encoding/json and RFC 4648): no form survives anywhere, no 4-byte or
// longer prefix of one survives at the end of a cut text, Truncate keeps
// its limit, and text with nothing to scrub is left alone.
func FuzzScrub(f *testing.F) {
	for _, seed := range []struct {
		id, secret, text string
		cut              bool
		n                int
	}{
		{"svc", testSecret, "echo " + testSecret + " and " + `S3c%2f%2b`, true, 12},
		{"svc", "hunter2", "Basic c3ZjOmh1bnRlcjI=", false, 8},
		{"svc", "p@ss/word", `{"error_description":"p\u0040ss\/word"}`, true, 30},
		{"", "ACT", "[REDACTED] ACT", false, 3},
		{"a:b", "]x[", "]x[]x[", true, 2},
		{"id", "😀x", `\uD83D\uDE00x \ud83d\ude00`, true, 5},
		{"id", "\xff\xfe", `\u00ff\u00FE`, false, 1},
	} {
		f.Add(seed.id, seed.secret, seed.text, seed.cut, seed.n, uint8(0), uint16(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, id, secret, text string, cut bool, n int, form uint8, at uint16, tail uint8) {
		sc := NewScrubber(id, secret)
		if secret == "" {
			if out := sc.String(text, cut); out != text {
				t.Fatalf("no secret, yet %q became %q", text, out)
			}
			return
		}
		forms := oracleForms(id, secret)
		checkScrubber(t, sc, forms, text, cut, n)
		// The same with a form put into the text, and the start of one
		// after it: random text seldom holds an escaped secret.
		f := forms[int(form)%len(forms)]
		i := int(at) % (len(text) + 1)
		g := forms[int(form/2)%len(forms)]
		checkScrubber(t, sc, forms, text[:i]+f+text[i:]+g[:int(tail)%len(g)], cut, n)
	})
}

// checkScrubber checks String, Bytes and Truncate on one text.
func checkScrubber(t *testing.T, sc *Scrubber, forms []string, text string, cut bool, n int) {
	t.Helper()
	out := sc.String(text, cut)
	if string(sc.Bytes([]byte(text), cut)) != out {
		t.Fatalf("Bytes and String disagree on %q", text)
	}
	checkScrubbed(t, out, forms, cut)
	// Text with escapes may spell the secret in a mix of escaped and plain
	// characters, which the scrubber finds by decoding; the forms above
	// do not list every mix, so only plain text must come out unchanged.
	plain := !strings.ContainsAny(text, `\%`)
	if plain && oracleContains(text, forms) == "" && (!cut || oracleTail(text, forms) == "") && out != text {
		t.Fatalf("nothing to scrub in %q, yet it became %q", text, out)
	}

	n %= 600
	cutOut := sc.Truncate(text, n)
	scrubbed := sc.String(text, false)
	switch {
	case len(scrubbed) <= n:
		if cutOut != scrubbed {
			t.Fatalf("Truncate(%q, %d) = %q, want %q", text, n, cutOut, scrubbed)
		}
		checkScrubbed(t, cutOut, forms, false)
	default:
		if len(cutOut) > max(n, 0)+len("…") {
			t.Fatalf("Truncate(%q, %d) is %d bytes long", text, n, len(cutOut))
		}
		checkScrubbed(t, cutOut, forms, true)
		for _, e := range []string{"…", "..."} {
			checkScrubbed(t, strings.TrimSuffix(cutOut, e), forms, true)
		}
	}
	if utf8.ValidString(text) && utf8.ValidString(sc.String(text, false)) && !utf8.ValidString(cutOut) {
		t.Fatalf("Truncate(%q, %d) = %q splits a rune", text, n, cutOut)
	}
}

func checkScrubbed(t *testing.T, out string, forms []string, cut bool) {
	t.Helper()
	if f := oracleContains(out, forms); f != "" {
		t.Fatalf("%q still holds the form %q", out, f)
	}
	if cut {
		if p := oracleTail(out, forms); p != "" {
			t.Fatalf("%q still ends with %q, the start of a form", out, p)
		}
	}
}

func oracleContains(text string, forms []string) string {
	for _, f := range forms {
		if strings.Contains(text, f) {
			return f
		}
	}
	return ""
}

// oracleTail returns a suffix of text that is a prefix of a form at least
// 4 bytes long, or "".
func oracleTail(text string, forms []string) string {
	for _, f := range forms {
		for k := 4; k < len(f) && k <= len(text); k++ {
			if strings.HasSuffix(text, f[:k]) {
				return f[:k]
			}
		}
	}
	return ""
}

// oracleForms builds the forms of a secret a server may echo, byte by
// byte, without the url, json or base64 encoders the Scrubber uses.
func oracleForms(id, secret string) []string {
	unreserved := func(c byte) bool { return isAlnum(c) || strings.IndexByte("-_.~", c) >= 0 }
	escape := func(s string, keep func(byte) bool, space, hex string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == ' ' && space != "":
				b.WriteString(space)
			case keep(c):
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "%%"+hex, c)
			}
		}
		return b.String()
	}
	query := func(s, hex string) string { return escape(s, unreserved, "+", hex) }
	path := func(s, hex string) string {
		return escape(s, func(c byte) bool { return unreserved(c) || strings.IndexByte("$&+:=@", c) >= 0 }, "", hex)
	}
	jsonGo := func(s string, html bool, slash string) string {
		var b strings.Builder
		for i, r := range s {
			switch {
			case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\xef\xbf\xbd"):
				b.WriteString(`\ufffd`)
			case r == '"' || r == '\\':
				b.WriteString(`\` + string(r))
			case r == '/':
				b.WriteString(slash)
			case strings.ContainsRune("\b\f\n\r\t", r):
				b.WriteString(strings.NewReplacer("\b", `\b`, "\f", `\f`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(string(r)))
			case r < 0x20 || (html && strings.ContainsRune("<>&", r)) || r == 0x2028 || r == 0x2029:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	allEscaped := func(s, hex string) string {
		var b strings.Builder
		for i, r := range s {
			switch {
			case r < 0x80 && isAlnum(byte(r)):
				b.WriteRune(r)
			case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\xef\xbf\xbd"):
				fmt.Fprintf(&b, `\u`+hex, s[i])
			case r >= 0x10000:
				r -= 0x10000
				fmt.Fprintf(&b, `\u`+hex+`\u`+hex, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
			default:
				fmt.Fprintf(&b, `\u`+hex, r)
			}
		}
		return b.String()
	}
	forms := []string{
		secret, query(secret, "%02X"), query(secret, "%02x"), path(secret, "%02X"), path(secret, "%02x"),
		jsonGo(secret, true, "/"), jsonGo(secret, false, "/"), jsonGo(secret, false, `\/`),
		allEscaped(secret, "%04x"), allEscaped(secret, "%04X"),
	}
	for _, plain := range []string{id + ":" + secret, query(id, "%02X") + ":" + query(secret, "%02X"), secret} {
		std := oracleBase64(plain)
		url := strings.NewReplacer("+", "-", "/", "_").Replace(std)
		forms = append(forms, std, url, strings.TrimRight(std, "="), strings.TrimRight(url, "="))
	}
	return forms
}

// oracleBase64 is RFC 4648 §4 base64, written out.
func oracleBase64(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	for i := 0; i < len(s); i += 3 {
		chunk := []byte(s[i:min(i+3, len(s))])
		var v uint32
		for j := range 3 {
			v <<= 8
			if j < len(chunk) {
				v |= uint32(chunk[j])
			}
		}
		for j := range 4 {
			if j <= len(chunk) {
				b.WriteByte(alphabet[v>>(18-6*j)&0x3F])
			} else {
				b.WriteByte('=')
			}
		}
	}
	return b.String()
}
