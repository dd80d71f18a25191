package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamrec/streamrec/learner"
)

// runModel is `streamrec model list|rollback VERSION --redis ADDR`.
func runModel(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("model", env)
	redisAddr := fs.String("redis", "", "Redis address holding the snapshots (required)")
	redisTLS := registerRedisTLS(fs)
	asJSON := fs.Bool("json", false, "list: print JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: streamrec model list [--json] --redis ADDR\n       streamrec model rollback VERSION --redis ADDR")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args, env)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want a subcommand: list or rollback VERSION")
	}
	if strings.TrimSpace(*redisAddr) == "" {
		return usagef("--redis is required")
	}
	if err := redisTLS.validate(); err != nil {
		return err
	}
	client, err := openRedisClient(*redisAddr, *redisTLS)
	if err != nil {
		return usagef("%v", err)
	}
	defer client.Close()
	log, err := newLogger(env, "warn")
	if err != nil {
		return err
	}
	snaps := learner.NewRedisSnapshots(client, learner.DefaultConfig().SnapshotKeep, log)
	switch pos[0] {
	case "list":
		if len(pos) != 1 {
			return usagef("list takes no arguments, got %q", pos[1:])
		}
		infos, err := snaps.List(ctx)
		if err != nil {
			return err
		}
		current, _, err := snaps.Current(ctx)
		if err != nil && !errors.Is(err, learner.ErrNoSnapshot) {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(env.Stdout)
			return enc.Encode(map[string]any{"current": current, "snapshots": nonNil(infos)})
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tVERSION\tCREATED\tEVENTS\tRMSE\tHR@10\tBYTES\tCONFIG")
		for _, in := range infos {
			mark := ""
			if in.Version == current {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%d\t%s\n", mark, in.Version, in.Created.Format(time.RFC3339),
				in.EventsTrained, metric(in.Metrics, "rmse"), metric(in.Metrics, "hr@10"), in.Size, in.ConfigHash)
		}
		return tw.Flush()
	case "rollback":
		if len(pos) != 2 {
			return usagef("rollback takes one VERSION")
		}
		v, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil || v <= 0 {
			return usagef("rollback: version %q is not a positive integer", pos[1])
		}
		blob, err := snaps.Get(ctx, v)
		if err != nil {
			return err
		}
		if _, err := learner.DecodeSnapshot(blob); err != nil {
			return fmt.Errorf("rollback to %d refused: %w", v, err)
		}
		if err := snaps.Rollback(ctx, v); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "current snapshot is now version %d\n", v)
		return nil
	}
	return usagef("unknown model subcommand %q (want list or rollback)", pos[0])
}

func nonNil(in []learner.SnapshotInfo) []learner.SnapshotInfo {
	if in == nil {
		return []learner.SnapshotInfo{}
	}
	return in
}

func metric(m map[string]float64, k string) string {
	if v, ok := m[k]; ok {
		return strconv.FormatFloat(v, 'f', 4, 64)
	}
	return "-"
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments, and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string, env Env) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args, env); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
