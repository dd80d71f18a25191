package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Env is what a subcommand may touch of the outside world, so tests can run
// Main in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Ready, when set, is called by long-running commands with their bound
	// addresses once they serve (tests start Main on :0 ports).
	Ready func(addrs map[string]string)
}

// StdEnv is the process environment.
func StdEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// usageError makes Main exit with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

type command struct {
	summary string
	run     func(ctx context.Context, args []string, env Env) error
}

func commands() map[string]command {
	return map[string]command{
		"run":     {"embedded default: broker, store, learner, server and demo data in one process", runRun},
		"broker":  {"standalone embedded Kafka-protocol broker for development", runBroker},
		"ingest":  {"consume events from Kafka into the feature store, exactly once", runIngest},
		"learn":   {"incremental learner: train online and publish snapshots", runLearn},
		"serve":   {"HTTP API: recommendations, ranking, events", runServe},
		"produce": {"publish a data set to Kafka in time order", runProduce},
		"inspect": {"read the feature store: user ID, item ID, users, stats", runInspect},
		"model":   {"model snapshots: list, rollback VERSION", runModel},
		"replay":  {"backtest models over a time-ordered log", runReplay},
		"tune":    {"hyperparameter search with successive halving", runTune},
	}
}

// Main runs one subcommand and returns the exit status: 0 on success, 2 on
// bad usage, 1 on failure (with a one-line error on stderr).
func Main(ctx context.Context, args []string, env Env) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "streamrec: unknown command %q (see streamrec --help)\n", args[0])
		return 2
	}
	err := cmd.run(ctx, args[1:], env)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "streamrec %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return 0 // stopped by a signal after a clean shutdown
	default:
		fmt.Fprintf(env.Stderr, "streamrec %s: %s\n", args[0], strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
}

func printUsage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: streamrec COMMAND [flags]  (streamrec COMMAND --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nEvery flag also reads STREAMREC_<NAME> (upper case, dashes as underscores).")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("streamrec "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parseFlags parses args, then fills every flag not given on the command line
// from STREAMREC_<NAME>. Bad flags are usage errors.
func parseFlags(fs *flag.FlagSet, args []string, env Env) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || env.Getenv == nil {
			return
		}
		key := "STREAMREC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(env, key); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usagef("%s=%q: %v", key, v, e)
			}
		}
	})
	return err
}

func lookupEnv(env Env, key string) (string, bool) {
	v := env.Getenv(key)
	return v, v != ""
}

// newLogger logs JSON, or readable console lines when stderr is a terminal.
func newLogger(env Env, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), usagef("log level %q: %v", level, err)
	}
	w := env.Stderr
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
