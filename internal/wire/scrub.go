package wire

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The limits on the server text an *ErrorBody keeps, applied after the
// client secret has been scrubbed from it.
const (
	MaxErrorCode        = 64  // "error"
	MaxErrorDescription = 512 // "error_description"
	MaxErrorURI         = 512 // "error_uri"
	MaxLocation         = 512 // the Location header of a redirect
)

// minPartial is the shortest trailing prefix of a secret's form that is
// scrubbed from text cut at a length limit; a shorter one is too likely to
// be ordinary text.
const minPartial = 4

// Markers that may stand in for a scrubbed secret, in order of preference;
// the first that cannot combine with the text around it into a form of the
// secret is used (see overlaps); the same goes for the ellipsis.
var (
	markers  = []string{"[REDACTED]", "<redacted>", "(redacted)", "***", "#"}
	ellipses = []string{"…", "...", ""}
)

// A Scrubber removes a client secret from text a server may echo back: an
// error description, an error URI, a redirect location, a response body. It
// knows the forms in which a server may have received or re-encoded the
// secret: raw; query- and path-escaped with upper- or lower-case hex; JSON
// string escapes (as encoding/json writes them, with and without HTML
// escaping and with "\/", and with every non-alphanumeric character a \u
// escape in either case, non-BMP runes as surrogate pairs); and standard or
// URL-safe, padded or unpadded base64 of "id:secret", of the RFC 6749
// §2.3.1 Basic credential (both halves query-escaped), and of the secret
// alone.
//
// A Scrubber is immutable once made and safe for concurrent use. A nil
// Scrubber, or one made for an empty secret, leaves text unchanged (apart
// from the cut Truncate makes). It is meant for error paths: it costs about
// one pass over the text per call.
type Scrubber struct {
	secret   string            // the raw secret, found in text read with escapes decoded
	forms    []string          // longest first, no duplicates, none empty
	replacer *strings.Replacer // every form → marker, leftmost, longest at a position; nil if marker is ""
	// marker stands in for a scrubbed form. It is "" when every candidate
	// could combine with its neighbours into a form (a crafted secret); a
	// text that holds anything to scrub is then dropped whole.
	marker   string
	ellipsis string // ends a cut text; never combines into a form either
}

// NewScrubber precomputes the forms of secret (sent by the client clientID)
// to remove from server text.
func NewScrubber(clientID, secret string) *Scrubber {
	if secret == "" {
		return &Scrubber{ellipsis: ellipses[0]}
	}
	s := &Scrubber{secret: secret, forms: secretForms(clientID, secret)}
	s.marker = pick(markers, s.forms)
	s.ellipsis = pick(ellipses, s.forms)
	if s.marker != "" {
		oldnew := make([]string, 0, 2*len(s.forms))
		for _, f := range s.forms {
			oldnew = append(oldnew, f, s.marker)
		}
		s.replacer = strings.NewReplacer(oldnew...)
	}
	return s
}

// String returns text with every occurrence of a form of the secret
// replaced by "[REDACTED]". When cut is true (the text was cut at a length
// limit), a suffix of the text that is a prefix, at least 4 bytes long, of
// a form is replaced too: it may be the start of the secret.
//
// A secret that could combine with "[REDACTED]" and the text around it
// into one of its forms (it contains the marker, say, or begins with "]")
// gets another marker; if every candidate could, String returns "" for any
// text that holds something to scrub.
func (s *Scrubber) String(text string, cut bool) string {
	if s == nil || len(s.forms) == 0 {
		return text
	}
	if s.marker == "" {
		if (cut && s.partial(text) > 0) || slices.ContainsFunc(s.forms, func(f string) bool { return strings.Contains(text, f) }) {
			return ""
		}
		return text
	}
	out := s.replacer.Replace(text)
	if cut {
		if tail := s.partial(out); tail > 0 {
			out = out[:len(out)-tail] + s.marker
		}
	}
	return s.scrubEscaped(out, cut)
}

// scrubEscaped finds the secret in text read with its escapes decoded
// (JSON "\uXXXX" with surrogate pairs and the short escapes, "%XX" in
// either case, HTML character references such as "&amp;" and "&#34;",
// and, for a secret with a space, "+" as a space), whatever mix of escaped
// and plain characters a server's encoder chose, and replaces the escaped
// spans that spell it. When cut is true, a decoded suffix that is a prefix
// (at least minPartial bytes) of the secret is replaced too, with an
// escape the cut left unfinished after it.
func (s *Scrubber) scrubEscaped(text string, cut bool) string {
	// Each reading is a pass of its own: a secret that holds "&lt;" or
	// "+" as text must still be found where they were not decoded.
	for _, r := range []struct{ html, plus bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		if !r.plus || strings.Contains(s.secret, " ") {
			text = s.scrubDecoded(text, cut, r.html, r.plus)
		}
	}
	return text
}

