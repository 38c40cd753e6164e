package m2m

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// route is one place a token may go: scheme, host and port matched
// exactly (host case-insensitively), path by segment-aligned prefix of the
// canonical escaped path, and of the decoded path for the readings of
// servers that decode before they route.
type route struct {
	scheme, host, port string
	prefix, decoded    string // without a trailing slash, unless "/"
	src                *TokenSource
}

// newRoute returns the route of an audience URL whose path checkRoutePath
// accepted.
func newRoute(u *url.URL) route {
	trim := func(p string) string {
		if len(p) > 1 {
			return strings.TrimSuffix(p, "/")
		}
		return p
	}
	return route{
		scheme:  strings.ToLower(u.Scheme),
		host:    canonicalHost(u.Hostname()),
		port:    portOf(u.Scheme, u.Port()),
		prefix:  trim(canonicalPath(u.EscapedPath(), decodeNone, false)),
		decoded: trim(canonicalPath(u.Path, verbatim, false)),
	}
}

// checkRoutePath refuses an audience URL whose path servers may read in
// more than one way: with dot segments, empty segments, escaped
// unreserved characters, ';' or '\', or with escapes that decode into any
// of those.
// Such a prefix has no single meaning to match requests against.
func checkRoutePath(u *url.URL) error {
	esc := u.EscapedPath()
	if want := canonicalPath(esc, decodeUnreserved, true); esc != "" && !strings.EqualFold(esc, want) {
		return fmt.Errorf("path %q reads differently on different servers (dot segments, empty segments or escaped letters); write it as %q", esc, want)
	}
	if strings.ContainsAny(u.Path, ";\\") {
		return fmt.Errorf("path %q holds ';' or '\\', which servers read in different ways", esc)
	}
	if dec := u.Path; dec != "" && canonicalPath(dec, verbatim, true) != dec {
		return fmt.Errorf("path %q decodes to %q, which holds dot or empty segments", esc, dec)
	}
	return nil
}

// canonicalHost lower-cases h; it allocates only when there is an
// upper-case letter to fold. A trailing dot is kept: "calendar.prod." is
// an absolute name, while "calendar.prod" may resolve through a search
// domain to another host, so the two are not the same.
func canonicalHost(h string) string { return strings.ToLower(h) }

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
	host, port := u.Host, ""
	if strings.IndexByte(host, '[') >= 0 {
		host, port = u.Hostname(), u.Port() // an IPv6 literal
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	return origin{scheme, canonicalHost(host), portOf(scheme, port)}
}

// sameOrigin reports whether o is r's scheme, host and port.
func (r *route) sameOrigin(o origin) bool {
	return o.scheme == r.scheme && o.host == r.host && o.port == r.port
}

// holds reports whether the canonical path p is inside r's prefix, or
// with decoded inside its decoded prefix.
func (r *route) holds(p string, decoded bool) bool {
	pre := r.prefix
	if decoded {
		pre = r.decoded
	}
	if pre == "/" {
		return true
	}
	return strings.HasPrefix(p, pre) && (len(p) == len(pre) || p[len(pre)] == '/')
}

// reading is one way a server may resolve a request path before it
// routes: on the escaped or the decoded path, with some escapes decoded,
// with empty segments merged or kept, after a rewrite of its own.
type reading struct {
	decoded bool
	dec     decoding
	merge   bool
	rewrite func(string) string // applied before dot segments are resolved; nil for none
}

// readings are the resolutions routeOf checks beyond the first (RFC 3986
// §5.2.4 on the escaped path, nothing decoded).
var readings = []reading{
	{false, decodeNone, true, nil},
	{false, decodeDots, false, nil},
	{false, decodeDots, true, nil},
	{false, decodeUnreserved, false, nil},
	{false, decodeUnreserved, true, nil},
	{false, decodeUnreserved, false, dropParams},
	{false, decodeUnreserved, false, backslashes},
	{true, verbatim, false, nil},
	{true, verbatim, true, nil},
	{true, verbatim, false, dropParams},
	{true, verbatim, false, backslashes},
	{true, verbatim, false, decodeAgain},
}

// dropParams removes the ";…" parameters of every segment, as servlet
// containers do before they resolve "..": "/api/..;/admin" is "/admin"
// to them.
func dropParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}

