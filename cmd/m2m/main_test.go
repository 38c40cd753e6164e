package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/m2mauth/m2m/internal/devserver"
	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testmain.Run(m) }

// runCmd runs the CLI and returns stdout, stderr and the exit code.
func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

const secret = "task:secret%+ ü"

func startAuth(t *testing.T, clients ...devserver.Client) *devserver.Server {
	t.Helper()
	s, err := devserver.New(devserver.Options{APIKey: "test-key", Clients: clients})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), ""))
	t.Cleanup(func() { s.Close() })
	return s
}

var taskClient = devserver.Client{ClientID: "task", ClientSecret: secret, Scope: "event.view event.create file.view", Audience: []string{"event", "file"}}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(p, []byte(content+"\n"), 0o600))
	return p
}

// oneLine asserts that s is exactly one line.
func assertOneLine(t *testing.T, s, name string) {
	t.Helper()
	assert.Equal(t, 1, strings.Count(s, "\n"), "%s: one line, got %q", name, s)
	assert.True(t, strings.HasSuffix(s, "\n"), name)
}

func TestDemo(t *testing.T) {
	t.Parallel()
	// Tokens live 6 s, so that steps 1 to 6 run on the first token even on
	// a busy machine (it is refreshed from about 4.5 s on).
	out, errOut, code := runCmd(t, "demo", "--token-lifetime", "6s", "--refresh-run", "6s")
	require.Equal(t, 0, code, out+errOut)
	assert.Contains(t, out, "All 8 steps behaved as expected")
	assert.Contains(t, out, `WWW-Authenticate: Bearer error="insufficient_scope", scope="file.create"`)
	assert.Contains(t, out, "token from memory")
	_, errOut, code = runCmd(t, "demo", "--token-lifetime", "1ms")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "at least 2s")
}

// Every command's --help goes to stdout, exits 0, writes flags as the
// README does (--flag) and names the environment variable behind a flag.
func TestHelp(t *testing.T) {
	t.Parallel()
	singleDashFlag := regexp.MustCompile(`(?m)^\s+-[a-z]`)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"m2m demo", "m2m COMMAND --help"}},
		{[]string{"help"}, []string{"m2m token"}},
		{[]string{"demo", "--help"}, []string{"Usage: m2m demo", "--token-lifetime DURATION"}},
		{[]string{"devserver", "-h"}, []string{"Usage: m2m devserver", "NOT FOR PRODUCTION", "--api-key KEY", "env M2M_API_KEY", "/calendar/events", "SIGTERM"}},
		{[]string{"token", "--help"}, []string{"Usage: m2m token", "--token-url URL", "env M2M_TOKEN_URL", "env M2M_CLIENT_ID", "$M2M_CLIENT_SECRET", "--timeout DURATION", "(required; env M2M_CLIENT_ID)"}},
		{[]string{"decode", "--help"}, []string{"Usage: m2m decode TOKEN", "Bearer <token>"}},
		{[]string{"verify", "--help"}, []string{"Usage: m2m verify", "--jwks-url URL", "--timeout DURATION", "Bearer <token>"}},
		{[]string{"clients", "--help"}, []string{"clients create|list|delete"}},
		{[]string{"clients", "create", "--help"}, []string{"Usage: m2m clients create", "--api-key KEY", "env M2M_API_KEY", "--output text|env", "--insecure-http", "--timeout DURATION"}},
		{[]string{"clients", "list", "--help"}, []string{"Usage: m2m clients list", "--core-url URL"}},
		{[]string{"clients", "delete", "--help"}, []string{"Usage: m2m clients delete", "--client-id ID"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runCmd(t, tc.args...)
			assert.Equal(t, 0, code)
			assert.Empty(t, errOut, "help goes to stdout")
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			assert.NotRegexp(t, singleDashFlag, out, "flags are written --flag")
		})
	}
}

