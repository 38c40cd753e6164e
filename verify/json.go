package verify

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader for the two small documents a token carries (the
// JOSE header and the claims) and for introspection answers. It accepts
// exactly RFC 8259 JSON that is also unambiguous: one value and nothing
// after it but white space, no member name twice in any object (parsers
// disagree on which one wins), strings in valid UTF-8 without unpaired
// surrogate escapes, and nesting at most maxDepth deep. It reads straight
// from the decoded bytes, allocating only for strings with escapes.
//
// Why not encoding/json: it keeps the last of two duplicate members,
// decodes into maps (the bulk of a verifier's allocations), replaces
// invalid UTF-8 silently, and json.Decoder ignores what follows the first
// value.

// maxDepth bounds the nesting of JSON values.
const maxDepth = 32

// syntaxError is a JSON document the reader refuses.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func syntaxErr(msg string) error { return &syntaxError{msg} }

// jsonReader reads one JSON text from s.
type jsonReader struct {
	s     string
	i     int
	depth int
}

func (r *jsonReader) ws() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end (or at a
// NUL byte, which is never valid outside a string: callers that must tell
// the two apart check r.i).
func (r *jsonReader) peek() byte {
	r.ws()
	if r.i >= len(r.s) {
		return 0
	}
	return r.s[r.i]
}

// end checks that only white space follows the value just read.
func (r *jsonReader) end() error {
	if r.ws(); r.i < len(r.s) {
		return syntaxErr("data after the JSON value")
	}
	return nil
}

// nameSet detects a member name seen twice in one object.
type nameSet struct {
	small [16]string
	n     int
	big   map[string]struct{}
}

func (ns *nameSet) add(name string) bool {
	if ns.big != nil {
		if _, dup := ns.big[name]; dup {
			return false
		}
		ns.big[name] = struct{}{}
		return true
	}
	for _, seen := range ns.small[:ns.n] {
		if seen == name {
			return false
		}
	}
	if ns.n < len(ns.small) {
		ns.small[ns.n] = name
		ns.n++
		return true
	}
	ns.big = make(map[string]struct{}, 2*len(ns.small))
	for _, seen := range ns.small {
		ns.big[seen] = struct{}{}
	}
	ns.big[name] = struct{}{}
	return true
}

// objectStart consumes '{'.
func (r *jsonReader) objectStart() error {
	if r.peek() != '{' {
		return syntaxErr("not a JSON object")
	}
	r.i++
	r.depth++
	if r.depth > maxDepth {
		return syntaxErr("JSON nested too deep")
	}
	return nil
}

// member reads the next member name of the object being read and the ':'
// after it, checking it against names. more is false at the closing '}'.
func (r *jsonReader) member(first bool, names *nameSet) (name string, more bool, err error) {
	c := r.peek()
	if c == '}' {
		r.i++
		r.depth--
		return "", false, nil
	}
	if !first {
		if c != ',' {
			return "", false, syntaxErr("expected , or } in object")
		}
		r.i++
		c = r.peek()
	}
	if c != '"' {
		return "", false, syntaxErr("expected a member name")
	}
	name, err = r.str()
	if err != nil {
		return "", false, err
	}
	if !names.add(name) {
		return "", false, syntaxErr("duplicate member " + quoted(name))
	}
	if r.peek() != ':' {
		return "", false, syntaxErr("expected : after a member name")
	}
	r.i++
	return name, true, nil
}

// arrayStart consumes '['.
func (r *jsonReader) arrayStart() error {
	if r.peek() != '[' {
		return syntaxErr("not a JSON array")
	}
	r.i++
	r.depth++
	if r.depth > maxDepth {
		return syntaxErr("JSON nested too deep")
	}
	return nil
}

// element prepares the next array element; more is false at the ']'.
func (r *jsonReader) element(first bool) (more bool, err error) {
	c := r.peek()
	if c == ']' {
		r.i++
		r.depth--
		return false, nil
	}
	if !first {
		if c != ',' {
			return false, syntaxErr("expected , or ] in array")
		}
		r.i++
	}
	return true, nil
}

// str reads a string value (the reader is at its opening quote) and
// returns it unescaped; without escapes it is a substring of the input.
func (r *jsonReader) str() (string, error) {
	raw, escaped, err := r.rawStr()
	if err != nil || !escaped {
		return raw, err
	}
	return unescape(raw), nil
}

// rawStr reads and checks a string, returning its text between the quotes
// still escaped, and whether it holds escapes.
func (r *jsonReader) rawStr() (raw string, escaped bool, err error) {
	if r.peek() != '"' {
		return "", false, syntaxErr("expected a string")
	}
	s := r.s
	start := r.i + 1
	i := start
	for i < len(s) {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			r.i = i + 1
			return s[start:i], escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(s) {
				return "", false, syntaxErr("unterminated string")
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				v, ok := hex4(s, i+2)
				if !ok {
					return "", false, syntaxErr("bad \\u escape")
				}
				i += 6
				switch {
				case utf16.IsSurrogate(rune(v)) && v < 0xDC00:
					lo, ok := hex4(s, i+2)
					if !ok || s[i] != '\\' || s[i+1] != 'u' || lo < 0xDC00 || lo > 0xDFFF {
						return "", false, syntaxErr("unpaired surrogate escape")
					}
					i += 6
				case utf16.IsSurrogate(rune(v)):
					return "", false, syntaxErr("unpaired surrogate escape")
				}
			default:
				return "", false, syntaxErr("bad escape")
			}
		case c < 0x20:
			return "", false, syntaxErr("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			rn, size := utf8.DecodeRuneInString(s[i:])
			if rn == utf8.RuneError && size == 1 {
				return "", false, syntaxErr("invalid UTF-8")
			}
			i += size
		}
	}
	return "", false, syntaxErr("unterminated string")
}

// plain marks the bytes a string holds as they are: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hex4 parses the four hex digits at s[i:i+4].
func hex4(s string, i int) (uint16, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var v uint16
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(c)
	}
	return v, true
}

// unescape decodes the escapes of a string rawStr has checked.
func unescape(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			v, _ := hex4(raw, i+2)
			rn := rune(v)
			if utf16.IsSurrogate(rn) {
				lo, _ := hex4(raw, i+8)
				rn = utf16.DecodeRune(rn, rune(lo))
				i += 6
			}
			b.WriteRune(rn)
			i += 6
			continue
		default: // '"', '\\', '/'
			b.WriteByte(raw[i+1])
		}
		i += 2
	}
	return b.String()
}

