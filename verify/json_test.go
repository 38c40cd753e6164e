package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAny reads one JSON text with the strict reader.
func readAny(s string) error {
	r := jsonReader{s: s}
	if err := r.skip(); err != nil {
		return err
	}
	return r.end()
}

func TestJSONReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{`{"a":1,"b":2}`, true},
		{` {"a" : [1, 2.5, -0, 1e3, 1E-2, true, false, null, "x"]} `, true},
		{`{"a":1,"a":2}`, false},
		{`{"a":1,"\u0061":2}`, false},
		{`{"a":{"b":1},"c":{"b":2}}`, true},
		{`{"a":[{"b":1,"b":2}]}`, false},
		{`{"a":"x\"a","b":"\\"}`, true},
		{`{"s":"a,\"a\":1","t":["a","a"]}`, true},
		{`{"a":{"a":1}}`, true},
		{`{"a":1} {"b":2}`, false},
		{`{"a":1}x`, false},
		{`{"a":1}}`, false},
		{`{"a":"unterminated`, false},
		{`}`, false},
		{``, false},
		{`{"a":01}`, false},
		{`{"a":1.}`, false},
		{`{"a":.5}`, false},
		{`{"a":+1}`, false},
		{`{"a":1e}`, false},
		{`{"a":tru}`, false},
		{`{"a":1,}`, false},
		{`{"a" 1}`, false},
		{`{,"a":1}`, false},
		{`[1,]`, false},
		{`{"a":"\x"}`, false},
		{"{\"a\":\"\x01\"}", false},
		{"{\"a\":\"\xff\"}", false},
		{`{"a":"\ud800"}`, false},
		{`{"a":"\udc00"}`, false},
		{`{"a":"\ud83d\ude00"}`, true},
		{`{"a":"\ud83d\u0041"}`, false},
		{`{"a":"é😀"}`, true},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), true},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := readAny(tc.in)
			assert.Equal(t, tc.ok, err == nil, "%v", err)
		})
	}
	t.Run("a wide object", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("{")
		for i := range 100 {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `":1`)
		}
		require.NoError(t, readAny(b.String()+"}"))
		require.Error(t, readAny(b.String()+`,"ka":2}`), "a duplicate past the small set is found")
	})
}

func TestNumericDate(t *testing.T) {
	t.Parallel()
	for lit, want := range map[string]*numericTime{
		"0":              {},
		"1764244800":     {sec: 1764244800},
		"1764244800.5":   {sec: 1764244800, nsec: 5e8},
		"1.7642448e9":    {sec: 1764244800},
		"253402300799":   {sec: maxNumericDate},
		"-0":             {},
		"253402300800":   nil,
		"-1":             nil,
		"-1764244800":    nil,
		"1e300":          nil,
		"1e400":          nil,
		"-1e400":         nil,
		"99999999999999": nil,
	} {
		t.Run(lit, func(t *testing.T) {
			got, ok := numericDate(lit)
			require.Equal(t, want != nil, ok)
			if want != nil {
				assert.Equal(t, *want, got)
			}
		})
	}
}

// reference decides with encoding/json what the strict reader must
// accept: valid JSON, no duplicate member in any object, valid UTF-8
// strings without unpaired surrogate escapes, nesting within maxDepth.
func reference(s string) bool {
	if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
		return false
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	type frame struct {
		object bool
		names  map[string]bool
		key    bool
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.key
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: v == '{', names: map[string]bool{}, key: true})
				if len(stack) > maxDepth {
					return false
				}
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if strings.ContainsRune(v, utf8.RuneError) && !strings.Contains(s, "\uFFFD") && !strings.Contains(strings.ToLower(s), `\ufffd`) {
				return false // a surrogate or invalid byte decoded as U+FFFD
			}
			if isKey {
				if top.names[v] {
					return false
				}
				top.names[v] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

func FuzzJSONReader(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[1,{"b":"c"}],"d":null}`, `{"a":"\ud83d\ude00"}`, `{"a":1,"a":2}`, `[1,2]`, `"x"`, `1e5`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := readAny(s) == nil
		want := reference(s)
		if got != want {
			t.Fatalf("reader %v, reference %v for %q", got, want, s)
		}
		if !got {
			return
		}
		// Strings read the same as encoding/json reads them.
		var v any
		d := json.NewDecoder(bytes.NewReader([]byte(s)))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatalf("encoding/json refuses what the reader took: %v", err)
		}
		if str, ok := v.(string); ok {
			r := jsonReader{s: s}
			mine, err := r.str()
			if err != nil || mine != str {
				t.Fatalf("reader read %q, encoding/json %q", mine, str)
			}
		}
	})
}
