package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2m/internal/devserver"
)

func runDevserver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devserver", "devserver [--addr 127.0.0.1:3567] [--token-lifetime 1h] [--api-key KEY] [--clients FILE] [--client ID:SECRET:SCOPES:AUDIENCES]...\n\n"+
		"Runs a SuperTokens-compatible authorization server FOR DEVELOPMENT AND TESTS ONLY,\n"+
		"NOT FOR PRODUCTION: clients and keys live in memory and nothing is hardened.\n"+
		"--client takes comma-separated scopes and audiences, e.g. task:s3cret:event.view,event.create:event", stderr)
	addr := fs.String("addr", "127.0.0.1:3567", "address to listen on")
	lifetime := fs.Duration("token-lifetime", time.Hour, "default access-token lifetime")
	apiKey := fs.String("api-key", "", "api key of the client API (default $M2M_API_KEY, else random and printed)")
	clientsFile := fs.String("clients", "", "JSON file with an array of clients (camelCase, as the core API)")
	var inline multiFlag
	fs.Var(&inline, "client", "a client as ID:SECRET:SCOPES:AUDIENCES (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts := devserver.Options{APIKey: *apiKey, TokenLifetime: *lifetime}
	if opts.APIKey == "" {
		opts.APIKey = os.Getenv("M2M_API_KEY")
	}
	if *clientsFile != "" {
		b, err := os.ReadFile(*clientsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &opts.Clients); err != nil {
			return fmt.Errorf("devserver: %s: %w", *clientsFile, err)
		}
	}
	for _, spec := range inline {
		parts := strings.Split(spec, ":")
		if len(parts) != 4 {
			return usagef("devserver: --client %q is not ID:SECRET:SCOPES:AUDIENCES", spec)
		}
		opts.Clients = append(opts.Clients, devserver.Client{ClientID: parts[0], ClientSecret: parts[1], ClientName: parts[0],
			Scope: strings.ReplaceAll(parts[2], ",", " "), Audience: strings.Split(parts[3], ",")})
	}
	s, err := devserver.New(opts)
	if err != nil {
		return fmt.Errorf("devserver: %w", err)
	}
	if err := s.Start(ctx, *addr); err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "m2m development authorization server: for development and tests only, NOT for production\n"+
		"  token endpoint: %s\n  JWKS:           %s\n  issuer:         %s\n  client API:     %s/recipe/oauth/clients\n",
		s.TokenURL(), s.JWKSURL(), s.Issuer(), s.URL())
	if *apiKey == "" && os.Getenv("M2M_API_KEY") == "" {
		fmt.Fprintf(stdout, "  api-key:        %s\n", s.APIKey())
	}
	for _, c := range opts.Clients {
		fmt.Fprintf(stdout, "  client:         %s (scope %q, audience %s)\n", c.ClientID, c.Scope, strings.Join(c.Audience, " "))
	}
	<-ctx.Done()
	return nil
}
