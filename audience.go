package m2m

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// Audience is one service a Client gets tokens for: its identity, how a
// token for it is asked for (the request shape), the scopes it needs, and
// where its tokens may be sent.
type Audience struct {
	// Name identifies the audience in errors, logs and metrics, and is
	// sent as the audience parameter (unless OmitAudienceParam); it must
	// then appear in the token's aud claim, e.g. "event". It may not hold
	// white space. Optional: empty sends no audience parameter.
	Name string
	// Scopes are the scopes this caller needs at this audience, and the
	// only ones WithScopes may narrow to. Ask for the least you need.
	// Optional: empty sends no scope parameter.
	Scopes []string
	// FixedScopes are sent with every token request of this audience,
	// whatever WithScopes narrows Scopes to, for servers that select the
	// audience by a scope (ZITADEL's
	// "urn:zitadel:iam:org:project:id:<id>:aud", Microsoft Entra ID's
	// "api://<app>/.default"). They are outside WithScopes' subset check.
	// Optional.
	FixedScopes []string
	// Resource is an RFC 8707 resource indicator (an absolute URI without
	// a fragment) sent as the resource parameter, for servers that select
	// the audience by it (node-oidc-provider, Duende IdentityServer).
	// Optional.
	Resource string
	// Params are extra token-request parameters for this audience only,
	// added to Config.EndpointParams (which they override). The SDK's own
	// parameter names may not be set. Optional.
	Params url.Values
	// OmitAudienceParam sends no audience parameter, for servers that
	// refuse unknown ones; Name then only names the audience locally.
	// Optional.
	OmitAudienceParam bool
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
	a.FixedScopes = slices.Clone(a.FixedScopes)
	a.ExtraURLs = slices.Clone(a.ExtraURLs)
	a.Params = cloneValues(a.Params)
	return a
}

// audienceSpec is a checked Audience with what its sources need.
type audienceSpec struct {
	aud      Audience // Scopes and FixedScopes sorted and de-duplicated
	declared map[string]bool
	routes   []route
	shape    string     // the request shape, for the cache key
	params   url.Values // Config.EndpointParams overridden by Audience.Params
}

// check validates a and prepares its scopes, request shape and routes.
func (a Audience) check(cfg *Config) (audienceSpec, error) {
	var spec audienceSpec
	if !hasNoSpaceQuoteOrControl(a.Name) {
		return spec, configErr("Audience.Name %q may not hold white space, quotes or control characters", a.Name)
	}
	scopes, err := normalizeScopes(a.Scopes)
	if err != nil {
		return spec, configErr("Audience %q: %v", a.Name, err)
	}
	fixed, err := normalizeScopes(a.FixedScopes)
	if err != nil {
		return spec, configErr("Audience %q FixedScopes: %v", a.Name, err)
	}
	if a.Resource != "" {
		u, err := url.Parse(a.Resource)
		if err != nil || !u.IsAbs() || u.Fragment != "" || !printable(a.Resource) {
			return spec, configErr("Audience %q Resource %q is not an absolute URI without a fragment (RFC 8707 §2)", a.Name, a.Resource)
		}
	}
	for k, vs := range a.Params {
		if wire.IsReserved(k) {
			return spec, configErr("Audience %q Params may not set %q: the SDK sets it", a.Name, k)
		}
		for _, v := range vs {
			if !printable(k) || !printable(v) {
				return spec, configErr("Audience %q Params %q holds control characters", a.Name, k)
			}
		}
	}
	spec.aud = a.clone()
	spec.aud.Scopes, spec.aud.FixedScopes = scopes, fixed
	spec.declared = make(map[string]bool, len(scopes))
	for _, s := range scopes {
		spec.declared[s] = true
	}
	spec.params = cloneValues(cfg.EndpointParams)
	for k, vs := range a.Params {
		if spec.params == nil {
			spec.params = url.Values{}
		}
		spec.params[k] = slices.Clone(vs)
	}
	spec.shape = shapeKey(a.Resource, a.Params, fixed, a.OmitAudienceParam)
	for _, raw := range append([]string{a.URL}, a.ExtraURLs...) {
		if raw == "" {
			if len(a.ExtraURLs) > 0 {
				return spec, configErr("Audience %q: URL is empty", a.Name)
			}
			continue
		}
		u, err := checkURL(fmt.Sprintf("Audience %q URL", a.Name), raw, cfg.AllowInsecureHTTP)
		if err != nil {
			return spec, err
		}
		if u.RawQuery != "" {
			return spec, configErr("Audience %q URL %q: a query cannot be matched; give a scheme, host and path", a.Name, raw)
		}
		if err := checkRoutePath(u); err != nil {
			return spec, configErr("Audience %q URL: %v", a.Name, err)
		}
		spec.routes = append(spec.routes, newRoute(u))
	}
	return spec, nil
}

// shapeKey encodes the request shape of an audience canonically: two
// audiences differing only in resource, parameters, fixed scopes or
// whether the audience parameter is sent never share a token. The plain
// shape is "".
func shapeKey(resource string, params url.Values, fixed []string, omitAudience bool) string {
	if resource == "" && len(params) == 0 && len(fixed) == 0 && !omitAudience {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "resource=%q;omit=%t;fixed=%q;", resource, omitAudience, fixed)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q;", k, params[k])
	}
	return b.String()
}
