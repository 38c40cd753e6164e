package m2m

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzRoute checks that a request gets a route's token only when every
// reading a server may give its URL is inside the route: the same scheme,
// host and port, and a path under the prefix whether the server resolves
// dot segments on the escaped path (RFC 3986, as url.ResolveReference
// does), decodes "%2e" first, or decodes everything and cleans the result
// (as net/http's ServeMux does). The oracles are net/url and path, not the
// code under test.
func FuzzRoute(f *testing.F) {
	for _, seed := range [][2]string{
		{"/api/", "https://files.test/api/x"},
		{"/api", "https://files.test/apix"},
		{"/api", "https://files.test/api/../admin"},
		{"/api", "https://files.test/api/%2e%2e/admin"},
		{"/api", "https://files.test/api/..%2F..%2Fadmin"},
		{"/api", "https://files.test/public/..%2F..%2Fapi/x"},
		{"/api", "https://files.test//api/x"},
		{"/api", "https://files.test/api//../x"},
		{"/", "https://FILES.test./x"},
		{"/api", "https://files.test:443/api"},
		{"/api", "http://files.test/api"},
		{"/a/b", "https://files.test/a/./b/c"},
		{"/api", "https://evil.test/api?files.test"},
		{"/api", "https://files.test@evil.test/api"},
		{"/a%2Fb", "https://files.test/a%2fb/c"},
		{"/.", "https://files.test"},
		{"/api", "https://files.test/%61pi/x"},
		{"/a%20b", "https://files.test/a%20b/../x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, prefix, raw string) {
		base, err := url.Parse("https://files.test" + prefix)
		if err != nil || base.Host != "files.test" || base.RawQuery != "" || base.Fragment != "" {
			return
		}
		if checkRoutePath(base) != nil {
			return
		}
		// An accepted prefix has one reading: RFC 3986 resolution and
		// ServeMux's cleaning leave it as it is.
		resolved := (&url.URL{Scheme: "https", Host: "files.test", Path: "/"}).ResolveReference(&url.URL{Path: base.Path, RawPath: base.RawPath})
		if base.Path != "" && !strings.EqualFold(resolved.EscapedPath(), base.EscapedPath()) {
			t.Fatalf("prefix %q accepted, but RFC 3986 resolves it to %q", prefix, resolved.EscapedPath())
		}
		if clean := path.Clean("/" + base.Path); base.Path != "" && clean != strings.TrimSuffix(base.Path, "/") && clean != base.Path {
			t.Fatalf("prefix %q accepted, but it cleans to %q", prefix, clean)
		}
		src := &TokenSource{}
		r := newRoute(base)
		r.src = src
		u, err := url.Parse(raw)
		if err != nil || routeOf([]route{r}, u) != src {
			return
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if host != "files.test" || !strings.EqualFold(u.Scheme, "https") || (u.Port() != "" && u.Port() != "443") {
			t.Fatalf("%q matched route %q on another origin", raw, prefix)
		}
		under := func(p, pre string) bool {
			pre = strings.TrimSuffix(pre, "/")
			return pre == "" || p == pre || strings.HasPrefix(p, pre+"/")
		}
		// ServeMux: decode, then clean (dot segments, doubled slashes).
		if dec, pre := path.Clean("/"+u.Path), path.Clean("/"+base.Path); !under(dec, pre) {
			t.Fatalf("%q (decoded and cleaned %q) matched prefix %q", raw, dec, prefix)
		}
		// RFC 3986 §5.2.4 on the escaped path, with and without "%2e"
		// read as a dot.
		pre := strings.ToLower(base.EscapedPath())
		for _, esc := range []string{u.EscapedPath(), strings.NewReplacer("%2e", ".", "%2E", ".").Replace(u.EscapedPath())} {
			// The reference is built, not parsed: a path starting with
			// "//" would parse as an authority.
			dec, err := url.PathUnescape(esc)
			if err != nil {
				continue
			}
			ref := &url.URL{Path: dec, RawPath: esc}
			res := (&url.URL{Scheme: "https", Host: "files.test", Path: "/"}).ResolveReference(ref).EscapedPath()
			if !under(strings.ToLower(res), pre) {
				t.Fatalf("%q (RFC 3986 resolution %q) matched prefix %q", raw, res, prefix)
			}
		}
	})
}
