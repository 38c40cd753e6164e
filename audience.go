package m2m

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// Audience is one service a Client gets tokens for.
type Audience struct {
	// Name is sent as the audience parameter and must appear in the
	// token's aud claim, e.g. "event". It may not hold white space.
	// Optional: empty sends no audience parameter.
	Name string
	// Scopes are the scopes this caller needs at this audience, and the
	// only ones WithScopes may narrow to. Ask for the least you need.
	// Optional: empty sends no scope parameter.
	Scopes []string
	// URL is where the audience lives, e.g. "https://calendar.internal" or
	// "https://files.internal/api/". A Transport sends this audience's
	// token only to requests whose scheme, host, port and path prefix
	// match it (or one of ExtraURLs). Required for use with a Transport.
	URL string
	// ExtraURLs are further places the same audience lives. Optional.
	ExtraURLs []string
}

func (a Audience) clone() Audience {
	a.Scopes = slices.Clone(a.Scopes)
	a.ExtraURLs = slices.Clone(a.ExtraURLs)
	return a
}

// normalized is a checked Audience with what a source needs from it.
type normalized struct {
	aud      Audience // Scopes sorted and de-duplicated
	declared map[string]bool
	routes   []route
}

// normalize checks a and prepares its scopes and routes.
func (a Audience) normalize(allowInsecure bool) (normalized, error) {
	var n normalized
	if !token68ish(a.Name, true) {
		return n, configErr("Audience.Name %q may not hold white space or control characters", a.Name)
	}
	scopes, err := normalizeScopes(a.Scopes)
	if err != nil {
		return n, configErr("Audience %q: %v", a.Name, err)
	}
	n.aud = a.clone()
	n.aud.Scopes = scopes
	n.declared = make(map[string]bool, len(scopes))
	for _, s := range scopes {
		n.declared[s] = true
	}
	for _, raw := range append([]string{a.URL}, a.ExtraURLs...) {
		if raw == "" {
			if len(a.ExtraURLs) > 0 {
				return n, configErr("Audience %q: URL is empty", a.Name)
			}
			continue
		}
		u, err := checkURL(fmt.Sprintf("Audience %q URL", a.Name), raw, allowInsecure)
		if err != nil {
			return n, err
		}
		if u.RawQuery != "" {
			return n, configErr("Audience %q URL %q: a query cannot be matched; give a scheme, host and path", a.Name, raw)
		}
		n.routes = append(n.routes, newRoute(u))
	}
	return n, nil
}

// normalizeScopes sorts and de-duplicates scopes, rejecting malformed ones
// (RFC 6749 §3.3: no space, no control characters, no '"' or '\').
func normalizeScopes(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s == "" || !token68ish(s, false) {
			return nil, fmt.Errorf("scope %q is not a valid scope token", s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// token68ish reports whether s is printable ASCII-or-UTF-8 without white
// space, '"' or '\'. allowEmpty permits "".
func token68ish(s string, allowEmpty bool) bool {
	if s == "" {
		return allowEmpty
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

// printable reports whether s has no control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// checkURL parses raw with wire.CheckURL and names field in the error. A
// URL with credentials is refused without echoing it.
func checkURL(field, raw string, allowInsecure bool) (*url.URL, error) {
	u, err := wire.CheckURL(raw, allowInsecure)
	if err != nil {
		if errors.Is(err, wire.ErrURLCredentials) {
			return nil, configErr("%s %v; use ClientID and ClientSecret", field, err)
		}
		return nil, configErr("%s %q %v", field, raw, err)
	}
	return u, nil
}

// route is one place a token may go: scheme, host and port matched
// exactly (host case-insensitively), path by segment-aligned prefix.
type route struct {
	scheme, host, port, prefix string
	src                        *TokenSource
}

func newRoute(u *url.URL) route {
	prefix := path.Clean("/" + u.Path)
	return route{
		scheme: u.Scheme,
		host:   strings.TrimSuffix(strings.ToLower(u.Hostname()), "."),
		port:   portOf(u.Scheme, u.Port()),
		prefix: prefix,
	}
}

func portOf(scheme, port string) string {
	if port != "" {
		return port
	}
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// matches reports whether u is inside r, and how long the matched prefix
// is. It allocates only for a path that needs cleaning.
func (r *route) matches(u *url.URL) (bool, int) {
	if !strings.EqualFold(u.Scheme, r.scheme) {
		return false, 0
	}
	if !strings.EqualFold(strings.TrimSuffix(u.Hostname(), "."), r.host) {
		return false, 0
	}
	if portOf(u.Scheme, u.Port()) != r.port {
		return false, 0
	}
	p := cleanPath(u.Path)
	if r.prefix == "/" {
		return true, 1
	}
	if !strings.HasPrefix(p, r.prefix) || (len(p) > len(r.prefix) && p[len(r.prefix)] != '/') {
		return false, 0
	}
	return true, len(r.prefix)
}

// cleanPath returns p as the server would resolve it: dot segments and
// doubled slashes removed. URL.Path is already percent-decoded, so an
// encoded "%2e%2e" is cleaned too.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	return path.Clean("/" + p)
}

// scopesKey is the context key of WithScopes.
type scopesKey struct{}

// scopeSet is a normalized WithScopes request.
type scopeSet struct {
	key  string   // sorted scopes joined by " "
	list []string // sorted, unique
	err  error    // a malformed scope, reported on use
}

// WithScopes returns a context that narrows the token of every request
// made with it to these scopes, e.g. only "event.create" when creating an
// event. The scopes must be among the audience's declared Scopes; if not,
// TokenContext and RoundTrip fail with ErrUndeclaredScope before any
// network call. Each distinct scope set gets its own cached token.
// With no scopes, ctx is returned without a narrowing.
func WithScopes(ctx context.Context, scopes ...string) context.Context {
	if len(scopes) == 0 {
		return ctx
	}
	set := &scopeSet{}
	list, err := normalizeScopes(scopes)
	if err != nil {
		set.err = fmt.Errorf("%w: %v", ErrUndeclaredScope, err)
	}
	set.list = list
	set.key = strings.Join(list, " ")
	return context.WithValue(ctx, scopesKey{}, set)
}

// ScopesFromContext returns the scopes WithScopes put in ctx, if any.
func ScopesFromContext(ctx context.Context) ([]string, bool) {
	set, ok := ctx.Value(scopesKey{}).(*scopeSet)
	if !ok || set.err != nil {
		return nil, false
	}
	return slices.Clone(set.list), true
}
