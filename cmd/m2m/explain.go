package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/verify"
)

// The SDK's errors name Config fields; the CLI's name the flags that set
// them. Each table maps a Go name, matched as a whole word, to its flag.
var (
	tokenFlags = flagNames(map[string]string{
		"TokenURL":                             "--token-url",
		"Issuer":                               "--issuer",
		"PrivateKeyFile":                       "--private-key-file",
		"ClientAssertionFile":                  "--client-assertion-file",
		"KeyID":                                "--key-id",
		"Audience.Resource":                    "--resource",
		"DPoPKey":                              "--dpop-key-file",
		"set TokenURL to":                      "give --token-url",
		"ClientID":                             "--client-id",
		"ClientSecret":                         "the client secret",
		"Audience.Name":                        "--audience",
		"allow insecure http":                  "give --insecure-http",
		"set AuthStyle to m2m.AuthStyleInBody": "use --auth-method post",
		"set AuthStyle to m2m.AuthStyleBasic":  "use --auth-method basic",
		"leave Encoding at m2m.EncodingForm":   "use --encoding form",
	})
	verifyFlags = flagNames(map[string]string{
		"JWKSURL":             "--jwks-url",
		"Audience":            "--audience",
		"Issuer":              "--issuer",
		"allow insecure http": "give --insecure-http",
	})
)

// flagNamer rewrites Go names in a message as CLI flags.
type flagNamer struct {
	re   *regexp.Regexp
	repl map[string]string
}

func flagNames(m map[string]string) flagNamer {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Longest first, so "set TokenURL to" wins over "TokenURL".
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = regexp.QuoteMeta(k)
	}
	return flagNamer{re: regexp.MustCompile(`\b(?:` + strings.Join(quoted, "|") + `)\b`), repl: m}
}

func (n flagNamer) rewrite(msg string) string {
	return n.re.ReplaceAllStringFunc(msg, func(s string) string { return n.repl[s] })
}

// translated is an error whose message names flags, still matching the
// SDK's sentinels with errors.Is.
type translated struct {
	msg string
	err error
}

func (t *translated) Error() string { return t.msg }
func (t *translated) Unwrap() error { return t.err }

// timedOut reports whether a command's network call failed because
// --timeout ran out: its context's deadline passed, or the HTTP client's
// own timeout (set to the same duration) fired first.
func timedOut(ctx context.Context, err error) bool {
	var ne net.Error
	return errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// explainConfig names the flags in a configuration error of the SDK.
func explainConfig(err error, names flagNamer) error {
	msg := strings.TrimPrefix(trimPrefixes(err.Error()), "invalid config: ")
	return &translated{msg: names.rewrite(msg), err: err}
}

// explainToken turns a failed token request into a message about the
// command line: a timeout names --timeout, a token endpoint's answer keeps
// its status and OAuth2 error and says which flag to change when that is
// known.
func explainToken(ctx context.Context, err error, timeout time.Duration) error {
	if timedOut(ctx, err) {
		return fmt.Errorf("the token endpoint did not answer within --timeout %s", timeout)
	}
	var te *m2m.TokenError
	if !errors.As(err, &te) {
		return explainConfig(err, tokenFlags)
	}
	msg := trimPrefixes(te.Error())
	if te.Hint != "" {
		msg = strings.TrimSuffix(msg, " ("+te.Hint+")")
	}
	desc := strings.ToLower(te.ErrorDescription)
	hint := tokenFlags.rewrite(te.Hint)
	switch {
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_post'"):
		hint = "the client is registered for client_secret_post: use --auth-method post"
	case te.ErrorCode == "invalid_client" && strings.Contains(desc, "supports client authentication method 'client_secret_basic'"):
		hint = "the client is registered for client_secret_basic: use --auth-method basic"
	case te.ErrorCode == "invalid_client" && hint == "":
		hint = "check --client-id and the client secret"
	}
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return &translated{msg: msg, err: err}
}

// explainRejection adds to a verification failure what was expected and
// what the token holds. The claims are read without trusting them: they
// only say why the token was refused, to the person who pasted it.
func explainRejection(err error, raw string, cfg verify.Config) error {
	msg := trimPrefixes(err.Error())
	header, claims := map[string]any{}, map[string]any{}
	if h, c, serr := segments(raw); serr == nil {
		json.Unmarshal(h, &header)
		json.Unmarshal(c, &claims)
	}
	var detail string
	switch {
	case errors.Is(err, verify.ErrAudience):
		detail = fmt.Sprintf("--audience is %q, the token's aud is %s", cfg.Audience, show(claims["aud"]))
	case errors.Is(err, verify.ErrIssuer):
		detail = fmt.Sprintf("--issuer is %q, the token's iss is %s", cfg.Issuer, show(claims["iss"]))
	case errors.Is(err, verify.ErrExpired):
		if exp, ok := number(claims["exp"]); ok {
			t := time.Unix(int64(exp), 0)
			detail = fmt.Sprintf("exp is %s, %s", t.UTC().Format(time.RFC3339), untilText(t))
		}
	case errors.Is(err, verify.ErrNotYetValid):
		if nbf, ok := number(claims["nbf"]); ok {
			detail = fmt.Sprintf("nbf is %s", time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339))
		}
	case errors.Is(err, verify.ErrTokenType):
		detail = fmt.Sprintf("the token's stt is %s and its typ %s: --profile supertokens wants stt 1, rfc9068 typ at+jwt, hydra typ JWT", show(claims["stt"]), show(header["typ"]))
	case errors.Is(err, verify.ErrAlgorithm):
		detail = fmt.Sprintf("the token's alg is %s", show(header["alg"]))
	case errors.Is(err, verify.ErrUnknownKey):
		detail = fmt.Sprintf("the token's kid %s is not in the JWKS at --jwks-url", show(header["kid"]))
	}
	if detail != "" {
		// The verifier's own "want …, token has …" speaks of Config
		// fields; the CLI's detail names the flags instead.
		if i := strings.Index(msg, ": want "); i >= 0 {
			msg = msg[:i]
		}
		msg += ": " + detail
	}
	return &translated{msg: msg, err: err}
}

// show prints a claim value compactly, or "absent".
func show(v any) string {
	if v == nil {
		return "absent"
	}
	b, err := json.Marshal(v)
	if err != nil || len(b) > 200 {
		return "unreadable"
	}
	return string(b)
}

func number(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}
