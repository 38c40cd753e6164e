package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/m2mauth/m2m"
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

// errNotFound is a client that does not exist.
var errNotFound = errors.New("no such client")

// send makes one request of the client API and returns the answer's
// status and body (read through the 1 MiB limit).
func (r *registry) send(ctx context.Context, method, path string, header http.Header, body any) (int, []byte, error) {
	base := r.coreURL
	if r.hydraURL != "" {
		base = r.hydraURL
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _, err := wire.ReadBody(resp.Body)
	return resp.StatusCode, b, err
}

// do sends a request and decodes a want-status answer into out.
func (r *registry) do(ctx context.Context, method, path string, header http.Header, body any, want int, out any) error {
	status, b, err := r.send(ctx, method, path, header, body)
	if err != nil {
		return err
	}
	if status != want {
		if method == http.MethodPost && strings.HasSuffix(path, "/clients") && status >= 200 && status <= 299 {
			// A create answered with another success than expected may
			// hold the new client's secret: say what came, never what it
			// says. Errors go through answerError, scrubbed of the API key.
			return fmt.Errorf("%s %s answered %d, want %d (%d bytes, not shown: they may hold a client secret; the client may exist now, see clients list)",
				method, path, status, want, len(b))
		}
		return r.answerError(method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the expected JSON: %w", method, path, err)
		}
	}
	return nil
}

// answerError describes an unexpected answer, with the start of its body,
// scrubbed of the API key (a server or proxy may echo it).
func (r *registry) answerError(method, path string, status, want int, b []byte) error {
	msg := oneLine(strings.ToValidUTF8(wire.NewScrubber("", r.apiKey).Truncate(string(b), 300), "?"))
	if status == http.StatusUnauthorized && r.hydraURL == "" {
		msg += " (check --api-key or $M2M_API_KEY)"
	}
	return fmt.Errorf("%s %s answered %d, want %d: %s", method, path, status, want, msg)
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

// remove deletes a client; errNotFound when it does not exist.
func (r *registry) remove(ctx context.Context, id string) error {
	if r.hydraURL != "" {
		path := "/admin/clients/" + url.PathEscape(id)
		status, b, err := r.send(ctx, http.MethodDelete, path, nil, nil)
		switch {
		case err != nil:
			return err
		case status == http.StatusNotFound:
			return errNotFound
		case status != http.StatusNoContent:
			return r.answerError(http.MethodDelete, path, status, http.StatusNoContent, b)
		}
		return nil
	}
	// The core answers {"status":"OK","didExist":false} for an unknown
	// client; a core that proxies Hydra answers an OAUTH_ERROR with
	// statusCode 404.
	var out struct {
		Status     string `json:"status"`
		DidExist   *bool  `json:"didExist"`
		Error      string `json:"error"`
		StatusCode int    `json:"statusCode"`
	}
	if err := r.do(ctx, http.MethodPost, "/recipe/oauth/clients/remove", r.coreHeader(), map[string]string{"clientId": id}, http.StatusOK, &out); err != nil {
		return err
	}
	switch {
	case out.Status == "OK" && out.DidExist != nil && !*out.DidExist,
		out.Status != "OK" && (out.StatusCode == http.StatusNotFound || out.Error == "not_found"):
		return errNotFound
	case out.Status != "OK":
		return fmt.Errorf("POST /recipe/oauth/clients/remove answered status %q %s", out.Status, out.Error)
	}
	return nil
}

// clientVerbs are the subcommands of "m2m clients".
var clientVerbs = []string{"create", "list", "delete"}

func runClients(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const overview = "Manages OAuth2 clients on a SuperTokens core (POST /recipe/oauth/clients, with\n" +
		"--api-key or $M2M_API_KEY) or an Ory Hydra admin API (--hydra-admin-url).\n" +
		"Run \"m2m clients create --help\" (or list, delete) for each one's flags."
	if len(args) == 0 || !slices.Contains(clientVerbs, args[0]) {
		c := newCommand("clients", "clients create|list|delete (--core-url URL | --hydra-admin-url URL) [flags]", overview)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			c.help(stdout)
			return errHelp
		}
		if len(args) == 0 {
			return usagef("say create, list or delete")
		}
		return usagef("unknown subcommand %q: say create, list or delete", args[0])
	}
	verb := args[0]
	var synopsis, about string
	switch verb {
	case "create":
		synopsis = "clients create (--core-url URL | --hydra-admin-url URL) --name NAME [--scope S]... [--audience A]... [flags]"
		about = "Registers a client for the client-credentials grant and prints its id and secret,\n" +
			"which is shown only this once. --output env prints them as shell export lines:\n" +
			"  eval \"$(m2m clients create ... --output env)\""
	case "list":
		synopsis = "clients list (--core-url URL | --hydra-admin-url URL) [flags]"
		about = "Lists the registered clients (never their secrets)."
	default:
		synopsis = "clients delete (--core-url URL | --hydra-admin-url URL) --client-id ID [flags]"
		about = "Deletes a client; exits 1 if there is no client with that id."
	}
	c := newCommand("clients "+verb, synopsis, about)
	coreURL := c.String("core-url", "URL", "", "", "SuperTokens core URL, e.g. http://127.0.0.1:3567")
	apiKey := c.String("api-key", "KEY", "M2M_API_KEY", "", "SuperTokens core api key")
	hydraURL := c.String("hydra-admin-url", "URL", "", "", "Ory Hydra admin URL, e.g. http://127.0.0.1:4445")
	insecure := c.Bool("insecure-http", "allow plain http to a server that is not on loopback (the api key would travel in clear)")
	timeout := c.Duration("timeout", defaultTimeout, "give up after this long")
	var name, authMethod, output, clientID *string
	var lifespan *time.Duration
	var scopes, audiences listFlag
	switch verb {
	case "create":
		name = c.String("name", "NAME", "", "", "client name")
		c.require("name")
		c.Var(&scopes, "scope", "SCOPE", "scope the client may ask for; repeatable, or several separated by spaces or commas")
		c.Var(&audiences, "audience", "NAME", "audience the client may ask for; repeatable")
		authMethod = c.String("auth-method", "basic|post", "", "basic", "token endpoint auth method: basic or post")
		lifespan = c.Duration("token-lifetime", 0, "access-token lifetime; default: the server's")
		output = c.String("output", "text|env", "", "text", "text, or env for shell export lines of M2M_CLIENT_ID and M2M_CLIENT_SECRET")
	case "delete":
		clientID = c.String("client-id", "ID", "", "", "client to delete; or give it as the one argument")
	}
	if err := c.parse(args[1:], stdout); err != nil {
		return err
	}
	if verb == "delete" && *clientID == "" && len(c.args) == 1 {
		*clientID, c.args = c.args[0], nil
	}
	if err := c.noArgs(); err != nil {
		return err
	}
	if (*coreURL == "") == (*hydraURL == "") {
		return usagef("give exactly one of --core-url and --hydra-admin-url")
	}
	for flagName, u := range map[string]string{"--core-url": *coreURL, "--hydra-admin-url": *hydraURL} {
		if u == "" {
			continue
		}
		if _, err := wire.CheckURL(u, *insecure); err != nil {
			return usagef("%s %q %s", flagName, wire.Redacted(u), strings.Replace(err.Error(), "allow insecure http", "give --insecure-http", 1))
		}
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive, got %s", *timeout)
	}
	r := &registry{coreURL: *coreURL, apiKey: *apiKey, hydraURL: *hydraURL, hc: wire.NewHTTPClient(*timeout)}
	defer r.hc.CloseIdleConnections()
	if *coreURL != "" && r.apiKey == "" {
		return usagef("the SuperTokens core needs --api-key or $M2M_API_KEY")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err := clientsVerb(ctx, r, verb, stdout, stderr, clientsArgs{name: name, authMethod: authMethod, output: output,
		clientID: clientID, lifespan: lifespan, scopes: scopes, audiences: audiences})
	if err != nil && timedOut(ctx, err) {
		return fmt.Errorf("the server did not answer within --timeout %s", *timeout)
	}
	return err
}

// clientsArgs are the verb-specific flags; nil for another verb's.
type clientsArgs struct {
	name, authMethod, output, clientID *string
	lifespan                           *time.Duration
	scopes, audiences                  []string
}

func clientsVerb(ctx context.Context, r *registry, verb string, stdout, stderr io.Writer, a clientsArgs) error {
	switch verb {
	case "create":
		if *a.output != "text" && *a.output != "env" {
			return usagef("--output must be text or env, got %q", *a.output)
		}
		method := "client_secret_basic"
		if style, err := authStyle(*a.authMethod); err != nil {
			return err
		} else if style == m2m.AuthStyleInBody {
			method = "client_secret_post"
		}
		oc := oauthClient{Name: *a.name, Scope: strings.Join(a.scopes, " "), Audience: a.audiences, AuthMethod: method}
		if *a.lifespan < 0 {
			return usagef("--token-lifetime must be positive, got %s", *a.lifespan)
		}
		if *a.lifespan > 0 {
			oc.Lifespan = a.lifespan.String()
		}
		created, err := r.create(ctx, oc)
		if err != nil {
			return err
		}
		if *a.output == "env" {
			fmt.Fprintf(stdout, "export M2M_CLIENT_ID=%s\nexport M2M_CLIENT_SECRET=%s\n", shellQuote(created.ID), shellQuote(created.Secret))
		} else {
			fmt.Fprintf(stdout, "client_id: %s\nclient_secret: %s\n", created.ID, created.Secret)
		}
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
		id := *a.clientID
		if id == "" {
			return usagef("--client-id is required")
		}
		if err := r.remove(ctx, id); err != nil {
			if errors.Is(err, errNotFound) {
				return fmt.Errorf("no client with id %q: nothing deleted", id)
			}
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", id)
		return nil
	}
}

// shellQuote quotes s for a POSIX shell, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
