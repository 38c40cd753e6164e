package m2m

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/sync/singleflight"
)

// rediscoverEvery is how long discovered metadata is used before it is
// read again; a failure to read it again keeps the old one.
const rediscoverEvery = 24 * time.Hour

// maxMetadata bounds an authorization server's metadata document.
const maxMetadata = 256 << 10

// DiscoveryError says the authorization server's metadata (RFC 8414 or
// OpenID Connect Discovery) could not be had or used.
type DiscoveryError struct {
	// URL is the last metadata URL tried.
	URL string
	// StatusCode is that URL's HTTP status, or 0 when there was no answer.
	StatusCode int
	// Err says what went wrong.
	Err error
}

// Error names the URL tried and what went wrong.
func (e *DiscoveryError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("m2m: discovery at %s: answered %d: %v", e.URL, e.StatusCode, e.Err)
	}
	return fmt.Sprintf("m2m: discovery at %s: %v", e.URL, e.Err)
}

// Unwrap returns Err.
func (e *DiscoveryError) Unwrap() error { return e.Err }

// Retryable reports whether asking again may help: no answer, or a 5xx,
// 429 or 408 one.
func (e *DiscoveryError) Retryable() bool {
	switch {
	case e.StatusCode == 0:
		return !errors.Is(e.Err, ErrInvalidResponse)
	case e.StatusCode >= 500, e.StatusCode == http.StatusTooManyRequests, e.StatusCode == http.StatusRequestTimeout:
		return true
	}
	return false
}

// endpointInfo is where and how token requests go. A new discovery makes a
// new one; request bodies are cached per endpointInfo.
type endpointInfo struct {
	tokenURL     string
	assertionAud string // the aud of client assertions: the token endpoint, never its mTLS alias
	secretInBody bool
	at           time.Time // when it was discovered; zero when configured
}

// endpoint hands out the token endpoint: the configured one, or the one
// the issuer's metadata names, read once and again every
// rediscoverEvery. It is safe for concurrent use.
type endpoint struct {
	env   *env
	group singleflight.Group
	mu    sync.Mutex
	cur   *endpointInfo // guarded by mu
}

func newEndpoint(e *env) *endpoint {
	p := &endpoint{env: e}
	if e.cfg.TokenURL != "" {
		p.cur = &endpointInfo{tokenURL: e.cfg.TokenURL, assertionAud: e.cfg.TokenURL, secretInBody: e.cfg.AuthStyle == AuthStyleInBody}
	}
	return p
}

