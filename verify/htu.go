package verify

import (
	"net/http"
	"net/url"
	"strings"
)

// The URL a DPoP proof names (htu, RFC 9449 §4.2) and the URL the request
// was addressed to are compared after RFC 3986's syntax- and scheme-based
// normalization (§6.2.2, §6.2.3), as RFC 9449 §4.3 advises, ignoring
// query and fragment.

// sameHTU reports whether a proof's htu names the request URL want.
func sameHTU(htu, want string) bool {
	if htu == want && absolute(want) {
		return true // the usual case: the client wrote what the server expects
	}
	a, ok := normalizeHTU(htu)
	if !ok {
		return false
	}
	b, ok := normalizeHTU(want)
	return ok && a == b
}

// absolute reports whether u starts with an http or https scheme and a
// host, so that it can only name that host.
func absolute(u string) bool {
	rest, ok := strings.CutPrefix(u, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(u, "http://")
	}
	return ok && rest != "" && rest[0] != '/' && rest[0] != '?' && rest[0] != '#'
}

// normalizeHTU returns the normal form of an absolute http or https URL
// without query and fragment: scheme and host in lower case, no default
// port, percent-encoding with upper-case hex and no encoded unreserved
// characters, no dot segments, and "/" for an empty path. ok is false for
// anything else (a relative or opaque URL, another scheme, user
// information, no host).
func normalizeHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	switch scheme {
	case "http":
		host = strings.TrimSuffix(host, ":80")
	case "https":
		host = strings.TrimSuffix(host, ":443")
	default:
		return "", false
	}
	host = strings.TrimSuffix(host, ":") // an empty port is the default one
	path, ok := normalizePath(u.EscapedPath())
	if !ok {
		return "", false
	}
	return scheme + "://" + host + path, true
}

// normalizePath normalizes an escaped absolute path (or "").
func normalizePath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	if p[0] != '/' {
		return "", false
	}
	if strings.IndexByte(p, '%') >= 0 {
		var b strings.Builder
		b.Grow(len(p))
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c != '%' {
				b.WriteByte(c)
				continue
			}
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return "", false
			}
			v := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			if unreserved(v) {
				b.WriteByte(v)
			} else {
				const hex = "0123456789ABCDEF"
				b.WriteByte('%')
				b.WriteByte(hex[v>>4])
				b.WriteByte(hex[v&0xf])
			}
			i += 2
		}
		p = b.String()
	}
	return removeDotSegments(p), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unreserved reports whether c is ALPHA / DIGIT / "-" / "." / "_" / "~"
// (RFC 3986 §2.3).
func unreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments applies RFC 3986 §5.2.4 to an absolute path: "." and
// ".." segments go, ".." taking the segment before it; empty segments
// stay.
func removeDotSegments(p string) string {
	if !strings.Contains(p, "/.") {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/." and "/a/b/.." end in "/"
		}
	}
	return "/" + strings.Join(out, "/")
}

// requestURL returns the URL r was addressed to, as Config says: what a
// DPoP proof on r must name in htu.
func (v *Verifier) requestURL(r *http.Request) string {
	if v.cfg.DPoPRequestURL != nil {
		return v.cfg.DPoPRequestURL(r)
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if v.base != "" {
		return v.base + path
	}
	if r.TLS != nil {
		return "https://" + r.Host + path
	}
	return "http://" + r.Host + path
}

// baseURL checks Config.DPoPBaseURL and returns its normal form without a
// final "/", ready to take a request's path.
func baseURL(s string) (string, bool) {
	if strings.ContainsAny(s, "?#") {
		return "", false
	}
	n, ok := normalizeHTU(s)
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(n, "/"), true
}
