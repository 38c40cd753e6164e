package wire

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

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
		return nil, errors.New("must not hold credentials")
	case u.Fragment != "":
		return nil, errors.New("must not have a fragment")
	case u.Scheme == "http" && !allowInsecure && !IsLoopback(u.Hostname()):
		return nil, errors.New("is plain http on a non-loopback host; use https or allow insecure http")
	}
	return u, nil
}

// IsLoopback reports whether host (without port) is "localhost", a name
// under ".localhost", or a loopback IP address.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// NewHTTPClient returns an http.Client with a timeout that does not follow
// redirects: a redirect could carry credentials to another host, or a
// fetch from https down to http.
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: http.DefaultTransport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
