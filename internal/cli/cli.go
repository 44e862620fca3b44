// Package cli holds what Logbook's commands share: flags with one
// environment-variable prefix, the logger, and a command table (Program)
// that gives every command its own flags, arguments and help; and the
// commands that talk to a running Logbook over HTTP (AdminCommands).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// UsageError is a mistake on the command line (exit status 2).
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// NewFlagSet returns a flag set that reports errors instead of exiting.
func NewFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// Parse parses args; every flag not given on the command line is taken from
// the environment variable prefix + its name upper-cased with '.' as '_'
// (-data.dir <- LOGBOOK_DATA_DIR).
func Parse(fs *flag.FlagSet, args []string, prefix string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err.Error()}
	}
	if err := fromEnv(fs, prefix); err != nil {
		return err
	}
	return applyMemoryLimit(fs)
}

func fromEnv(fs *flag.FlagSet, prefix string) error {
	if prefix == "" {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := prefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f.Name))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = UsageError{fmt.Sprintf("%s=%q: %v", env, v, e)}
			}
		}
	})
	return err
}

// Logger returns a text logger at level.
func Logger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, UsageError{fmt.Sprintf("-log.level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// Command is one command of a Program: its name (one or two words), its
// arguments, its own flags and what it does.
type Command struct {
	Name    string // "key create"
	Args    string // "<username>"
	Summary string // one line for the command list
	Help    string // more, shown by "help <command>" and -h
	// MinArgs and MaxArgs bound the positional arguments (MaxArgs -1: any).
	MinArgs, MaxArgs int
	// Output adds -o (table or json) and -q (just the id or key).
	Output bool
	// EnvPrefix, when set, fills flags not given from the environment
	// (LOGBOOK_DATA_DIR for -data.dir).
	EnvPrefix string
	// Flags registers the command's flags and returns what runs it.
	Flags func(fs *flag.FlagSet) Action
}

// Action runs a command with its positional arguments.
type Action func(ctx context.Context, e *Env, args []string) error

// Env is what an action gets: where to write, and the output options.
type Env struct {
	Out, Err io.Writer
	Format   string // "table" or "json"
	Quiet    bool
}

// Program is a command table with help.
type Program struct {
	Name     string
	Intro    string // first lines of the usage
	Footer   string // last lines of the usage (environment variables)
	Default  string // the command run without one, or with flags only ("serve")
	Commands []*Command
}

// Main runs the command args name, with its flags and arguments. "help",
// "-h" and "help <command>" print help to stdout and succeed; an unknown
// command is a UsageError with a hint.
func (p *Program) Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpFlag(args[0]) {
		return p.usage(stdout)
	}
	if len(args) > 0 && args[0] == "help" {
		if len(args) == 1 {
			return p.usage(stdout)
		}
		c, rest := p.find(args[1:])
		if c == nil || len(rest) > 0 {
			return p.unknown(args[1:])
		}
		return p.commandHelp(stdout, c, nil)
	}
	if p.Default != "" && (len(args) == 0 || strings.HasPrefix(args[0], "-")) {
		args = append([]string{p.Default}, args...)
	}
	if len(args) == 0 {
		return UsageError{p.usageText()}
	}
	c, rest := p.find(args)
	if c == nil {
		return p.unknown(args)
	}
	return p.run(ctx, c, rest, stdout, stderr)
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// find returns the command args start with (two words before one) and the
// arguments after its name.
func (p *Program) find(args []string) (*Command, []string) {
	if len(args) >= 2 {
		if c := p.lookup(args[0] + " " + args[1]); c != nil {
			return c, args[2:]
		}
	}
	if len(args) >= 1 {
		if c := p.lookup(args[0]); c != nil {
			return c, args[1:]
		}
	}
	return nil, nil
}

func (p *Program) lookup(name string) *Command {
	for _, c := range p.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// unknown refuses an unknown command, naming the commands that start with
// its first word or look like it.
func (p *Program) unknown(args []string) error {
	word := args[0]
	var group, near []string
	for _, c := range p.Commands {
		first, _, _ := strings.Cut(c.Name, " ")
		switch {
		case first == word:
			group = append(group, c.Name)
		case strings.HasPrefix(c.Name, word) || strings.HasPrefix(word, first) || editDistance(word, first) <= 2:
			near = append(near, c.Name)
		}
	}
	name := strings.Join(args[:min(len(args), 2)], " ")
	if len(group) > 0 {
		if len(args) == 1 {
			return UsageError{fmt.Sprintf("%q needs a subcommand: %s (see '%s help %s')", word, strings.Join(group, ", "), p.Name, group[0])}
		}
		name = word + " " + args[1]
		near = group
	}
	msg := fmt.Sprintf("unknown command %q.", name)
	if len(near) > 0 {
		msg = fmt.Sprintf("unknown command %q; did you mean %s?", name, strings.Join(near, ", "))
	}
	return UsageError{msg + fmt.Sprintf(" Run '%s help' for the list of commands.", p.Name)}
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// run parses the command's own flags (which may follow its arguments) and
// runs it.
func (p *Program) run(ctx context.Context, c *Command, args []string, stdout, stderr io.Writer) error {
	fs, act, env := p.flagSet(c, stdout, stderr)
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return p.commandHelp(stdout, c, fs)
			}
			return UsageError{fmt.Sprintf("%s %s: %v (see '%s help %s')", p.Name, c.Name, err, p.Name, c.Name)}
		}
		if fs.NArg() == 0 {
			break
		}
		if fs.Arg(0) == "--" {
			pos = append(pos, fs.Args()[1:]...)
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if err := fromEnv(fs, c.EnvPrefix); err != nil {
		return err
	}
	if len(pos) < c.MinArgs || (c.MaxArgs >= 0 && len(pos) > c.MaxArgs) {
		return UsageError{fmt.Sprintf("usage: %s %s %s (see '%s help %s')", p.Name, c.Name, c.Args, p.Name, c.Name)}
	}
	if env.Format != "table" && env.Format != "json" {
		return UsageError{fmt.Sprintf("-o %q: use table or json", env.Format)}
	}
	return act(ctx, env, pos)
}

func (p *Program) flagSet(c *Command, stdout, stderr io.Writer) (*flag.FlagSet, Action, *Env) {
	fs := NewFlagSet(p.Name+" "+c.Name, io.Discard)
	env := &Env{Out: stdout, Err: stderr, Format: "table"}
	if c.Output {
		fs.StringVar(&env.Format, "o", "table", "output: table (for people) or json (for scripts)")
		fs.BoolVar(&env.Quiet, "q", false, "print only the id or key of each result, one a line")
	}
	var act Action
	if c.Flags != nil {
		act = c.Flags(fs)
	}
	return fs, act, env
}

// usageText lists every command.
func (p *Program) usageText() string {
	var b strings.Builder
	b.WriteString(p.Intro)
	b.WriteString("\n\nCommands:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range p.Commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.Name, c.Args, c.Summary)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nRun '%s help <command>' (or '%s <command> -h') for a command's arguments and flags.\n", p.Name, p.Name)
	if p.Footer != "" {
		b.WriteString(p.Footer)
		b.WriteString("\n")
	}
	return b.String()
}

func (p *Program) usage(w io.Writer) error {
	_, err := io.WriteString(w, p.usageText())
	return err
}

// commandHelp prints a command's usage, description and flags (only its
// own).
func (p *Program) commandHelp(w io.Writer, c *Command, fs *flag.FlagSet) error {
	if fs == nil {
		fs, _, _ = p.flagSet(c, w, w)
	}
	fmt.Fprintf(w, "usage: %s %s %s\n\n%s\n", p.Name, c.Name, strings.TrimSpace(c.Args+" [flags]"), c.Summary)
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.Help, "\n"))
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
		fmt.Fprintln(w, "\nFlags:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range flags {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			env := ""
			if c.EnvPrefix != "" {
				env = " [" + c.EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f.Name)) + "]"
			}
			fmt.Fprintf(tw, "  -%s\t%s%s%s\n", f.Name, f.Usage, def, env)
		}
		tw.Flush()
	}
	if p.Footer != "" && c.EnvPrefix == "" && c.Output {
		fmt.Fprintf(w, "\n%s\n", p.Footer)
	}
	return nil
}