// number reads a number and returns its literal.
func (r *jsonReader) number() (string, error) {
	r.ws()
	s, start := r.s, r.i
	i := start
	digits := func() bool {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return "", syntaxErr("expected a value")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return "", syntaxErr("bad number")
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return "", syntaxErr("bad number")
		}
	}
	r.i = i
	return s[start:i], nil
}

// literal reads true, false or null.
func (r *jsonReader) literal() (string, error) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if strings.HasPrefix(r.s[r.i:], lit) {
			r.i += len(lit)
			return lit, nil
		}
	}
	return "", syntaxErr("expected a value")
}

// object reads an object, calling f with each member's name while r is at
// the member's value; f must consume the value (r.skip, r.stringValue,
// …). It stops at the first error. Members named twice are refused.
func (r *jsonReader) object(f func(name string) error) error {
	if err := r.objectStart(); err != nil {
		return err
	}
	var names nameSet
	for first := true; ; first = false {
		name, more, err := r.member(first, &names)
		if err != nil || !more {
			return err
		}
		if err := f(name); err != nil {
			return err
		}
	}
}

// nestedObject is object for a member's value, which must be an object:
// another kind of value is skipped and refused with kind and "<label>
// must be an object".
func (r *jsonReader) nestedObject(kind error, label string, f func(name string) error) error {
	if r.kind() != '{' {
		if err := r.skip(); err != nil {
			return err
		}
		return reject(kind, "%s must be an object", label)
	}
	return r.object(f)
}

// stringValue reads a string value into *dst; another kind of value is
// skipped and refused with kind and "<label> must be a string".
func (r *jsonReader) stringValue(dst *string, kind error, label string) error {
	if r.kind() != '"' {
		if err := r.skip(); err != nil {
			return err
		}
		return reject(kind, "%s must be a string", label)
	}
	var err error
	*dst, err = r.str()
	return err
}

// skip reads and checks any value, discarding it.
func (r *jsonReader) skip() error {
	switch r.peek() {
	case '{':
		if err := r.objectStart(); err != nil {
			return err
		}
		var names nameSet
		for first := true; ; first = false {
			_, more, err := r.member(first, &names)
			if err != nil || !more {
				return err
			}
			if err := r.skip(); err != nil {
				return err
			}
		}
	case '[':
		if err := r.arrayStart(); err != nil {
			return err
		}
		for first := true; ; first = false {
			more, err := r.element(first)
			if err != nil || !more {
				return err
			}
			if err := r.skip(); err != nil {
				return err
			}
		}
	case '"':
		_, _, err := r.rawStr()
		return err
	case 't', 'f', 'n':
		_, err := r.literal()
		return err
	case 0:
		return syntaxErr("unexpected end of JSON")
	default:
		_, err := r.number()
		return err
	}
}

// kind returns what the next value is: '{', '[', '"', 't'/'f' (bool),
// 'n' (null), '0' (number) or 0 at the end.
func (r *jsonReader) kind() byte {
	switch c := r.peek(); c {
	case '{', '[', '"', 't', 'f', 'n', 0:
		return c
	default:
		return '0'
	}
}

// stringList reads an array of strings; ok is false (and the value is
// skipped) when the value is not one.
func (r *jsonReader) stringList() (list []string, ok bool, err error) {
	if r.kind() != '[' {
		return nil, false, r.skip()
	}
	if err := r.arrayStart(); err != nil {
		return nil, false, err
	}
	ok = true
	list = make([]string, 0, 4)
	for first := true; ; first = false {
		more, err := r.element(first)
		if err != nil || !more {
			return list, ok, err
		}
		if r.kind() != '"' {
			ok = false
			if err := r.skip(); err != nil {
				return nil, false, err
			}
			continue
		}
		s, err := r.str()
		if err != nil {
			return nil, false, err
		}
		list = append(list, s)
	}
}

// maxNumericDate is 9999-12-31T23:59:59Z, the latest NumericDate taken.
const maxNumericDate = 253402300799

// numericDate converts a JSON number literal to a time: seconds since
// 1970 (RFC 7519 §2), fractions allowed. Negative, non-finite and
// far-future values are refused, never clamped.
func numericDate(lit string) (t numericTime, ok bool) {
	if len(lit) <= 12 {
		var n int64
		digits := true
		for i := 0; i < len(lit); i++ {
			c := lit[i]
			if c < '0' || c > '9' {
				digits = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if digits {
			return numericTime{sec: n}, n <= maxNumericDate
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || !(f >= 0 && f <= maxNumericDate) {
		return numericTime{}, false
	}
	sec := int64(f)
	ns := int64((f - float64(sec)) * 1e9)
	return numericTime{sec: sec, nsec: ns}, true
}

// numericTime is a NumericDate as read; present tells an absent claim
// from 1970.
type numericTime struct {
	sec, nsec int64
}
