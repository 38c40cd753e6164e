package wire

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ErrURLCredentials is CheckURL's error for a URL with user information;
// callers refuse such a URL without echoing it.
var ErrURLCredentials = errors.New("must not hold credentials")

// CheckURL parses raw as an absolute http(s) URL without credentials or
// fragment, and enforces https unless the host is loopback or
// allowInsecure is set. Its errors say what is wrong but not which field.
func CheckURL(raw string, allowInsecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("does not parse as a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("must be an absolute http(s) URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("has no host")
	case u.User != nil:
		return nil, ErrURLCredentials
	case u.Fragment != "":
		return nil, errors.New("must not have a fragment")
	case u.Scheme == "http" && !allowInsecure && !IsLoopback(u.Hostname()):
		return nil, errors.New("is plain http on a non-loopback host; use https or allow insecure http")
	}
	return u, nil
}

// schemePrefix matches "scheme://" at the start of a URL (RFC 3986 §3.1).
var schemePrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// Redacted returns raw for an error message, with what may be userinfo
// (everything after "scheme://", or from the start when there is no
// scheme, up to the last "@") replaced by "…". It works on strings that do not parse as URLs too,
// where a password with a stray '%' or '/' may hide.
func Redacted(raw string) string {
	start := 0
	if m := schemePrefix.FindStringIndex(raw); m != nil {
		start = m[1]
	}
	if at := strings.LastIndexByte(raw[start:], '@'); at >= 0 {
		return raw[:start] + "…@" + raw[start+at+1:]
	}
	return raw
}

// IsLoopback reports whether host (without port) is "localhost" itself or
// a literal loopback IP address. A name under ".localhost" is not: a
// resolver with search domains may send it elsewhere.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// NewHTTPClient returns an http.Client with a timeout that does not follow
// redirects (a redirect could carry credentials to another host, or a
// fetch from https down to http), on a transport of its own: a clone of
// http.DefaultTransport as the program started, so later app-wide changes
// to it (a proxy, InsecureSkipVerify) do not touch requests that carry
// credentials.
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     defaultTransport.Clone(),
		CheckRedirect: NoRedirects,
	}
}

// defaultTransport is http.DefaultTransport as this package saw it first
// (or, if something replaced it before, net/http's defaults).
var defaultTransport = func() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}()

// NoRedirects is an http.Client CheckRedirect that stops at the first
// redirect and returns it as the response.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// WithoutRedirects returns a shallow copy of hc that does not follow
// redirects, whoever built hc.
func WithoutRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = NoRedirects
	return &c
}
