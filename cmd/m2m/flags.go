package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// command is one subcommand's flags and help. It wraps a flag.FlagSet so
// that the help is written the way the README writes flags (--flag), goes
// to stdout, names the environment variable behind a flag, and so that a
// mistake on the command line is one line on stderr.
type command struct {
	fs       *flag.FlagSet
	name     string            // "token", "clients create"
	synopsis string            // the line after "Usage: m2m "
	about    string            // what the command does, a paragraph
	env      map[string]string // flag name → environment variable that fills it
	meta     map[string]string // flag name → placeholder of its value in the help
	order    []string          // flag names in the order they were declared
	must     map[string]bool   // flags that need a value
	args     []string          // positional arguments, once parsed
	flagged  map[string]bool   // flags given on the command line, not by their variable
}

func newCommand(name, synopsis, about string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed by parse
	fs.Usage = func() {}
	return &command{fs: fs, name: name, synopsis: synopsis, about: about, env: map[string]string{}, meta: map[string]string{}, must: map[string]bool{}}
}

func (c *command) declare(name, meta, env string) {
	c.order = append(c.order, name)
	c.meta[name] = meta
	if env != "" {
		c.env[name] = env
	}
}

// String declares a string flag; meta is the placeholder shown in the help
// ("URL"), env the environment variable that fills it when the flag is not
// given ("" for none).
func (c *command) String(name, meta, env, value, usage string) *string {
	c.declare(name, meta, env)
	return c.fs.String(name, value, usage)
}

// Bool declares a boolean flag.
func (c *command) Bool(name, usage string) *bool {
	c.declare(name, "", "")
	return c.fs.Bool(name, false, usage)
}

// Duration declares a duration flag.
func (c *command) Duration(name string, value time.Duration, usage string) *time.Duration {
	c.declare(name, "DURATION", "")
	return c.fs.Duration(name, value, usage)
}

// Var declares a flag of any flag.Value.
func (c *command) Var(v flag.Value, name, meta, usage string) {
	c.declare(name, meta, "")
	c.fs.Var(v, name, usage)
}

// errHelp is returned by parse after it printed the help; it exits 0.
var errHelp = flag.ErrHelp

// parse parses args. Flags may come before or after the positional
// arguments ("--" ends the flags). It prints the help to stdout on
// -h/--help and returns errHelp; any mistake is a usageError. A flag not
// given takes its environment variable's value: the flag always wins.
func (c *command) parse(args []string, stdout io.Writer) error {
	if err := c.checkValues(args); err != nil {
		return err
	}
	var positional []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.help(stdout)
				return errHelp
			}
			return usagef("%s", dashes(err.Error()))
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	c.args = positional
	given := c.given()
	c.flagged = given
	for name, env := range c.env {
		if given[name] {
			continue
		}
		if v := os.Getenv(env); v != "" {
			if err := c.fs.Set(name, v); err != nil {
				return usagef("$%s: %v", env, err)
			}
		}
	}
	return c.checkRequired()
}

// checkValues catches what the flag package takes silently: an empty
// value ("--client-id $UNSET_VARIABLE" in a script, or --client-id=), and
// a flag taken as the previous flag's value ("--client-id --audience
// event" gives --client-id the value "--audience").
func (c *command) checkValues(args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := c.fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				continue // the flag package says "flag needs an argument"
			}
			i++
			value = args[i]
			if c.looksLikeFlag(value) {
				if secretFlags[name] {
					return usagef("--%s took the next argument, which looks like a flag, as its value: was its value left out? (write --%s=VALUE for a value that starts with -)", name, name)
				}
				return usagef("--%s took %q as its value: was its value left out? (write --%s=VALUE for a value that starts with -)", name, value, name)
			}
		}
		if value == "" {
			return usagef("--%s was given an empty value", name)
		}
	}
	return nil
}

// secretFlags are the flags whose values are never quoted in a message.
var secretFlags = map[string]bool{"client-secret": true, "api-key": true}

// given reports which flags were on the command line.
func (c *command) given() map[string]bool {
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// looksLikeFlag reports whether v is one of this command's flags, as when
// "--client-id --audience event" gives --client-id the value "--audience".
func (c *command) looksLikeFlag(v string) bool {
	if !strings.HasPrefix(v, "-") {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(v, "-"), "=")
	return c.fs.Lookup(name) != nil || name == "h" || name == "help"
}

// noArgs fails when positional arguments were given.
func (c *command) noArgs() error {
	if len(c.args) > 0 {
		return usagef("unexpected argument %q: this command takes only flags", c.args[0])
	}
	return nil
}

// require marks flags that need a value; the help says so and parse
// checks it.
func (c *command) require(names ...string) {
	for _, n := range names {
		c.must[n] = true
	}
}

// checkRequired fails when a required flag has no value, from the
// command line or its environment variable.
func (c *command) checkRequired() error {
	for _, n := range c.order {
		if !c.must[n] {
			continue
		}
		if c.fs.Lookup(n).Value.String() == "" {
			if env := c.env[n]; env != "" {
				return usagef("--%s (or $%s) is required", n, env)
			}
			return usagef("--%s is required", n)
		}
	}
	return nil
}

// help prints the usage, the description and every flag as the README
// writes them.
func (c *command) help(w io.Writer) {
	fmt.Fprintf(w, "Usage: m2m %s\n\n%s\n", c.synopsis, c.about)
	if len(c.order) == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, name := range c.order {
		f := c.fs.Lookup(name)
		left := "  --" + name
		if c.meta[name] != "" {
			left += " " + c.meta[name]
		}
		usage := f.Usage
		var notes []string
		if c.must[name] {
			notes = append(notes, "required")
		}
		if env := c.env[name]; env != "" {
			notes = append(notes, "env "+env)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			notes = append(notes, "default "+f.DefValue)
		}
		if len(notes) > 0 {
			usage += " (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", left, usage)
	}
	tw.Flush()
}

var singleDash = regexp.MustCompile(`(^|[\s:])-([A-Za-z])`)

// dashes rewrites the flag package's "-name" as "--name", the way the
// README and the help write flags.
func dashes(msg string) string { return singleDash.ReplaceAllString(msg, "$1--$2") }

// listFlag is a repeatable flag; each value may also hold several items
// separated by spaces or commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(v string) error {
	items := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
	if len(items) == 0 {
		return errors.New("empty value")
	}
	*l = append(*l, items...)
	return nil
}

// multiFlag is a repeatable flag whose values are kept whole.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, " ") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}