// get returns the endpoint to use, discovering it if need be. Concurrent
// callers share one discovery; each waits on its own ctx.
func (p *endpoint) get(ctx context.Context) (*endpointInfo, error) {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur != nil && (cur.at.IsZero() || p.env.clock.Now().Sub(cur.at) < rediscoverEvery) {
		return cur, nil
	}
	ch := p.group.DoChan("", func() (any, error) {
		// A discovery that ended between our look and this call has
		// left an endpoint: use it rather than read the metadata again.
		p.mu.Lock()
		if cur := p.cur; cur != nil && (cur.at.IsZero() || p.env.clock.Now().Sub(cur.at) < rediscoverEvery) {
			p.mu.Unlock()
			return cur, nil
		}
		p.mu.Unlock()
		ctx, cancel := context.WithCancelCause(p.env.ctx)
		defer cancel(nil)
		stop := p.env.clock.AfterFunc(p.env.cfg.FetchTimeout, func() { cancel(errFetchTimeout) })
		defer stop()
		info, err := p.discover(ctx)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			if p.cur != nil {
				return p.cur, nil // keep what we had
			}
			return nil, err
		}
		p.cur = info
		return info, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*endpointInfo), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// metadataURLs returns the metadata locations of issuer: RFC 8414 §3
// (the well-known path inserted before the issuer's path), then OpenID
// Connect Discovery §4 (appended to it).
func metadataURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc := *u
	rfc.RawPath, rfc.Path = "", ""
	rfc8414 := strings.TrimSuffix(rfc.String(), "/") + "/.well-known/oauth-authorization-server" + path
	return []string{rfc8414, strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"}
}

// discover reads the issuer's metadata and checks it.
func (p *endpoint) discover(ctx context.Context) (*endpointInfo, error) {
	cfg := &p.env.cfg
	var last *DiscoveryError
	for _, mu := range metadataURLs(cfg.Issuer) {
		md, status, err := p.fetchMetadata(ctx, mu)
		if err == nil {
			info, err := p.use(md)
			if err != nil {
				return nil, &DiscoveryError{URL: mu, StatusCode: status, Err: err}
			}
			return info, nil
		}
		last = &DiscoveryError{URL: mu, StatusCode: status, Err: err}
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed && status != http.StatusBadRequest {
			break // a 404 means "try the other location"; anything else is an answer
		}
	}
	if last == nil {
		last = &DiscoveryError{URL: cfg.Issuer, Err: errors.New("the issuer is not a URL")}
	}
	return nil, last
}

// metadata is the part of RFC 8414 / OpenID metadata the SDK uses.
type metadata struct {
	Issuer            string   `json:"issuer"`
	TokenEndpoint     string   `json:"token_endpoint"`
	AuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI           string   `json:"jwks_uri"`
	IntrospectionURI  string   `json:"introspection_endpoint"`
	GrantTypes        []string `json:"grant_types_supported"`
	ResourceIndicator bool     `json:"resource_indicators_supported"`
	// MTLSAliases holds the endpoints a client that authenticates with a
	// certificate uses instead (RFC 8705 §5).
	MTLSAliases struct {
		TokenEndpoint string `json:"token_endpoint"`
	} `json:"mtls_endpoint_aliases"`
}

// fetchMetadata GETs one metadata document through the size limit.
func (p *endpoint) fetchMetadata(ctx context.Context, u string) (*metadata, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.env.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("metadata request answered %d", resp.StatusCode)
	}
	if len(body) > maxMetadata {
		return nil, resp.StatusCode, fmt.Errorf("%w: metadata larger than %d bytes", ErrInvalidResponse, maxMetadata)
	}
	var md metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%w: metadata is not a JSON object", ErrInvalidResponse)
	}
	return &md, resp.StatusCode, nil
}

// use checks md against the Config and picks the token endpoint (its
// mTLS alias for a client with a certificate) and the auth style.
func (p *endpoint) use(md *metadata) (*endpointInfo, error) {
	cfg := &p.env.cfg
	if md.Issuer != cfg.Issuer {
		return nil, fmt.Errorf("%w: metadata issuer %q is not the configured %q", ErrInvalidResponse, truncateText(md.Issuer, 200), cfg.Issuer)
	}
	if md.TokenEndpoint == "" {
		return nil, fmt.Errorf("%w: metadata has no token_endpoint", ErrInvalidResponse)
	}
	field, tokenURL := "token_endpoint", md.TokenEndpoint
	if cfg.TLSCertFile != "" && md.MTLSAliases.TokenEndpoint != "" {
		field, tokenURL = "mtls_endpoint_aliases.token_endpoint", md.MTLSAliases.TokenEndpoint
	}
	if _, err := wire.CheckURL(tokenURL, cfg.AllowInsecureHTTP); err != nil {
		return nil, fmt.Errorf("%w: %s %q %v", ErrInvalidResponse, field, truncateText(tokenURL, 200), err)
	}
	info := &endpointInfo{tokenURL: tokenURL, assertionAud: md.TokenEndpoint, at: p.env.clock.Now()}
	switch cfg.AuthStyle {
	case AuthStyleInBody:
		info.secretInBody = true
	case AuthStyleAuto:
		// RFC 8414 §2: absent means client_secret_basic.
		info.secretInBody = len(md.AuthMethods) > 0 &&
			!slices.Contains(md.AuthMethods, "client_secret_basic") &&
			slices.Contains(md.AuthMethods, "client_secret_post")
	}
	return info, nil
}

// truncateText cuts s to n bytes for an error message.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