// scrubDecoded is one pass of scrubEscaped: html decodes HTML character
// references, plusIsSpace reads "+" as a space, as form decoders do.
func (s *Scrubber) scrubDecoded(text string, cut, html, plusIsSpace bool) string {
	escapes := `\%`
	if html {
		escapes += "&"
	}
	if plusIsSpace {
		escapes += "+"
	}
	if !strings.ContainsAny(text, escapes) {
		return text
	}
	dec := make([]byte, 0, len(text))
	origin := make([]int, 0, len(text)+1) // origin[i]: where decoded byte i starts in text
	for i := 0; i < len(text); {
		start := i
		var r rune = -1
		var ref string
		switch {
		case text[i] == '%' && i+2 < len(text) && IsHex(text[i+1]) && IsHex(text[i+2]):
			dec = append(dec, Unhex(text[i+1])<<4|Unhex(text[i+2]))
			origin = append(origin, start)
			i += 3
			continue
		case text[i] == '+' && plusIsSpace:
			dec = append(dec, ' ')
			origin = append(origin, start)
			i++
			continue
		case text[i] == '\\' && i+5 < len(text) && text[i+1] == 'u' && isHex4(text[i+2:i+6]):
			r = rune(hex4(text[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) && i+5 < len(text) && text[i] == '\\' && text[i+1] == 'u' && isHex4(text[i+2:i+6]) {
				if pair := utf16.DecodeRune(r, rune(hex4(text[i+2:i+6]))); pair != utf8.RuneError {
					r = pair
					i += 6
				}
			}
		case text[i] == '\\' && i+1 < len(text) && strings.IndexByte(`"\\/bfnrt`, text[i+1]) >= 0:
			r = rune(map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}[text[i+1]])
			i += 2
		case html && text[i] == '&' && htmlReference(text[i:]) != "":
			ref = htmlReference(text[i:])
			i += len(ref)
		default:
			dec = append(dec, text[i])
			origin = append(origin, start)
			i++
			continue
		}
		decoded := string(r)
		if ref != "" {
			decoded = unescapeHTML(ref)
		}
		for _, b := range []byte(decoded) {
			dec = append(dec, b)
			origin = append(origin, start)
		}
	}
	origin = append(origin, len(text))
	var spans [][2]int
	for from := 0; ; {
		k := bytes.Index(dec[from:], []byte(s.secret))
		if k < 0 {
			break
		}
		k += from
		spans = append(spans, [2]int{origin[k], origin[k+len(s.secret)]})
		from = k + len(s.secret)
	}
	if cut {
		// An escape the cut left unfinished ("%4", "\u00", "&am") was
		// read as plain bytes: look for the prefix before it too.
	partial:
		for _, body := range [][]byte{dec, dec[:len(dec)-unfinishedEscape(text)]} {
			for k := min(len(s.secret)-1, len(body)); k >= minPartial; k-- {
				if bytes.HasSuffix(body, []byte(s.secret[:k])) {
					spans = append(spans, [2]int{origin[len(body)-k], len(text)})
					break partial
				}
			}
		}
	}
	if len(spans) == 0 {
		return text
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] < last {
			sp[0] = last
		}
		if sp[1] <= sp[0] {
			continue
		}
		b.WriteString(text[last:sp[0]])
		b.WriteString(s.marker)
		last = sp[1]
	}
	b.WriteString(text[last:])
	return b.String()
}

// unescapeHTML is html.UnescapeString, named apart from scrubDecoded's
// html switch.
func unescapeHTML(s string) string { return html.UnescapeString(s) }

// htmlReference returns the HTML character reference ("&amp;", "&#34;",
// "&#x27;") that text starts with, or "".
func htmlReference(text string) string {
	end := strings.IndexByte(text[:min(len(text), 12)], ';')
	if end < 2 {
		return ""
	}
	ref := text[:end+1]
	if unescapeHTML(ref) == ref {
		return ""
	}
	return ref
}

// unfinishedEscape returns the length of an escape at the end of text
// that a cut left unfinished: "%", "%4", `\`, `\u`, `\u0`, `\u00`,
// `\u004`, or "&" followed by up to ten letters, digits or '#'.
func unfinishedEscape(text string) int {
	n := len(text)
	switch {
	case n >= 1 && (text[n-1] == '%' || text[n-1] == '\\'):
		return 1
	case n >= 2 && text[n-2] == '%' && IsHex(text[n-1]):
		return 2
	}
	if i := strings.LastIndex(text, `\u`); i >= 0 && n-i <= 5 && (i == 0 || text[i-1] != '\\') {
		if rest := text[i+2:]; strings.IndexFunc(rest, func(r rune) bool { return r > 0x7f || !IsHex(byte(r)) }) < 0 {
			return n - i
		}
	}
	if i := strings.LastIndexByte(text, '&'); i >= 0 && n-i <= 11 {
		if rest := text[i+1:]; strings.IndexFunc(rest, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '#')
		}) < 0 {
			return n - i
		}
	}
	return 0
}

