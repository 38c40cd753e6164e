package m2m

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzRoute checks that a token's route never matches a request to another
// host, port or scheme, or to a path outside its prefix once dot segments
// are resolved.
func FuzzRoute(f *testing.F) {
	for _, seed := range [][2]string{
		{"/api/", "https://files.test/api/x"},
		{"/api", "https://files.test/apix"},
		{"/api", "https://files.test/api/../admin"},
		{"/api", "https://files.test/api/%2e%2e/admin"},
		{"/api", "https://files.test//api/x"},
		{"/", "https://FILES.test./x"},
		{"/api", "https://files.test:443/api"},
		{"/api", "http://files.test/api"},
		{"/a/b", "https://files.test/a/./b/c"},
		{"/api", "https://evil.test/api?files.test"},
		{"/api", "https://files.test@evil.test/api"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, prefix, raw string) {
		base, err := url.Parse("https://files.test" + prefix)
		if err != nil || base.Host != "files.test" {
			return
		}
		r := newRoute(base)
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		ok, n := r.matches(u)
		if !ok {
			return
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if host != "files.test" || !strings.EqualFold(u.Scheme, "https") || portOf(u.Scheme, u.Port()) != "443" {
			t.Fatalf("%q matched route %q on another origin", raw, prefix)
		}
		p := cleanPath(u.Path)
		if r.prefix != "/" && p != r.prefix && !strings.HasPrefix(p, r.prefix+"/") {
			t.Fatalf("%q (clean %q) matched prefix %q", raw, p, r.prefix)
		}
		if n <= 0 {
			t.Fatal("a match of no length")
		}
	})
}
