package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/m2mauth/m2m/internal/wire"
	"github.com/m2mauth/m2m/verify"
)

// rawToken takes the token argument of decode and verify. What was copied
// from a request is understood: "Bearer <token>" and "Authorization:
// Bearer <token>" (any case) give the token.
func rawToken(args []string) (string, error) {
	if len(args) != 1 {
		if len(args) == 0 {
			return "", usagef("give the token as the one argument")
		}
		return "", usagef("give exactly one token, got %d arguments (quote \"Bearer <token>\" as one)", len(args))
	}
	s := strings.TrimSpace(args[0])
	if name, rest, ok := strings.Cut(s, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Authorization") {
		s = strings.TrimSpace(rest)
	}
	if scheme, rest, ok := strings.Cut(s, " "); ok && strings.EqualFold(scheme, "Bearer") {
		s = strings.TrimSpace(rest)
	}
	if s == "" {
		return "", usagef("the token is empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("not a JWT: it holds white space; give only the token, or \"Bearer <token>\"")
	}
	return s, nil
}

// segments splits a compact JWT and decodes its header and claims,
// without verifying anything.
func segments(raw string) (header, claims []byte, err error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("not a JWT: want three dot-separated parts, got %d", len(parts))
	}
	for i, name := range []string{"header", "claims"} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return nil, nil, fmt.Errorf("not a JWT: the %s is not base64url", name)
		}
		if !json.Valid(b) {
			return nil, nil, fmt.Errorf("not a JWT: the %s is not JSON", name)
		}
		if i == 0 {
			header = b
		} else {
			claims = b
		}
	}
	return header, claims, nil
}

func runDecode(_ context.Context, args []string, stdout, _ io.Writer) error {
	c := newCommand("decode", "decode TOKEN",
		"Prints a JWT's header and claims WITHOUT verifying it. TOKEN may also be\n"+
			"\"Bearer <token>\", as copied from a request.")
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	raw, err := rawToken(c.args)
	if err != nil {
		return err
	}
	header, claims, err := segments(raw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "NOT VERIFIED: decoded only; anyone can forge these values. Use \"m2m verify\" to check the signature.")
	for _, p := range []struct {
		name string
		b    []byte
	}{{"header", header}, {"claims", claims}} {
		var out bytes.Buffer
		if err := json.Indent(&out, p.b, "", "  "); err != nil {
			return fmt.Errorf("not a JWT: the %s is not JSON", p.name)
		}
		fmt.Fprintf(stdout, "%s:\n%s\n", p.name, out.String())
	}
	if exp, ok := wire.JWTExpiry(raw); ok {
		fmt.Fprintf(stdout, "exp: %s (%s)\n", exp.UTC().Format(time.RFC3339), untilText(exp))
	}
	return nil
}

// untilText says how far t is from now, as "expires in 59m59s" or
// "expired 3s ago".
func untilText(t time.Time) string {
	left := time.Until(t).Round(time.Second)
	if left <= 0 {
		return "expired " + (-left).String() + " ago"
	}
	return "expires in " + left.String()
}

func runVerify(ctx context.Context, args []string, stdout, _ io.Writer) error {
	c := newCommand("verify", "verify --jwks-url URL --audience A [--scope S]... [--issuer ISS] [flags] TOKEN",
		"Verifies a JWT access token: signature against the JWKS, audience, expiry,\n"+
			"token type and, when given, issuer and scopes. Exits 0 when it is valid,\n"+
			"1 with the reason when not. TOKEN may also be \"Bearer <token>\".")
	jwksURL := c.String("jwks-url", "URL", "", "", "JWKS URL, e.g. http://127.0.0.1:3567/auth/jwt/jwks.json")
	audience := c.String("audience", "NAME", "", "", "audience the token must carry")
	issuer := c.String("issuer", "ISS", "", "", "issuer the token must carry, exactly, e.g. http://127.0.0.1:3567/auth")
	var scopes listFlag
	c.Var(&scopes, "scope", "SCOPE", "scope the token must carry; repeatable")
	profile := c.String("profile", "supertokens|rfc9068|hydra", "", "supertokens", "supertokens (stt must be 1), rfc9068 (typ at+jwt, e.g. node-oidc-provider) or hydra (Ory Hydra's typ JWT tokens)")
	insecure := c.Bool("insecure-http", "allow a plain http JWKS URL on a host that is not loopback")
	timeout := c.Duration("timeout", defaultTimeout, "give up fetching the JWKS after this long")
	c.require("jwks-url", "audience")
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	raw, err := rawToken(c.args)
	if err != nil {
		return err
	}
	cfg := verify.Config{JWKSURL: *jwksURL, Audience: *audience, Issuer: *issuer, AllowInsecureHTTP: *insecure}
	switch *profile {
	case "supertokens":
	case "rfc9068":
		cfg.Profile = verify.ProfileRFC9068
	case "hydra":
		cfg.Profile = verify.ProfileHydra
	default:
		return usagef("--profile must be supertokens, rfc9068 or hydra, got %q", *profile)
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive, got %s", *timeout)
	}
	cfg.HTTPClient = wire.NewHTTPClient(*timeout)
	defer cfg.HTTPClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	v, err := verify.New(ctx, cfg)
	if err != nil {
		if timedOut(ctx, err) {
			return fmt.Errorf("the JWKS at --jwks-url did not answer within --timeout %s", *timeout)
		}
		return explainConfig(err, verifyFlags)
	}
	defer v.Close()
	claims, err := v.Verify(ctx, raw)
	if err != nil {
		return explainRejection(err, raw, cfg)
	}
	for _, s := range scopes {
		if !claims.HasScope(s) {
			return fmt.Errorf("%w: the token lacks scope %q: --scope wants %q, the token has %q", verify.ErrInsufficientScope, s, []string(scopes), claims.Scopes)
		}
	}
	fmt.Fprintf(stdout, "valid: client_id=%s sub=%s aud=%s scopes=%s expires=%s (%s)\n",
		claims.ClientID, claims.Subject, strings.Join(claims.Audience, ","), strings.Join(claims.Scopes, ","),
		claims.ExpiresAt.UTC().Format(time.RFC3339), untilText(claims.ExpiresAt))
	return nil
}