func isHex4(s string) bool {
	return len(s) == 4 && IsHex(s[0]) && IsHex(s[1]) && IsHex(s[2]) && IsHex(s[3])
}

func hex4(s string) uint16 {
	return uint16(Unhex(s[0]))<<12 | uint16(Unhex(s[1]))<<8 | uint16(Unhex(s[2]))<<4 | uint16(Unhex(s[3]))
}

// Bytes is String for a byte slice. It returns b itself when there is
// nothing to scrub, and a new slice otherwise.
func (s *Scrubber) Bytes(b []byte, cut bool) []byte {
	if s == nil || len(s.forms) == 0 {
		return b
	}
	text := string(b)
	out := s.String(text, cut)
	if out == text {
		return b
	}
	return []byte(out)
}

// Truncate scrubs text and then cuts it to at most n bytes, on a rune
// boundary, ending it with "…" (or "...", or nothing, for a secret that
// could combine with it into one of its forms). Scrubbing first means a form cut in half
// by the limit is still found; a trailing prefix of a form that the cut
// leaves (at least 4 bytes of it) is dropped as well.
func (s *Scrubber) Truncate(text string, n int) string {
	text = s.String(text, false)
	if len(text) <= n {
		return text
	}
	end := max(n, 0)
	ellipsis := ellipses[0]
	if s != nil {
		ellipsis = s.ellipsis
	}
	for {
		for end > 0 && !isRuneStart(text[end]) {
			end--
		}
		k := s.partial(text[:end])
		if k == 0 {
			return text[:end] + ellipsis
		}
		end -= k
	}
}

// partial returns the length of the longest suffix of text that is a
// proper prefix, at least minPartial bytes long, of a form; 0 if none.
func (s *Scrubber) partial(text string) int {
	if s == nil || text == "" {
		return 0
	}
	last := text[len(text)-1]
	best := 0
	for _, f := range s.forms {
		for k := min(len(f)-1, len(text)); k >= minPartial && k > best; k-- {
			if f[k-1] == last && text[len(text)-k:] == f[:k] {
				best = k
				break
			}
		}
	}
	return best
}

// pick returns the first candidate that no form overlaps, or "".
func pick(candidates, forms []string) string {
	for _, c := range candidates {
		if c == "" || !slices.ContainsFunc(forms, func(f string) bool { return overlaps(f, c) }) {
			return c
		}
	}
	return ""
}

// overlaps reports whether f and m agree wherever they meet in some
// placement that shares at least one byte: f inside m, m inside f, or an
// end of one on the other end of the other. Only then can a marker m put
// into text that holds no form make a form, together with its neighbours.
func overlaps(f, m string) bool {
	for k := 1 - len(f); k < len(m); k++ { // f starts at offset k of m
		lo, hi := max(0, k), min(len(m), k+len(f))
		if m[lo:hi] == f[lo-k:hi-k] {
			return true
		}
	}
	return false
}

// secretForms lists the encodings of secret a server may echo, longest
// first, without duplicates.
func secretForms(clientID, secret string) []string {
	var forms []string
	for _, esc := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		forms = append(forms, esc, lowerPercentHex(esc))
	}
	forms = append(forms, secret, jsonEscape(secret, true), jsonEscape(secret, false),
		strings.ReplaceAll(jsonEscape(secret, false), "/", `\/`),
		jsonEscapeAll(secret, "%04x"), jsonEscapeAll(secret, "%04X"))
	for _, plain := range []string{
		clientID + ":" + secret,
		url.QueryEscape(clientID) + ":" + url.QueryEscape(secret),
		secret,
	} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			forms = append(forms, enc.EncodeToString([]byte(plain)))
		}
	}
	slices.SortFunc(forms, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	return slices.Compact(forms)
}

// lowerPercentHex writes the hex digits of each %XX escape in lower case.
func lowerPercentHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = toLower(b[i+1]), toLower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// jsonEscape returns the inside of the JSON string encoding/json writes.
func jsonEscape(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s) // a string always encodes
	out := strings.TrimSuffix(buf.String(), "\n")
	return out[1 : len(out)-1]
}

// jsonEscapeAll writes every rune but ASCII letters and digits as a \u
// escape (a UTF-16 surrogate pair above U+FFFF), with hexFormat "%04x" or
// "%04X"; a byte that is not UTF-8 becomes \u00XX of its value.
func jsonEscapeAll(s, hexFormat string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r < utf8.RuneSelf && isAlnum(byte(r)):
			b.WriteByte(byte(r))
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\u`+hexFormat, s[i])
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u`+hexFormat+`\u`+hexFormat, hi, lo)
		default:
			fmt.Fprintf(&b, `\u`+hexFormat, r)
		}
		i += size
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
