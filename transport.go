package m2m

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"strings"
)

// Transport is an http.RoundTripper that adds the token of the request's
// audience. A request gets a token only when it is inside an audience: its
// URL's scheme, host, port and longest matching path prefix (matched on
// the escaped path, as the receiving server routes it) name the audience,
// its Host header names the URL's host, and, on a redirect hop, every
// earlier request of the chain was inside the same audience. Any other
// request is sent untouched, without a token, as is a request that
// already has an Authorization header. A DPoP-bound token (Config.DPoPKey)
// goes as "Authorization: DPoP <token>" with a fresh DPoP proof of this
// request; a callee's DPoP-Nonce is remembered, and a 401 asking for it
// (use_dpop_nonce) is answered by sending the request once more with it,
// when the body can be replayed. A 401 answer evicts the token and,
// when the body can be replayed, the request is sent once more with a new
// one; a callee that rejects that one too stops causing fetches for a
// while.
//
// Transport never modifies the request it is given: it sends a copy. It is
// safe for concurrent use and should be reused.
type Transport struct {
	base   http.RoundTripper
	routes []route // longest prefix first
	err    error   // a misconfiguration, returned by every RoundTrip
}

// NewTransport returns a Transport that sends requests through base (nil
// means http.DefaultTransport) with the tokens of sources. Every source
// must come from Client.Source with an Audience URL. A nil source, one
// without a URL, or two sources claiming the same URL make every
// RoundTrip fail with an error that says so, rather than send a token to
// the wrong service.
func NewTransport(base http.RoundTripper, sources ...*TokenSource) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{base: base}
	seen := map[string]*TokenSource{}
	for i, s := range sources {
		if s == nil {
			t.err = fmt.Errorf("%w: NewTransport source %d is nil (was the error of Client.Source checked?)", ErrInvalidConfig, i)
			return t
		}
		if len(s.spec.routes) == 0 {
			t.err = fmt.Errorf("%w: audience %q has no URL, so no request can be routed to it", ErrInvalidConfig, s.spec.aud.Name)
			return t
		}
		for _, r := range s.spec.routes {
			key := r.scheme + "://" + r.host + ":" + r.port + r.prefix
			if other := seen[key]; other != nil && other != s {
				t.err = fmt.Errorf("%w: audiences %q and %q both claim %s", ErrInvalidConfig, other.spec.aud.Name, s.spec.aud.Name, key)
				return t
			}
			seen[key] = s
			r.src = s
			t.routes = append(t.routes, r)
		}
	}
	sort.SliceStable(t.routes, func(i, j int) bool { return len(t.routes[i].prefix) > len(t.routes[j].prefix) })
	return t
}

// RoundTrip implements http.RoundTripper. It fails, closing the request
// body, when no token can be had for the request's audience.
func (t *Transport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	// The RoundTripper contract: the request body is closed on every
	// path, by the base once it has the request, by us until then.
	handedOver := false
	defer func() {
		if !handedOver && req.Body != nil {
			req.Body.Close()
		}
	}()
	if t.err != nil {
		return nil, t.err
	}
	if req.URL == nil {
		return nil, errors.New("m2m: request has no URL")
	}
	src := requestRoute(t.routes, req)
	if src == nil || len(req.Header["Authorization"]) > 0 {
		handedOver = true
		return t.base.RoundTrip(req)
	}
	e, st, err := src.get(req.Context())
	if err != nil {
		return nil, err
	}
	r2, err := e.env.authorize(req, st)
	if err != nil {
		return nil, err
	}
	handedOver = true
	resp, err = t.base.RoundTrip(r2)
	if d := e.env.dpop; d != nil && err == nil && resp != nil && d.sawNonce(req.URL, resp.Header) && nonceChallenge(resp) {
		if resp, err = t.replayWithNonce(req, e, st, resp); err == nil && resp != nil && nonceChallenge(resp) {
			return resp, nil // the token is fine: never evict it for a nonce
		}
	}
	if err != nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	return t.replay(req, e, st, resp)
}

// replay handles a 401 to a request that carried st: the token is evicted
// (only if it is still the cached one, so concurrent 401s cause one
// refetch), and if the request's body can be sent again (no body, or
// GetBody) a new token is fetched and the request sent once more.
// Otherwise, or if no new token can be had, the 401 is returned as it
// came. If the new token is rejected too, the key stops evicting for a
// while: the callee, not the token, is the problem. It never loops.
func (t *Transport) replay(req *http.Request, e *entry, st *tokenState, resp *http.Response) (*http.Response, error) {
	if !e.evict(st) && e.state.Load() == st {
		return resp, nil // evictions are paused
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil
	}
	fresh, err := e.get(req.Context())
	if err != nil || fresh == st {
		return resp, nil
	}
	r2, err := e.env.authorize(req, fresh)
	if err != nil {
		return resp, nil
	}
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r2.Body = body
	}
	drain(resp) // let the connection be reused
	e.observe(Event{Kind: EventReplay})
	e.log(slog.LevelInfo, "m2m: request answered 401, replayed once with a new token")
	resp2, err := t.base.RoundTrip(r2)
	if err == nil && resp2 != nil && resp2.StatusCode == http.StatusUnauthorized {
		e.pauseEvictions()
	}
	return resp2, err
}

// withAuth returns a shallow copy of req with its own header map holding
// auth. The header value slices are shared, not copied: RoundTrippers
// replace header values, they do not write into them.
func withAuth(req *http.Request, auth []string) *http.Request {
	r2 := new(http.Request)
	*r2 = *req
	// maps.Clone copies a small map's memory in one go; the insert then
	// fits in the copy's free slots.
	h := maps.Clone(req.Header)
	if h == nil {
		h = make(http.Header, 1)
	}
	h["Authorization"] = auth
	r2.Header = h
	return r2
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method; http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// String describes the Transport by the audiences it routes.
func (t *Transport) String() string {
	var b strings.Builder
	b.WriteString("m2m.Transport{")
	for i, r := range t.routes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s://%s:%s%s → %q", r.scheme, r.host, r.port, r.prefix, r.src.spec.aud.Name)
	}
	b.WriteString("}")
	return b.String()
}

// Format prints String for every verb, so no verb can show a token.
func (t *Transport) Format(f fmt.State, _ rune) { fmt.Fprint(f, t.String()) }
