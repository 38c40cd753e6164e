package main

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2m"
)

// defaultTimeout bounds every network command unless --timeout says otherwise.
const defaultTimeout = 30 * time.Second

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("token", "token --token-url URL|--issuer URL --client-id ID [--audience A] [--scope S]... [flags]",
		"Prints an access token of the client-credentials grant, e.g. for\n"+
			"  curl -H \"Authorization: Bearer $(m2m token ...)\" URL\n"+
			"The client authenticates with --private-key-file (private_key_jwt),\n"+
			"--client-assertion-file or a client secret: --client-secret-file, else\n"+
			"--client-secret, else $M2M_CLIENT_SECRET.")
	tokenURL := c.String("token-url", "URL", "M2M_TOKEN_URL", "", "token endpoint, e.g. http://127.0.0.1:3567/auth/oauth/token")
	issuer := c.String("issuer", "URL", "M2M_ISSUER", "", "authorization server whose metadata names the token endpoint (instead of --token-url)")
	clientID := c.String("client-id", "ID", "M2M_CLIENT_ID", "", "OAuth2 client id")
	secretFile := c.String("client-secret-file", "FILE", "", "", "file holding the client secret")
	secretFlag := c.String("client-secret", "SECRET", "", "", "client secret; visible in the process list, prefer --client-secret-file or $M2M_CLIENT_SECRET")
	keyFile := c.String("private-key-file", "FILE", "", "", "PEM or JWK private key: authenticate with signed assertions (private_key_jwt) instead of a secret")
	keyID := c.String("key-id", "KID", "", "", "kid of the assertions signed with --private-key-file")
	assertionFile := c.String("client-assertion-file", "FILE", "", "", "file holding a ready-made client assertion (a workload identity token)")
	dpopKeyFile := c.String("dpop-key-file", "FILE", "", "", "PEM or JWK private key: ask for a DPoP-bound token (RFC 9449)")
	audience := c.String("audience", "NAME", "", "", "audience to ask for, e.g. event")
	resource := c.String("resource", "URI", "", "", "resource indicator to send (RFC 8707), e.g. https://calendar.example.com")
	var scopes listFlag
	c.Var(&scopes, "scope", "SCOPE", "scope to ask for; repeatable, or several separated by spaces or commas")
	authMethod := c.String("auth-method", "basic|post", "", "", "how the secret is sent: basic (client_secret_basic) or post (client_secret_post); default basic, or what the --issuer's metadata lists")
	encoding := c.String("encoding", "form|json", "", "form", "request body: form or json")
	asJSON := c.Bool("json", "print the whole response, with the computed expiry, as JSON")
	insecure := c.Bool("insecure-http", "allow plain http to a token endpoint that is not on loopback")
	timeout := c.Duration("timeout", defaultTimeout, "give up after this long")
	c.require("client-id")
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	if err := c.noArgs(); err != nil {
		return err
	}
	switch {
	case *tokenURL == "" && *issuer == "":
		return usagef("--token-url (or $M2M_TOKEN_URL) or --issuer (or $M2M_ISSUER) is required")
	case *tokenURL == "" || *issuer == "":
	case c.flagged["token-url"] && !c.flagged["issuer"]:
		*issuer = "" // the flag beats the other's variable
	case c.flagged["issuer"] && !c.flagged["token-url"]:
		*tokenURL = ""
	default:
		return usagef("give --token-url (or $M2M_TOKEN_URL) or --issuer (or $M2M_ISSUER), not both")
	}
	secretless := *keyFile != "" || *assertionFile != ""
	switch {
	case *keyID != "" && *keyFile == "":
		return usagef("--key-id goes with --private-key-file")
	case *authMethod != "" && secretless:
		return usagef("--auth-method says how a client secret is sent; --private-key-file and --client-assertion-file send none")
	}
	cfg := m2m.Config{TokenURL: *tokenURL, Issuer: *issuer, ClientID: *clientID, AllowInsecureHTTP: *insecure,
		PrivateKeyFile: *keyFile, KeyID: *keyID, ClientAssertionFile: *assertionFile}
	var err error
	if *authMethod != "" {
		if cfg.AuthStyle, err = authStyle(*authMethod); err != nil {
			return err
		}
	}
	switch *encoding {
	case "form":
	case "json":
		cfg.Encoding = m2m.EncodingJSON
	default:
		return usagef("--encoding must be form or json, got %q", *encoding)
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive, got %s", *timeout)
	}
	cfg.FetchTimeout = *timeout
	if *dpopKeyFile != "" {
		if cfg.DPoPKey, err = readKey(*dpopKeyFile); err != nil {
			return fmt.Errorf("--dpop-key-file: %w", err)
		}
	}
	if !secretless {
		if cfg.ClientSecret, err = clientSecret(c.given(), *secretFile, *secretFlag, stderr); err != nil {
			return err
		}
	} else if c.given()["client-secret-file"] || c.given()["client-secret"] {
		return usagef("give one client credential: a secret, --private-key-file or --client-assertion-file")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client, err := m2m.New(cfg)
	if err != nil {
		return explainConfig(err, tokenFlags)
	}
	defer client.Close()
	src, err := client.Source(m2m.Audience{Name: *audience, Scopes: scopes, Resource: *resource})
	if err != nil {
		return explainConfig(err, tokenFlags)
	}
	tok, err := src.TokenContext(ctx)
	if err != nil {
		return explainToken(ctx, err, *timeout)
	}
	if !*asJSON {
		fmt.Fprintln(stdout, tok.AccessToken)
		return nil
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"access_token": tok.AccessToken,
		"token_type":   tok.TokenType,
		"expires_in":   tok.ExpiresIn,
		"expiry":       tok.Expiry.UTC().Format(time.RFC3339),
		"scope":        tok.Extra("scope"),
	})
}

// maxKeyFile bounds what readKey reads: a PEM or JWK key is a few KiB.
const maxKeyFile = 64 << 10

// readKey reads a private key file (PEM or JWK), a regular file of at most
// maxKeyFile bytes, as m2m.ParsePrivateKey does; its errors never quote
// the file.
func readKey(file string) (crypto.Signer, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", file)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, maxKeyFile)
	}
	return m2m.ParsePrivateKey(b)
}

func authStyle(method string) (m2m.AuthStyle, error) {
	switch method {
	case "basic", "client_secret_basic":
		return m2m.AuthStyleBasic, nil
	case "post", "client_secret_post":
		return m2m.AuthStyleInBody, nil
	}
	return 0, usagef("--auth-method must be basic or post, got %q", method)
}

// clientSecret picks the secret: --client-secret-file, else --client-secret
// (with a warning), else $M2M_CLIENT_SECRET. A flag beats the variable;
// both flags at once is a mistake.
func clientSecret(given map[string]bool, file, flagValue string, stderr io.Writer) (string, error) {
	switch {
	case given["client-secret-file"] && given["client-secret"]:
		return "", usagef("give --client-secret-file or --client-secret, not both")
	case given["client-secret-file"]:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading --client-secret-file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("--client-secret-file %s is empty", file)
		}
		return s, nil
	case given["client-secret"]:
		fmt.Fprintln(stderr, "m2m token: warning: --client-secret is visible in the process list; prefer --client-secret-file or $M2M_CLIENT_SECRET")
		return flagValue, nil
	case os.Getenv("M2M_CLIENT_SECRET") != "":
		return os.Getenv("M2M_CLIENT_SECRET"), nil
	}
	return "", usagef("no client secret: give --client-secret-file, or set $M2M_CLIENT_SECRET")
}
