package devserver

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Client is an OAuth2 client as SuperTokens' core API spells it (its
// camelCase JSON is the core's). A Client is a plain value; the Server
// keeps its own copy of each registered one.
type Client struct {
	// ClientID identifies the client; Register makes one up when empty.
	ClientID string `json:"clientId"`
	// ClientSecret is the client's secret; Register makes one up when
	// empty. The client list never shows it.
	ClientSecret string `json:"clientSecret,omitempty"`
	// ClientName is a name for people.
	ClientName string `json:"clientName"`
	// GrantTypes are the grants the client may use; default
	// client_credentials, the only one the server implements.
	GrantTypes []string `json:"grantTypes"`
	// Scope is the space-separated list of scopes the client may ask for.
	Scope string `json:"scope"`
	// Audience lists the audiences the client may ask for.
	Audience []string `json:"audience"`
	// TokenEndpointAuthMethod is how the client sends its secret:
	// client_secret_basic (the default) or client_secret_post.
	TokenEndpointAuthMethod string `json:"tokenEndpointAuthMethod"`
	// AccessTokenLifespan is a Go duration ("5s", "1h"); empty means the
	// server's default.
	AccessTokenLifespan string `json:"clientCredentialsGrantAccessTokenLifespan,omitempty"`
}

const (
	methodBasic = "client_secret_basic"
	methodPost  = "client_secret_post"
)

// Register adds a client, filling in an id, secret and defaults where
// empty, and returns it with its secret.
func (s *Server) Register(c Client) (Client, error) {
	if c.ClientID == "" {
		c.ClientID = "client-" + randomHex(8)
	}
	if c.ClientSecret == "" {
		c.ClientSecret = randomHex(24)
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{"client_credentials"}
	}
	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = methodBasic
	}
	if c.TokenEndpointAuthMethod != methodBasic && c.TokenEndpointAuthMethod != methodPost {
		return Client{}, fmt.Errorf("tokenEndpointAuthMethod must be %s or %s", methodBasic, methodPost)
	}
	if c.AccessTokenLifespan != "" {
		if d, err := time.ParseDuration(c.AccessTokenLifespan); err != nil || d <= 0 {
			return Client{}, fmt.Errorf("clientCredentialsGrantAccessTokenLifespan %q is not a positive duration", c.AccessTokenLifespan)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.clients[c.ClientID]; dup {
		return Client{}, fmt.Errorf("client %q exists", c.ClientID)
	}
	stored := c
	s.clients[c.ClientID] = &stored
	return c, nil
}

// guard checks the api-key header in constant time.
func (s *Server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("api-key")), []byte(s.apiKey)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Invalid API key"})
			return
		}
		h(w, r)
	}
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request) {
	var c Client
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&c); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "invalid JSON body"})
		return
	}
	c.ClientID, c.ClientSecret = "", ""
	created, err := s.Register(c)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Client
	}{"OK", created})
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	list := make([]Client, 0, len(s.clients))
	for _, c := range s.clients {
		cc := *c
		cc.ClientSecret = ""
		list = append(list, cc)
	}
	s.mu.RUnlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ClientID < list[j].ClientID })
	writeJSON(w, http.StatusOK, map[string]any{"status": "OK", "clients": list})
}

func (s *Server) removeClient(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ClientID string `json:"clientId"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.ClientID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "clientId is required"})
		return
	}
	s.mu.Lock()
	_, existed := s.clients[body.ClientID]
	delete(s.clients, body.ClientID)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "OK", "didExist": existed})
}

// tokenParams reads a token request body, form or JSON. Like the real
// SuperTokens endpoint, a JSON scope that is not a string is a server
// error ("scope.split is not a function").
func tokenParams(r *http.Request) (url.Values, int, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := io.LimitReader(r.Body, 1<<20)
	if mt != "application/json" {
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		v, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		return v, 0, nil
	}
	var m map[string]any
	if err := json.NewDecoder(body).Decode(&m); err != nil {
		return nil, http.StatusBadRequest, err
	}
	v := url.Values{}
	for k, val := range m {
		str, ok := val.(string)
		if !ok {
			if k == "scope" {
				return nil, http.StatusInternalServerError, fmt.Errorf("%s.split is not a function", k)
			}
			return nil, http.StatusBadRequest, fmt.Errorf("%s must be a string", k)
		}
		v.Set(k, str)
	}
	return v, 0, nil
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.fault(w, r) {
		return
	}
	p, status, err := tokenParams(r)
	if err != nil {
		if status == http.StatusInternalServerError {
			writeJSON(w, status, map[string]string{"message": err.Error()})
			return
		}
		oauthError(w, status, "invalid_request", "The request body could not be read: "+err.Error())
		return
	}
	c, ok := s.authenticate(w, r, p)
	if !ok {
		return
	}
	if gt := p.Get("grant_type"); gt != "client_credentials" || !slices.Contains(c.GrantTypes, gt) {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("The authorization grant type %q is not supported by this client.", gt))
		return
	}
	allowed := strings.Fields(c.Scope)
	scopes := strings.Fields(p.Get("scope"))
	for _, sc := range scopes {
		if !slices.Contains(allowed, sc) {
			oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("The requested scope is invalid, unknown, or malformed. The OAuth 2.0 Client is not allowed to request scope '%s'.", sc))
			return
		}
	}
	audiences := strings.Fields(p.Get("audience"))
	for _, a := range audiences {
		if !slices.Contains(c.Audience, a) {
			oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("Requested audience '%s' has not been whitelisted by the OAuth 2.0 Client.", a))
			return
		}
	}
	life := s.lifetime
	if c.AccessTokenLifespan != "" {
		life, _ = time.ParseDuration(c.AccessTokenLifespan)
	}
	if scopes == nil {
		scopes = []string{}
	}
	if audiences == nil {
		audiences = []string{}
	}
	tok, err := s.sign(c, scopes, audiences, life)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(life.Round(time.Second) / time.Second),
		"scope":        strings.Join(scopes, " "),
		"token_type":   "bearer",
		"status":       "OK",
	})
}

// authenticate finds the client and checks its secret and its registered
// authentication method, answering Hydra's invalid_client errors.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, p url.Values) (*Client, bool) {
	const failed = "Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method)."
	method, id, secret := "", "", ""
	if u, pw, ok := r.BasicAuth(); ok {
		method = methodBasic
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(pw)
	} else if p.Get("client_secret") != "" {
		method, id, secret = methodPost, p.Get("client_id"), p.Get("client_secret")
	}
	s.mu.RLock()
	c := s.clients[id]
	s.mu.RUnlock()
	switch {
	case method == "" || c == nil:
		oauthError(w, http.StatusUnauthorized, "invalid_client", failed)
		return nil, false
	case c.TokenEndpointAuthMethod != method:
		oauthError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf(
			"%s The OAuth 2.0 Client supports client authentication method '%s', but method '%s' was requested. You must configure the OAuth 2.0 client's 'token_endpoint_auth_method' value to accept '%s'.",
			failed, c.TokenEndpointAuthMethod, method, method))
		return nil, false
	case subtle.ConstantTimeCompare([]byte(secret), []byte(c.ClientSecret)) != 1:
		oauthError(w, http.StatusUnauthorized, "invalid_client", failed)
		return nil, false
	}
	return c, true
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
