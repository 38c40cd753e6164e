// Command m2m is the operator's tool for machine-to-machine OAuth2:
// register clients, fetch and inspect tokens, verify them, run a
// development authorization server, and run the Task/Calendar/File demo.
//
// Usage:
//
//	m2m demo
//	m2m devserver [--addr 127.0.0.1:3567]
//	m2m token --token-url URL --client-id ID --audience event --scope event.create
//	m2m decode TOKEN
//	m2m verify --jwks-url URL --audience event --scope event.create TOKEN
//	m2m clients create|list|delete (--core-url URL | --hydra-admin-url URL) ...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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

// usageError is a mistake in the command line; it exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitCode prints err as one line and returns the process exit code.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "m2m: %s\n", strings.TrimPrefix(err.Error(), "m2m: "))
		return 2
	}
	fmt.Fprintf(stderr, "m2m: %s\n", strings.TrimPrefix(err.Error(), "m2m: "))
	return 1
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
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", args[0])
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// newFlags returns a FlagSet that reports to stderr and does not exit.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: m2m %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and turns flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// listFlag is a repeatable flag; each value may also hold several items
// separated by spaces or commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })...)
	return nil
}

// multiFlag is a repeatable flag whose values are kept whole.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, " ") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// required checks that every named flag was given.
func required(fs *flag.FlagSet, names ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range names {
		if !set[n] {
			return usagef("%s: --%s is required", fs.Name(), n)
		}
	}
	return nil
}
