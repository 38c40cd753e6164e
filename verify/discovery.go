package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/m2mauth/m2m/internal/wire"
)

// metadata is the part of an authorization server's metadata (OpenID
// Connect Discovery 1.0 §3, RFC 8414 §2) the verifier reads.
type metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// metadataURLs are where the metadata of issuer may be: OpenID Connect's
// "<issuer>/.well-known/openid-configuration", then RFC 8414 §3's
// "/.well-known/oauth-authorization-server" inserted before the
// issuer's path.
func metadataURLs(issuer string) []string {
	urls := []string{strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"}
	if u, err := url.Parse(issuer); err == nil {
		u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		urls = append(urls, u.String())
	}
	return urls
}

// discover reads the issuer's metadata. Its issuer must equal the
// configured one exactly (OpenID Connect Discovery §4.3, RFC 8414 §3.3),
// and the URLs it names must be https (or loopback, or allowed insecure).
func discover(ctx context.Context, hc *http.Client, issuer string, insecure bool) (*metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var errs []error
	for _, u := range metadataURLs(issuer) {
		body, err := getJSON(ctx, hc, u, "issuer metadata")
		var status *statusError
		if errors.As(err, &status) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		var md metadata
		if err := json.Unmarshal(body, &md); err != nil {
			return nil, fmt.Errorf("verify: issuer metadata at %s is not a JSON object", u)
		}
		if err := exactMembers(body, "issuer", "jwks_uri", "introspection_endpoint"); err != nil {
			return nil, fmt.Errorf("verify: issuer metadata at %s: %v", u, err)
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("verify: issuer metadata at %s names issuer %s, want %q exactly", u, quoted(md.Issuer), issuer)
		}
		for name, v := range map[string]string{"jwks_uri": md.JWKSURI, "introspection_endpoint": md.IntrospectionEndpoint} {
			if v == "" {
				continue
			}
			if _, err := wire.CheckURL(v, insecure); err != nil {
				return nil, fmt.Errorf("verify: issuer metadata at %s: %s %v", u, name, err)
			}
		}
		return &md, nil
	}
	return nil, fmt.Errorf("verify: no issuer metadata for %s: %w", issuer, errors.Join(errs...))
}
