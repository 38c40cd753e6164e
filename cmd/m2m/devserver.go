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
	c := newCommand("devserver", "devserver [--addr 127.0.0.1:3567] [--api-key KEY] [--client ID:SECRET:SCOPES:AUDIENCES]... [flags]",
		"Runs a SuperTokens-compatible authorization server FOR DEVELOPMENT AND TESTS ONLY,\n"+
			"NOT FOR PRODUCTION: clients and keys live in memory and nothing is hardened.\n"+
			"It serves the token endpoint, the JWKS, the core's client API, and an example\n"+
			"Calendar Service at /calendar/events that requires tokens of audience \"event\"\n"+
			"(GET needs scope event.view, POST event.create), checked with package verify.\n"+
			"--client takes comma-separated scopes and audiences, e.g.\n"+
			"  --client 'task:s3cret:event.view,event.create:event,file'\n"+
			"It runs until interrupted (Ctrl-C, SIGINT or SIGTERM).")
	addr := c.String("addr", "HOST:PORT", "", "127.0.0.1:3567", "address to listen on")
	lifetime := c.Duration("token-lifetime", time.Hour, "access-token lifetime of clients that set none")
	apiKey := c.String("api-key", "KEY", "M2M_API_KEY", "", "api key of the client API; default: random, and printed")
	clientsFile := c.String("clients", "FILE", "", "", "JSON file with an array of clients, camelCase as the core's API")
	var inline multiFlag
	c.Var(&inline, "client", "ID:SECRET:SCOPES:AUDIENCES", "a client registered at start; repeatable")
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	if err := c.noArgs(); err != nil {
		return err
	}
	if *lifetime <= 0 {
		return usagef("--token-lifetime must be positive, got %s", *lifetime)
	}
	opts := devserver.Options{APIKey: *apiKey, TokenLifetime: *lifetime}
	if *clientsFile != "" {
		b, err := os.ReadFile(*clientsFile)
		if err != nil {
			return fmt.Errorf("reading --clients: %w", err)
		}
		if err := json.Unmarshal(b, &opts.Clients); err != nil {
			return fmt.Errorf("--clients %s: want a JSON array of clients: %w", *clientsFile, err)
		}
	}
	for _, spec := range inline {
		cl, err := parseClient(spec)
		if err != nil {
			return err
		}
		opts.Clients = append(opts.Clients, cl)
	}
	s, err := devserver.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.Start(ctx, *addr); err != nil {
		return err
	}
	defer s.Close()
	closeCalendar, err := mountCalendar(ctx, s)
	if err != nil {
		return err
	}
	defer closeCalendar()
	fmt.Fprintf(stdout, "m2m development authorization server: for development and tests only, NOT for production\n"+
		"  token endpoint: %s\n  JWKS:           %s\n  issuer:         %s\n  client API:     %s/recipe/oauth/clients\n"+
		"  example API:    %s%s (audience event; GET needs event.view, POST event.create)\n",
		s.TokenURL(), s.JWKSURL(), s.Issuer(), s.URL(), s.URL(), calendarPath)
	if *apiKey == "" {
		fmt.Fprintf(stdout, "  api-key:        %s\n", s.APIKey())
	}
	for _, cl := range opts.Clients {
		fmt.Fprintf(stdout, "  client:         %s (scope %q, audience %s)\n", cl.ClientID, cl.Scope, strings.Join(cl.Audience, " "))
	}
	fmt.Fprintln(stdout, "Stop it with Ctrl-C.")
	<-ctx.Done()
	fmt.Fprintln(stderr, "m2m devserver: stopped")
	return nil
}

// parseClient reads --client ID:SECRET:SCOPES:AUDIENCES. The secret may
// hold colons: the id is the first field, scopes and audiences the last two.
func parseClient(spec string) (devserver.Client, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 4 || parts[0] == "" {
		return devserver.Client{}, usagef("--client %q is not ID:SECRET:SCOPES:AUDIENCES", spec)
	}
	n := len(parts)
	secret := strings.Join(parts[1:n-2], ":")
	if secret == "" {
		return devserver.Client{}, usagef("--client %q has an empty secret", parts[0]+":…")
	}
	return devserver.Client{ClientID: parts[0], ClientSecret: secret, ClientName: parts[0],
		Scope: strings.Join(splitList(parts[n-2]), " "), Audience: splitList(parts[n-1])}, nil
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
