package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/m2mauth/m2m"
	"text/tabwriter"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
)

// oauthClient is a registered client, whichever server holds it.
type oauthClient struct {
	ID, Secret, Name, Scope, AuthMethod string
	Audience                            []string
	Lifespan                            string // Go duration; empty: server default
}

// registry creates, lists and deletes clients on a SuperTokens core or an
// Ory Hydra admin API.
type registry struct {
	coreURL, apiKey, hydraURL string
	hc                        *http.Client
}

func (r *registry) do(ctx context.Context, method, path string, header http.Header, body any, want int, out any) error {
	base := r.coreURL
	if r.hydraURL != "" {
		base = r.hydraURL
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _, err := wire.ReadBody(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		msg := strings.TrimSpace(string(b[:min(len(b), 300)]))
		if resp.StatusCode == http.StatusUnauthorized && r.hydraURL == "" {
			msg += " (check --api-key or $M2M_API_KEY)"
		}
		return fmt.Errorf("%s %s answered %d: %s", method, path, resp.StatusCode, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return nil
}

func (r *registry) coreHeader() http.Header { return http.Header{"Api-Key": {r.apiKey}} }

// hydraClient is Hydra's snake_case client.
type hydraClient struct {
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret string   `json:"client_secret,omitempty"`
	ClientName   string   `json:"client_name"`
	GrantTypes   []string `json:"grant_types"`
	Scope        string   `json:"scope"`
	Audience     []string `json:"audience"`
	AuthMethod   string   `json:"token_endpoint_auth_method"`
	Lifespan     string   `json:"client_credentials_grant_access_token_lifespan,omitempty"`
}

// coreClient is SuperTokens' camelCase client.
type coreClient struct {
	Status       string   `json:"status,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	ClientSecret string   `json:"clientSecret,omitempty"`
	ClientName   string   `json:"clientName"`
	GrantTypes   []string `json:"grantTypes"`
	Scope        string   `json:"scope"`
	Audience     []string `json:"audience"`
	AuthMethod   string   `json:"tokenEndpointAuthMethod"`
	Lifespan     string   `json:"clientCredentialsGrantAccessTokenLifespan,omitempty"`
}

func (r *registry) create(ctx context.Context, c oauthClient) (oauthClient, error) {
	if r.hydraURL != "" {
		var out hydraClient
		err := r.do(ctx, http.MethodPost, "/admin/clients", nil, hydraClient{ClientName: c.Name, GrantTypes: []string{"client_credentials"},
			Scope: c.Scope, Audience: c.Audience, AuthMethod: c.AuthMethod, Lifespan: c.Lifespan}, http.StatusCreated, &out)
		return oauthClient{ID: out.ClientID, Secret: out.ClientSecret, Name: out.ClientName, Scope: out.Scope, Audience: out.Audience, AuthMethod: out.AuthMethod}, err
	}
	var out coreClient
	err := r.do(ctx, http.MethodPost, "/recipe/oauth/clients", r.coreHeader(), coreClient{ClientName: c.Name, GrantTypes: []string{"client_credentials"},
		Scope: c.Scope, Audience: c.Audience, AuthMethod: c.AuthMethod, Lifespan: c.Lifespan}, http.StatusOK, &out)
	if err == nil && out.Status != "OK" {
		err = fmt.Errorf("core answered status %q", out.Status)
	}
	return oauthClient{ID: out.ClientID, Secret: out.ClientSecret, Name: out.ClientName, Scope: out.Scope, Audience: out.Audience, AuthMethod: out.AuthMethod}, err
}

func (r *registry) list(ctx context.Context) ([]oauthClient, error) {
	var list []oauthClient
	if r.hydraURL != "" {
		var out []hydraClient
		if err := r.do(ctx, http.MethodGet, "/admin/clients", nil, nil, http.StatusOK, &out); err != nil {
			return nil, err
		}
		for _, c := range out {
			list = append(list, oauthClient{ID: c.ClientID, Name: c.ClientName, Scope: c.Scope, Audience: c.Audience, AuthMethod: c.AuthMethod})
		}
		return list, nil
	}
	var out struct{ Clients []coreClient }
	if err := r.do(ctx, http.MethodGet, "/recipe/oauth/clients/list", r.coreHeader(), nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	for _, c := range out.Clients {
		list = append(list, oauthClient{ID: c.ClientID, Name: c.ClientName, Scope: c.Scope, Audience: c.Audience, AuthMethod: c.AuthMethod})
	}
	return list, nil
}

func (r *registry) remove(ctx context.Context, id string) error {
	if r.hydraURL != "" {
		return r.do(ctx, http.MethodDelete, "/admin/clients/"+url.PathEscape(id), nil, nil, http.StatusNoContent, nil)
	}
	return r.do(ctx, http.MethodPost, "/recipe/oauth/clients/remove", r.coreHeader(), map[string]string{"clientId": id}, http.StatusOK, nil)
}

func runClients(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = "clients create|list|delete (--core-url URL [--api-key KEY] | --hydra-admin-url URL) [flags]\n\n" +
		"Manages OAuth2 clients on a SuperTokens core (api key from --api-key or $M2M_API_KEY)\n" +
		"or an Ory Hydra admin API."
	if len(args) == 0 || (args[0] != "create" && args[0] != "list" && args[0] != "delete") {
		fs := newFlags("clients", synopsis, stderr)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fs.Usage()
			return nil
		}
		fs.Usage()
		return usagef("clients: say create, list or delete")
	}
	sub := args[0]
	fs := newFlags("clients "+sub, synopsis, stderr)
	coreURL := fs.String("core-url", "", "SuperTokens core URL")
	apiKey := fs.String("api-key", "", "SuperTokens core api key (default $M2M_API_KEY)")
	hydraURL := fs.String("hydra-admin-url", "", "Ory Hydra admin URL")
	name := fs.String("name", "", "client name (create)")
	var scopes, audiences listFlag
	fs.Var(&scopes, "scope", "scope the client may ask for (create; repeatable)")
	fs.Var(&audiences, "audience", "audience the client may ask for (create; repeatable)")
	authMethod := fs.String("auth-method", "basic", "token endpoint auth method (create): basic or post")
	lifespan := fs.Duration("token-lifetime", 0, "access-token lifetime (create; default: the server's)")
	clientID := fs.String("client-id", "", "client to delete (delete)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if (*coreURL == "") == (*hydraURL == "") {
		return usagef("clients: give exactly one of --core-url and --hydra-admin-url")
	}
	r := &registry{coreURL: *coreURL, apiKey: *apiKey, hydraURL: *hydraURL, hc: wire.NewHTTPClient(30 * time.Second)}
	if r.apiKey == "" {
		r.apiKey = os.Getenv("M2M_API_KEY")
	}
	if *coreURL != "" && r.apiKey == "" {
		return usagef("clients: the SuperTokens core needs --api-key or $M2M_API_KEY")
	}
	switch sub {
	case "create":
		if *name == "" {
			return usagef("clients create: --name is required")
		}
		method := "client_secret_basic"
		if style, err := authStyle(*authMethod); err != nil {
			return err
		} else if style == m2m.AuthStyleInBody {
			method = "client_secret_post"
		}
		c := oauthClient{Name: *name, Scope: strings.Join(scopes, " "), Audience: audiences, AuthMethod: method}
		if *lifespan > 0 {
			c.Lifespan = lifespan.String()
		}
		created, err := r.create(ctx, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "client_id: %s\nclient_secret: %s\n", created.ID, created.Secret)
		fmt.Fprintln(stderr, "Store the client secret safely now: it is shown only this once.")
		return nil
	case "list":
		list, err := r.list(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT ID\tNAME\tSCOPE\tAUDIENCE\tAUTH METHOD")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.Scope, strings.Join(c.Audience, " "), c.AuthMethod)
		}
		return tw.Flush()
	default:
		id := *clientID
		if id == "" && fs.NArg() == 1 {
			id = fs.Arg(0)
		}
		if id == "" {
			return usagef("clients delete: --client-id is required")
		}
		if err := r.remove(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", id)
		return nil
	}
}
