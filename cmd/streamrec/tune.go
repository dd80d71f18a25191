package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/learner/replay"
	"github.com/streamrec/streamrec/learner/tune"
)

func runTune(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("tune", env)
	var data replayData
	data.register(fs)
	protocol := fs.String("protocol", replay.Prequential, "prequential or timesplit: whose validation metric to optimise")
	model := fs.String("model", "mf", "model to tune: "+strings.Join(learner.Names(), ", "))
	trials := fs.Int("trials", 20, "configurations to try (trial 0 is the starting configuration)")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "trials run at once")
	asJSON := fs.Bool("json", false, "print one JSON object on stdout")
	out := fs.String("out", "tuned.json", "write the best configuration here (accepted by learn, run and replay --config)")
	seed := fs.Int64("seed", 42, "seed of the search and of the models")
	configFile := fs.String("config", "", "starting learner configuration (JSON); defaults otherwise")
	k := fs.Int("k", 10, "list length of the ranking metrics")
	eta := fs.Int("eta", 3, "successive halving: keep the best 1/eta of each rung")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if !slices.Contains(learner.Names(), *model) {
		return usagef("--model %q: known models are %s", *model, strings.Join(learner.Names(), ", "))
	}
	if _, err := tune.Space(*model); err != nil {
		return usagef("%v", err)
	}
	base, err := loadLearnerConfig(*configFile)
	if err != nil {
		return err
	}
	base.Seed = *seed
	cfg := tune.DefaultConfig()
	cfg.Protocol, cfg.Model, cfg.Trials, cfg.Parallel, cfg.Seed, cfg.Eta = *protocol, *model, *trials, *parallel, *seed, *eta
	cfg.Replay.K, cfg.Replay.Seed = *k, *seed
	cfg.Replay.MinValue, cfg.Replay.MaxValue = data.minValue, data.maxValue
	cfg.Replay.Positive = base.PositiveMin
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	d, err := data.load(ctx)
	if err != nil {
		return err
	}
	progress, done := newProgress(env, int64(len(d.Events))*int64(cfg.Trials)*2, "tune "+*model)
	cfg.Progress = progress
	f := tune.Factory{
		Model:  learner.New,
		Store:  func(c learner.Config) (replay.Store, error) { return replayFactory(c).Store() },
		Recent: recentFor,
	}
	res, err := tune.Run(ctx, d.Name, d.Events, d.Items, base, cfg, f)
	done()
	if err != nil {
		return err
	}
	best := res.Best.Config
	if err := best.WriteFile(*out); err != nil {
		return err
	}
	if *asJSON {
		b, err := json.Marshal(tuneJSON(d.Name, *out, *k, res))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		return err
	}
	return writeTuneText(env.Stdout, d.Name, *out, *k, res)
}

type tuneTrialJSON struct {
	Trial      int                `json:"trial"`
	Params     map[string]any     `json:"params"`
	Rungs      []tune.Rung        `json:"rungs"`
	Validation map[string]float64 `json:"validation,omitempty"`
	Test       map[string]float64 `json:"test,omitempty"`
	TestOnline map[string]float64 `json:"test_online,omitempty"`
}

func trialJSON(t *tune.Trial, k int) tuneTrialJSON {
	return tuneTrialJSON{Trial: t.ID, Params: t.Params, Rungs: t.Rungs, Validation: tune.FigureMap(t.Validation, k),
		Test: tune.FigureMap(t.Test, k), TestOnline: tune.FigureMap(t.TestOnline, k)}
}

func tuneJSON(dataset, out string, k int, res *tune.Result) any {
	return struct {
		Dataset   string          `json:"dataset"`
		Protocol  string          `json:"protocol"`
		Model     string          `json:"model"`
		Metric    string          `json:"metric"`
		Minimize  bool            `json:"minimize"`
		Trials    int             `json:"trials"`
		Fractions []float64       `json:"rungs"`
		Best      tuneTrialJSON   `json:"best"`
		Base      tuneTrialJSON   `json:"base"`
		Config    learner.Config  `json:"config"`
		File      string          `json:"config_file"`
		All       []tuneTrialJSON `json:"all"`
	}{dataset, res.Protocol, res.Model, res.Metric, res.Minimize, len(res.Trials), res.Fractions,
		trialJSON(res.Best, k), trialJSON(res.Base, k), res.Best.Config, out, allTrials(res, k)}
}

func allTrials(res *tune.Result, k int) []tuneTrialJSON {
	out := make([]tuneTrialJSON, 0, len(res.Trials))
	for _, t := range res.Trials {
		out = append(out, trialJSON(t, k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Trial < out[j].Trial })
	return out
}

func writeTuneText(w io.Writer, dataset, out string, k int, res *tune.Result) error {
	dir := "lower is better"
	if !res.Minimize {
		dir = "higher is better"
	}
	fmt.Fprintf(w, "tuned %s on %s, protocol %s: %d trials, rungs %v, objective validation %s (%s)\n\n",
		res.Model, dataset, res.Protocol, len(res.Trials), res.Fractions, res.Metric, dir)
	line := func(label string, t *tune.Trial) {
		fmt.Fprintf(w, "%-6s trial %-3d validation %v  test %v", label, t.ID, fmtFigures(tune.FigureMap(t.Validation, k)), fmtFigures(tune.FigureMap(t.Test, k)))
		if t.TestOnline != nil {
			fmt.Fprintf(w, "  test online %v", fmtFigures(tune.FigureMap(t.TestOnline, k)))
		}
		fmt.Fprintln(w)
	}
	line("best", res.Best)
	line("start", res.Base)
	names := make([]string, 0, len(res.Best.Params))
	for n := range res.Best.Params {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "\nbest parameters:")
	if len(names) == 0 {
		fmt.Fprintln(w, "  (the starting configuration: no trial beat it on validation)")
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-26s %v\n", n, res.Best.Params[n])
	}
	_, err := fmt.Fprintf(w, "\nwritten to %s (use it with --config)\n", out)
	return err
}

func fmtFigures(m map[string]float64) string {
	if len(m) == 0 {
		return "–"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%.4f", n, m[n]))
	}
	return strings.Join(parts, " ")
}
