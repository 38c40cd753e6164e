package m2m

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// normalizeScopes sorts and de-duplicates scopes, rejecting malformed ones.
func normalizeScopes(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !isScopeToken(s) {
			return nil, fmt.Errorf("scope %q is not a valid scope token (RFC 6749 §3.3)", s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// isScopeToken reports whether s is a scope-token of RFC 6749 §3.3: one
// or more of %x21 / %x23-5B / %x5D-7E, so no space, no '"', no '\' and no
// control characters. Non-ASCII runes are accepted too, as servers do.
func isScopeToken(s string) bool {
	return s != "" && hasNoSpaceQuoteOrControl(s)
}

// hasNoSpaceQuoteOrControl reports whether s has no white space, control
// character, '"' or '\'; "" passes.
func hasNoSpaceQuoteOrControl(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\\' {
			return false
		}
	}
	return true
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
// network call. Each distinct scope set gets its own cached token. An
// audience's FixedScopes are sent whatever the narrowing.
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
