// Command m2m is the operator's tool for machine-to-machine OAuth2:
// register clients, fetch and inspect tokens, verify them, run a
// development authorization server, and run the Task/Calendar/File demo.
//
// Usage:
//
//	m2m demo
//	m2m devserver [--addr 127.0.0.1:3567] [--client ID:SECRET:SCOPES:AUDIENCES]...
//	m2m token --token-url URL --client-id ID --audience event --scope event.create
//	m2m decode TOKEN
//	m2m verify --jwks-url URL --audience event --scope event.create TOKEN
//	m2m clients create|list|delete (--core-url URL | --hydra-admin-url URL) ...
//
// Every command has --help, which names the environment variable behind
// each flag that has one: M2M_TOKEN_URL, M2M_CLIENT_ID and
// M2M_CLIENT_SECRET (token), M2M_API_KEY (clients, devserver). A flag
// always beats its variable. Errors are one line on stderr; the exit code
// is 2 for a mistake on the command line and 1 for any other failure.
//
// Install it with
//
//	go install github.com/m2mauth/m2m/cmd/m2m@latest
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

const usage = `m2m: OAuth2 client credentials for services calling services.

Usage:
  m2m demo        run the Task/Calendar/File flow end to end against a dev server
  m2m devserver   run a development authorization server (not for production)
  m2m token       print an access token
  m2m decode      print a JWT's header and claims, NOT verified
  m2m verify      verify a JWT against a JWKS
  m2m clients     create, list or delete OAuth2 clients (SuperTokens core or Ory Hydra)

Run "m2m COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake on the command line; it exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// commandError is an error of one command, printed as "m2m COMMAND: …".
type commandError struct {
	cmd string
	err error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// exitCode prints err as one line and returns the process exit code: 0
// for none (or --help), 2 for a usage error, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	prefix, help := "m2m", "m2m --help"
	var ce *commandError
	if errors.As(err, &ce) {
		prefix, help = "m2m "+ce.cmd, "m2m "+ce.cmd+" --help"
	}
	msg := oneLine(trimPrefixes(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %s; see %s\n", prefix, msg, help)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %s\n", prefix, msg)
	return 1
}

// trimPrefixes drops the package prefixes the SDK's errors start with
// ("m2m: ", "m2m/verify: ", "verify: ", the dev server's "devserver: "), so
// that the line has one.
func trimPrefixes(msg string) string {
	for {
		trimmed := msg
		for _, p := range []string{"m2m: ", "m2m/verify: ", "verify: ", "devserver: "} {
			trimmed = strings.TrimPrefix(trimmed, p)
		}
		if trimmed == msg {
			return msg
		}
		msg = trimmed
	}
}

// oneLine folds line breaks, so an error is always one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\r", "")), " ")
}

// run is the whole program, testable: it never exits and writes only to
// stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"demo":      runDemo,
		"devserver": runDevserver,
		"token":     runToken,
		"decode":    runDecode,
		"verify":    runVerify,
		"clients":   runClients,
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return usagef("unknown command %q", args[0])
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		name := args[0]
		if name == "clients" && len(args) > 1 && slices.Contains(clientVerbs, args[1]) {
			name += " " + args[1]
		}
		return &commandError{cmd: name, err: err}
	}
	return nil
}