// A mistake on the command line is one line on stderr that says what is
// wrong and where the help is, and exits 2.
func TestCommandLineMistakes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown command", []string{"frobnicate"}, `m2m: unknown command "frobnicate"; see m2m --help`},
		{"unknown flag", []string{"token", "--bogus"}, "m2m token: flag provided but not defined: --bogus; see m2m token --help"},
		{"unknown flag written with one dash", []string{"verify", "-bogus"}, "m2m verify: flag provided but not defined: --bogus; see m2m verify --help"},
		{"bad duration", []string{"token", "--timeout", "soon"}, `m2m token: invalid value "soon" for flag --timeout`},
		{"missing flag value at the end", []string{"token", "--token-url"}, "flag needs an argument: --token-url"},
		{"empty value swallows the next flag", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "--audience", "event"}, `--client-id took "--audience" as its value: was its value left out?`},
		{"empty value swallows the next flag with =", []string{"verify", "--jwks-url", "--audience=event", "t.o.k"}, `--jwks-url took "--audience=event" as its value`},
		{"empty value", []string{"token", "--token-url", "", "--client-id", "x"}, "--token-url was given an empty value"},
		{"empty value with =", []string{"clients", "list", "--core-url="}, "--core-url was given an empty value"},
		{"empty list value", []string{"token", "--scope", " , "}, `invalid value " , " for flag --scope: empty value`},
		{"required flag", []string{"token", "--client-id", "x"}, "--token-url (or $M2M_TOKEN_URL) or --issuer (or $M2M_ISSUER) is required"},
		{"extra argument to token", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x", "--client-secret-file", "f", "stray"}, `unexpected argument "stray"`},
		{"extra argument to devserver", []string{"devserver", "--addr", "127.0.0.1:0", "stray"}, `m2m devserver: unexpected argument "stray"`},
		{"extra argument to demo", []string{"demo", "stray"}, `unexpected argument "stray"`},
		{"extra argument to clients list", []string{"clients", "list", "--core-url", "http://127.0.0.1:1", "--api-key", "k", "stray"}, `m2m clients list: unexpected argument "stray"`},
		{"two tokens to decode", []string{"decode", "a.b.c", "d.e.f"}, "give exactly one token, got 2 arguments"},
		{"unquoted Bearer to verify", []string{"verify", "--jwks-url", "http://127.0.0.1:1/j", "--audience", "event", "Bearer", "a.b.c"}, `quote "Bearer <token>" as one`},
		{"no token", []string{"decode"}, "give the token as the one argument"},
		{"no subcommand", []string{"clients"}, "m2m clients: say create, list or delete; see m2m clients --help"},
		{"unknown subcommand", []string{"clients", "frob"}, `m2m clients: unknown subcommand "frob"`},
		{"flag of another subcommand", []string{"clients", "list", "--name", "x"}, "flag provided but not defined: --name"},
		{"both secret flags", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x", "--client-secret-file", "f", "--client-secret", "s"}, "not both"},
		{"no secret", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x"}, "no client secret"},
		{"bad auth method", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x", "--client-secret", "s", "--auth-method", "jwt"}, `--auth-method must be basic or post, got "jwt"`},
		{"bad encoding", []string{"token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x", "--client-secret", "s", "--encoding", "xml"}, `--encoding must be form or json, got "xml"`},
		{"bad profile", []string{"verify", "--jwks-url", "http://127.0.0.1:1/j", "--audience", "event", "--profile", "x", "a.b.c"}, `--profile must be supertokens, rfc9068 or hydra, got "x"`},
		{"bad timeout", []string{"verify", "--jwks-url", "http://127.0.0.1:1/j", "--audience", "event", "--timeout", "0s", "a.b.c"}, "--timeout must be positive, got 0s"},
		{"bad --client", []string{"devserver", "--client", "bad"}, `--client "bad" is not ID:SECRET:SCOPES:AUDIENCES`},
		{"bad --output", []string{"clients", "create", "--core-url", "http://127.0.0.1:1", "--api-key", "k", "--name", "n", "--output", "yaml"}, `--output must be text or env, got "yaml"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runCmd(t, tc.args...)
			assert.Equal(t, 2, code)
			assert.Contains(t, errOut, tc.msg)
			assert.Contains(t, errOut, "--help")
			assertOneLine(t, errOut, tc.name)
			assert.NotContains(t, errOut, "Usage:", "no whole usage on a mistake")
			assert.Empty(t, out)
		})
	}
}

// With no command at all, m2m lists its commands.
func TestNoCommand(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCmd(t)
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "m2m token")
	assert.True(t, strings.HasSuffix(errOut, "\nm2m: no command given; see m2m --help\n"), errOut)
}

// A flag beats its environment variable; the variable fills a flag that
// was not given.
func TestFlagBeatsEnvironment(t *testing.T) {
	auth := startAuth(t, taskClient)
	right := secretFile(t, secret)
	t.Setenv("M2M_TOKEN_URL", "http://127.0.0.1:1/nowhere")
	t.Setenv("M2M_CLIENT_ID", "nobody")
	t.Setenv("M2M_CLIENT_SECRET", "wrong")

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"flags beat every variable", []string{"--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret-file", right}, 0, ""},
		{"--client-secret beats $M2M_CLIENT_SECRET", []string{"--token-url", auth.TokenURL(), "--client-id", "task", "--client-secret", secret}, 0, "visible in the process list"},
		{"variables fill what is not given", []string{"--client-secret-file", right}, 1, "connection refused"},
		{"the variable's wrong secret is used when no flag gives one", []string{"--token-url", auth.TokenURL(), "--client-id", "task"}, 1, "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, append([]string{"token"}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
			if tc.code == 0 {
				assert.Equal(t, 2, strings.Count(out, "."), "a JWT")
			}
			assert.NotContains(t, errOut, secret)
		})
	}

	t.Setenv("M2M_API_KEY", "wrong-key")
	_, errOut, code := runCmd(t, "clients", "list", "--core-url", auth.URL(), "--api-key", "test-key")
	assert.Equal(t, 0, code, errOut)
	_, errOut, code = runCmd(t, "clients", "list", "--core-url", auth.URL())
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "answered 401")
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		code int
		line string
	}{
		{"nil", nil, 0, ""},
		{"help", &commandError{cmd: "token", err: errHelp}, 0, ""},
		{"usage", usagef("bad"), 2, "m2m: bad; see m2m --help\n"},
		{"failure", errors.New("boom"), 1, "m2m: boom\n"},
		{"one prefix", &commandError{cmd: "verify", err: errors.New("m2m/verify: invalid token: wrong audience")}, 1, "m2m verify: invalid token: wrong audience\n"},
		{"SDK prefix", &commandError{cmd: "token", err: errors.New("m2m: token request failed")}, 1, "m2m token: token request failed\n"},
		{"line breaks folded", errors.New("a\nb\r\n c"), 1, "m2m: a b c\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			assert.Equal(t, tc.code, exitCode(tc.err, &buf))
			assert.Equal(t, tc.line, buf.String())
		})
	}
}
