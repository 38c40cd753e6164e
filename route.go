package m2m

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// route is one place a token may go: scheme, host and port matched
// exactly (host case-insensitively), path by segment-aligned prefix of the
// canonical escaped path.
type route struct {
	scheme, host, port, prefix string
	src                        *TokenSource
}

func newRoute(u *url.URL) route {
	prefix := canonicalPath(u.EscapedPath(), true, true)
	if len(prefix) > 1 {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	return route{
		scheme: strings.ToLower(u.Scheme),
		host:   canonicalHost(u.Hostname()),
		port:   portOf(u.Scheme, u.Port()),
		prefix: prefix,
	}
}

// canonicalHost lower-cases h and drops a trailing dot; it allocates only
// when there is an upper-case letter to fold.
func canonicalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

func portOf(scheme, port string) string {
	if port != "" {
		return port
	}
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// origin is a request URL's scheme, host and port, canonical.
type origin struct{ scheme, host, port string }

func originOf(u *url.URL) origin {
	scheme := u.Scheme
	if scheme != "http" && scheme != "https" {
		scheme = strings.ToLower(scheme)
	}
	return origin{scheme, canonicalHost(u.Hostname()), portOf(scheme, u.Port())}
}

// sameOrigin reports whether o is r's scheme, host and port.
func (r *route) sameOrigin(o origin) bool {
	return o.scheme == r.scheme && o.host == r.host && o.port == r.port
}

// holds reports whether the canonical path p is inside r's prefix.
func (r *route) holds(p string) bool {
	if r.prefix == "/" {
		return true
	}
	return strings.HasPrefix(p, r.prefix) && (len(p) == len(r.prefix) || p[len(r.prefix)] == '/')
}

// routeOf returns the source whose audience holds u, or nil. The path is
// matched on its escaped form, as the receiving server routes it ("%2F"
// is not a separator). A path that servers may resolve differently (dot
// segments, empty segments, escapes) must land in the same audience under
// every resolution: RFC 3986 §5.2.4 on the escaped path, the same with
// empty segments merged (as many servers and proxies do), and the fully
// decoded path (as servers that decode before routing do). Otherwise the
// request gets no token.
func routeOf(routes []route, u *url.URL) *TokenSource {
	o := originOf(u)
	esc := u.EscapedPath()
	src := longestMatch(routes, o, canonicalPath(esc, true, false))
	if src == nil || !ambiguousPath(esc) {
		return src
	}
	if longestMatch(routes, o, canonicalPath(esc, true, true)) != src {
		return nil
	}
	if strings.Contains(esc, "%") {
		dec := u.Path
		if longestMatch(routes, o, canonicalPath(dec, false, false)) != src ||
			longestMatch(routes, o, canonicalPath(dec, false, true)) != src {
			return nil
		}
	}
	return src
}

// longestMatch returns the source of the first route (routes are sorted
// longest prefix first) holding origin o and canonical path p.
func longestMatch(routes []route, o origin, p string) *TokenSource {
	for i := range routes {
		if routes[i].sameOrigin(o) && routes[i].holds(p) {
			return routes[i].src
		}
	}
	return nil
}

// requestRoute returns the source whose token req may carry, or nil: its
// URL must be inside the audience, its Host (what virtual hosts and
// ingresses route by) must name the URL's host, and on a redirect hop
// every earlier request of the chain must have been inside the same
// audience.
func requestRoute(routes []route, req *http.Request) *TokenSource {
	src := hopRoute(routes, req)
	if src == nil {
		return nil
	}
	for resp := req.Response; resp != nil && resp.Request != nil; resp = resp.Request.Response {
		if hopRoute(routes, resp.Request) != src {
			return nil
		}
	}
	return src
}

// hopRoute is requestRoute for one request, without its chain.
func hopRoute(routes []route, req *http.Request) *TokenSource {
	if req.URL == nil {
		return nil
	}
	if req.Host != "" && req.Host != req.URL.Host && !sameHost(req.Host, req.URL) {
		return nil
	}
	return routeOf(routes, req.URL)
}

// sameHost reports whether the Host header value h names u's host and
// port.
func sameHost(h string, u *url.URL) bool {
	hu := url.URL{Scheme: u.Scheme, Host: h}
	return canonicalHost(hu.Hostname()) == canonicalHost(u.Hostname()) &&
		portOf(u.Scheme, hu.Port()) == portOf(u.Scheme, u.Port())
}

// ambiguousPath reports whether the escaped path esc may resolve
// differently on different servers: it has empty segments or (perhaps
// encoded) dot segments.
func ambiguousPath(esc string) bool {
	return strings.Contains(esc, "//") || strings.Contains(esc, "/.") || strings.Contains(esc, "%")
}

// canonicalPath returns the path p as a server resolves it: with
// escaped, percent-encoded unreserved characters decoded and other
// escapes upper-cased (RFC 3986 §6.2.2), so reserved escapes such as
// "%2F" stay escaped and are not separators; dot segments removed
// (§5.2.4); and, with mergeSlashes, empty segments dropped.
func canonicalPath(p string, escaped, mergeSlashes bool) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !ambiguousPath(p) {
		return p // the common case: nothing to resolve, no allocation
	}
	if escaped {
		p = decodeUnreserved(p)
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case i == 0 && s == "":
			// the leading slash
		case s == ".":
			if last {
				out = append(out, "")
			}
		case s == "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		case s == "" && mergeSlashes && !last:
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// decodeUnreserved decodes "%XX" escapes of unreserved characters
// (ALPHA / DIGIT / "-" / "." / "_" / "~") and upper-cases the hex of the
// others; a '%' without two hex digits is kept as it is.
func decodeUnreserved(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+2 >= len(s) || !wire.IsHex(s[i+1]) || !wire.IsHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		v := wire.Unhex(s[i+1])<<4 | wire.Unhex(s[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
		}
		i += 2
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