// backslashes makes every backslash, plain or escaped, a separator, as
// some servers do.
func backslashes(p string) string {
	return strings.NewReplacer(`\`, "/", "%5C", "/", "%5c", "/").Replace(p)
}

// decodeAgain decodes an already decoded path once more, as servers that
// decode twice do: "%252e%252e" is ".." to them.
func decodeAgain(p string) string {
	if q, err := url.PathUnescape(p); err == nil {
		return q
	}
	return p
}

// routeOf returns the source whose audience holds u, or nil. The path is
// matched on its escaped form, as the receiving server routes it ("%2F"
// is not a separator). A path that servers may resolve differently (dot
// segments, empty segments, escapes) must land in the same audience under
// every reading: RFC 3986 §5.2.4 on the escaped path with no escape
// decoded, with only "%2E" decoded, and with every unreserved character
// decoded (§6.2.2.2); each with and without empty segments merged (as
// many servers and proxies do); the fully decoded path (as servers that
// decode before routing see it), and that decoded once more; and, on the
// escaped and the decoded path, with ";" parameters dropped from each
// segment (servlet containers) and with backslashes as separators.
// Otherwise the request gets no token.
func routeOf(routes []route, u *url.URL) *TokenSource {
	o := originOf(u)
	esc := u.EscapedPath()
	if !ambiguousPath(esc) {
		if esc == "" {
			esc = "/"
		}
		return longestMatch(routes, o, esc, false) // the common case: one reading
	}
	src := longestMatch(routes, o, canonicalPath(esc, decodeNone, false), false)
	if src == nil {
		return nil
	}
	for _, r := range readings {
		p := esc
		if r.decoded {
			p = u.Path
		}
		if r.rewrite != nil {
			p = r.rewrite(p)
		}
		if longestMatch(routes, o, canonicalPath(p, r.dec, r.merge), r.decoded) != src {
			return nil
		}
	}
	return src
}

// longestMatch returns the source of the route with the longest prefix
// holding origin o and canonical path p (decoded says which prefix).
// Routes are sorted by escaped prefix, longest first, so on the escaped
// path the first match is the longest.
func longestMatch(routes []route, o origin, p string, decoded bool) *TokenSource {
	var best *route
	tie := false
	for i := range routes {
		r := &routes[i]
		if !r.sameOrigin(o) || !r.holds(p, decoded) {
			continue
		}
		if !decoded {
			return r.src
		}
		switch {
		case best == nil || len(r.decoded) > len(best.decoded):
			best, tie = r, false
		case len(r.decoded) == len(best.decoded) && r.src != best.src:
			tie = true // "/a%2Fb" and "/a/b": one place to a server that decodes
		}
	}
	if best == nil || tie {
		return nil
	}
	return best.src
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
	if req.URL == nil || req.URL.Opaque != "" {
		return nil // an opaque URL is sent as it is: its target is not URL.Host and URL.Path
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
	for i := 0; i < len(esc); i++ {
		switch esc[i] {
		case '%', ';', '\\':
			return true
		case '/':
			if i+1 < len(esc) && (esc[i+1] == '/' || esc[i+1] == '.') {
				return true
			}
		}
	}
	return len(esc) > 0 && esc[0] != '/'
}

// decoding says which escapes a reading of a path decodes before it
// resolves dot segments.
type decoding uint8

const (
	// decodeNone keeps every escape and upper-cases its hex.
	decodeNone decoding = iota
	// decodeDots decodes "%2E" only, as servers that look for encoded dot
	// segments do.
	decodeDots
	// decodeUnreserved decodes the escapes of unreserved characters and
	// upper-cases the others (RFC 3986 §6.2.2).
	decodeUnreserved
	// verbatim is for a path that is already decoded: '%' is a plain
	// character.
	verbatim
)

// canonicalPath returns the path p as a server resolves it: escapes
// decoded as dec says (reserved escapes such as "%2F" always stay escaped
// and are not separators); dot segments removed (RFC 3986 §5.2.4); and,
// with mergeSlashes, empty segments dropped.
func canonicalPath(p string, dec decoding, mergeSlashes bool) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !ambiguousPath(p) {
		return p // the common case: nothing to resolve, no allocation
	}
	if dec != verbatim {
		p = decodeEscapes(p, dec)
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

// decodeEscapes decodes the "%XX" escapes of s that dec names and
// upper-cases the hex of the others; a '%' without two hex digits is kept
// as it is.
func decodeEscapes(s string, dec decoding) string {
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
		if dec == decodeUnreserved && isUnreserved(v) || dec == decodeDots && v == '.' {
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
