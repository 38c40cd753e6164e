// Package wire holds the OAuth2 client-credentials wire protocol shared by
// the m2m packages: encoding the token request (RFC 6749 §4.4) in the form
// or JSON dialect, parsing the token response (§5.1) and error response
// (§5.2) through a size limit, and reading the expiry of a JWT.
//
// Nothing here does I/O beyond reading a response body it is handed.
package wire

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Request is everything needed to build one token request.
type Request struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	// SecretInBody sends client_id and client_secret as body parameters
	// (client_secret_post) instead of HTTP Basic (client_secret_basic).
	SecretInBody bool
	// JSON sends an application/json body with every value a string, the
	// dialect SuperTokens documents (scope stays one space-separated
	// string); otherwise the body is a form (RFC 6749 §4.4.2).
	JSON     bool
	Audience string   // empty: no audience parameter
	Resource string   // RFC 8707 resource indicator; empty: none
	Scopes   []string // joined with spaces; empty: no scope parameter
	Extra    url.Values
}

// reserved are the parameters the SDK owns; Extra may not override them.
var reserved = map[string]bool{
	"grant_type": true, "scope": true, "audience": true, "resource": true,
	"client_id": true, "client_secret": true,
	"client_assertion": true, "client_assertion_type": true,
}

// IsReserved reports whether name is a parameter the SDK sets itself.
func IsReserved(name string) bool { return reserved[name] }

// params returns the body parameters in a deterministic order.
func (r *Request) params() (keys []string, vals map[string][]string) {
	vals = map[string][]string{"grant_type": {"client_credentials"}}
	if len(r.Scopes) > 0 {
		vals["scope"] = []string{strings.Join(r.Scopes, " ")}
	}
	if r.Audience != "" {
		vals["audience"] = []string{r.Audience}
	}
	if r.Resource != "" {
		vals["resource"] = []string{r.Resource}
	}
	if r.SecretInBody {
		vals["client_id"] = []string{r.ClientID}
		vals["client_secret"] = []string{r.ClientSecret}
	}
	for k, v := range r.Extra {
		if !reserved[k] && len(v) > 0 {
			vals[k] = v
		}
	}
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, vals
}

// Body returns the encoded body and its content type.
func (r *Request) Body() ([]byte, string, error) {
	keys, vals := r.params()
	if r.JSON {
		// Only string values: a JSON array for scope makes the real
		// SuperTokens endpoint answer 500 ("scope.split is not a function").
		var buf bytes.Buffer
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, err := json.Marshal(k)
			if err != nil {
				return nil, "", err
			}
			// A repeated extra parameter is joined with spaces, the
			// convention both SuperTokens and Hydra parse.
			vb, err := json.Marshal(strings.Join(vals[k], " "))
			if err != nil {
				return nil, "", err
			}
			buf.Write(kb)
			buf.WriteByte(':')
			buf.Write(vb)
		}
		buf.WriteByte('}')
		return buf.Bytes(), "application/json", nil
	}
	form := url.Values(vals)
	return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
}

// BasicAuth returns the Authorization header value of RFC 6749 §2.3.1: the
// client id and secret are form-urlencoded before they are Basic-encoded,
// so a secret holding ':' or '%' survives.
func BasicAuth(id, secret string) string {
	raw := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

// Build builds the POST to the token endpoint. bytes.Reader bodies get a
// GetBody from net/http, so the request can be replayed on a retry.
func (r *Request) Build(ctx context.Context) (*http.Request, error) {
	body, ctype, err := r.Body()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.TokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	if !r.SecretInBody {
		req.Header.Set("Authorization", BasicAuth(r.ClientID, r.ClientSecret))
	}
	return req, nil
}
