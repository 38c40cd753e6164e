package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
)

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", "token --token-url URL --client-id ID [--client-secret-file FILE] [--audience A] [--scope S]... [--json]\n\n"+
		"Prints an access token, e.g. for curl -H \"Authorization: Bearer $(m2m token ...)\".\n"+
		"The secret comes from --client-secret-file, else $M2M_CLIENT_SECRET.", stderr)
	tokenURL := fs.String("token-url", "", "token endpoint, e.g. http://127.0.0.1:3567/auth/oauth/token (required)")
	clientID := fs.String("client-id", "", "OAuth2 client id (required)")
	secretFile := fs.String("client-secret-file", "", "file holding the client secret")
	secretFlag := fs.String("client-secret", "", "client secret (visible in the process list: prefer --client-secret-file or $M2M_CLIENT_SECRET)")
	audience := fs.String("audience", "", "audience to ask for, e.g. event")
	var scopes listFlag
	fs.Var(&scopes, "scope", "scope to ask for (repeatable)")
	authMethod := fs.String("auth-method", "basic", "client authentication: basic (client_secret_basic) or post (client_secret_post)")
	encoding := fs.String("encoding", "form", "request body: form or json")
	asJSON := fs.Bool("json", false, "print the whole response with the computed expiry")
	insecure := fs.Bool("insecure-http", false, "allow plain http to a non-loopback token endpoint")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "token-url", "client-id"); err != nil {
		return err
	}
	secret, err := clientSecret(*secretFile, *secretFlag, stderr)
	if err != nil {
		return err
	}
	cfg := m2m.Config{TokenURL: *tokenURL, ClientID: *clientID, ClientSecret: secret, AllowInsecureHTTP: *insecure}
	if cfg.AuthStyle, err = authStyle(*authMethod); err != nil {
		return err
	}
	switch *encoding {
	case "form":
	case "json":
		cfg.Encoding = m2m.EncodingJSON
	default:
		return usagef("token: --encoding must be form or json")
	}
	c, err := m2m.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	src, err := c.Source(m2m.Audience{Name: *audience, Scopes: scopes})
	if err != nil {
		return err
	}
	tok, err := src.TokenContext(ctx)
	if err != nil {
		return err
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

func authStyle(method string) (m2m.AuthStyle, error) {
	switch method {
	case "basic", "client_secret_basic":
		return m2m.AuthStyleBasic, nil
	case "post", "client_secret_post":
		return m2m.AuthStyleInBody, nil
	}
	return 0, usagef("--auth-method must be basic or post")
}

// clientSecret reads the secret from a file, the environment, or (with a
// warning) a flag.
func clientSecret(file, flagValue string, stderr io.Writer) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the client secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case os.Getenv("M2M_CLIENT_SECRET") != "":
		return os.Getenv("M2M_CLIENT_SECRET"), nil
	case flagValue != "":
		fmt.Fprintln(stderr, "m2m: warning: --client-secret is visible in the process list; prefer --client-secret-file or $M2M_CLIENT_SECRET")
		return flagValue, nil
	}
	return "", usagef("no client secret: use --client-secret-file or $M2M_CLIENT_SECRET")
}

func runDecode(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("decode", "decode TOKEN\n\nPrints a JWT's header and claims WITHOUT verifying it.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("decode: give exactly one token")
	}
	parts := strings.Split(strings.TrimSpace(fs.Arg(0)), ".")
	if len(parts) != 3 {
		return fmt.Errorf("decode: not a JWT (want three dot-separated parts, got %d)", len(parts))
	}
	fmt.Fprintln(stdout, "NOT VERIFIED: decoded only; anyone can forge these values. Use \"m2m verify\" to check the signature.")
	for i, name := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return fmt.Errorf("decode: %s is not base64url", name)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			return fmt.Errorf("decode: %s is not JSON", name)
		}
		fmt.Fprintf(stdout, "%s:\n%s\n", name, out.String())
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if json.Unmarshal(raw, &claims) == nil && claims.Exp != nil {
		exp := time.Unix(int64(*claims.Exp), 0).UTC()
		left := time.Until(exp).Round(time.Second)
		state := "expires in " + left.String()
		if left <= 0 {
			state = "expired " + (-left).String() + " ago"
		}
		fmt.Fprintf(stdout, "exp: %s (%s)\n", exp.Format(time.RFC3339), state)
	}
	return nil
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", "verify --jwks-url URL --audience A [--scope S]... [--issuer ISS] [--profile supertokens|rfc9068] TOKEN\n\n"+
		"Verifies a JWT; exits 0 when valid, 1 with the reason when not.", stderr)
	jwksURL := fs.String("jwks-url", "", "JWKS URL, e.g. http://127.0.0.1:3567/auth/jwt/jwks.json (required)")
	audience := fs.String("audience", "", "audience the token must carry (required)")
	issuer := fs.String("issuer", "", "issuer the token must carry (exact match)")
	var scopes listFlag
	fs.Var(&scopes, "scope", "scope the token must carry (repeatable)")
	profile := fs.String("profile", "supertokens", "supertokens (stt must be 1) or rfc9068 (no stt, e.g. Ory Hydra)")
	insecure := fs.Bool("insecure-http", false, "allow a plain http JWKS URL on a non-loopback host")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "jwks-url", "audience"); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("verify: give exactly one token")
	}
	cfg := verify.Config{JWKSURL: *jwksURL, Audience: *audience, Issuer: *issuer, AllowInsecureHTTP: *insecure}
	switch *profile {
	case "supertokens":
	case "rfc9068":
		cfg.Profile = verify.ProfileRFC9068
	default:
		return usagef("verify: --profile must be supertokens or rfc9068")
	}
	v, err := verify.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer v.Close()
	c, err := v.Verify(ctx, strings.TrimSpace(fs.Arg(0)))
	if err != nil {
		return err
	}
	for _, s := range scopes {
		if !c.HasScope(s) {
			return fmt.Errorf("%w: the token lacks scope %q (it has %q)", verify.ErrInsufficientScope, s, c.Scopes)
		}
	}
	fmt.Fprintf(stdout, "valid: client_id=%s sub=%s aud=%s scopes=%s expires=%s\n",
		c.ClientID, c.Subject, strings.Join(c.Audience, ","), strings.Join(c.Scopes, ","), c.ExpiresAt.Format(time.RFC3339))
	return nil
}
