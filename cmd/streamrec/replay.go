package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/learner/replay"
)

// replayData holds the data-spec flags shared by replay and tune (product.md §6).
type replayData struct {
	spec, columns, sep, typeDefault, from, to string
	header                                    bool
	minValue, maxValue                        float64
	types                                     streamrec.EventTypes
	// kafka secures a kafka: spec's connections (and produce's writer).
	kafka *kafkaFlags
}

func (d *replayData) register(fs *flag.FlagSet) {
	d.types = streamrec.DefaultEventTypes()
	fs.StringVar(&d.spec, "data", "", "data spec: movielens:DIR, yoochoose:FILE, jsonl:FILE, csv:FILE, synthetic:…, kafka:BROKERS/TOPIC")
	fs.StringVar(&d.columns, "columns", "", "CSV column mapping, e.g. user,item,type,value,ts,category,- ('-' skips a column)")
	fs.BoolVar(&d.header, "header", false, "the CSV's first line is a header")
	fs.StringVar(&d.sep, "sep", "", `CSV separator (default ","; "tab" or "\t" for tabs)`)
	fs.StringVar(&d.typeDefault, "type-default", "", "event type when the data has no type column")
	fs.Var(eventTypesFlag{d.types}, "event-type", "extra event type NAME=implicit:WEIGHT or NAME=explicit (repeatable; built in: "+streamrec.DefaultEventTypes().String()+")")
	fs.StringVar(&d.from, "from", "", "keep events at or after this time (RFC 3339 or Unix seconds)")
	fs.StringVar(&d.to, "to", "", "keep events before this time (RFC 3339 or Unix seconds)")
	fs.Float64Var(&d.minValue, "min-value", streamrec.DefaultMinValue, "lowest explicit value (predictions are clipped to the range)")
	fs.Float64Var(&d.maxValue, "max-value", streamrec.DefaultMaxValue, "highest explicit value")
	d.kafka = registerKafkaFlags(fs)
}

// eventTypesFlag is the repeatable --event-type flag.
type eventTypesFlag struct{ t streamrec.EventTypes }

// String is empty: the built-in types are listed in the usage text.
func (f eventTypesFlag) String() string     { return "" }
func (f eventTypesFlag) Set(s string) error { return f.t.Set(s) }

// parseTimeFlag reads RFC 3339 or Unix seconds; "" is the zero time.
func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if ms, err := streamrec.TimestampMillis(f); err == nil {
			return time.UnixMilli(ms).UTC(), nil
		}
	}
	return time.Time{}, usagef("--%s %q: want RFC 3339 or Unix seconds", name, s)
}

func (d *replayData) load(ctx context.Context) (*dataset.Data, error) {
	if d.spec == "" {
		return nil, usagef("--data is required")
	}
	from, err := parseTimeFlag("from", d.from)
	if err != nil {
		return nil, err
	}
	to, err := parseTimeFlag("to", d.to)
	if err != nil {
		return nil, err
	}
	opts := dataset.Options{Columns: d.columns, Header: d.header, Sep: d.sep, TypeDefault: d.typeDefault,
		Types: d.types, From: from, To: to, MinValue: d.minValue, MaxValue: d.maxValue}
	if d.kafka != nil && d.kafka.set() {
		if err := d.kafka.validate(); err != nil {
			return nil, err
		}
		if opts.KafkaDialer, err = d.kafka.cfg.Dialer(10 * time.Second); err != nil {
			return nil, usagef("%v", err)
		}
	}
	data, err := dataset.Load(ctx, d.spec, opts)
	if err != nil {
		if errors.Is(err, dataset.ErrSpec) {
			return nil, &usageError{err.Error()}
		}
		return nil, err
	}
	if len(data.Events) == 0 {
		return nil, fmt.Errorf("%s: no events (%d lines rejected)", d.spec, data.Rejected)
	}
	return data, nil
}

// loadLearnerConfig reads --config over the defaults.
func loadLearnerConfig(path string) (learner.Config, error) {
	if path == "" {
		return learner.DefaultConfig(), nil
	}
	cfg, err := learner.LoadConfig(path)
	if err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// replayFactory builds production models and in-memory feature stores. The
// store's wall clock is fixed so TTLs cannot make a replay nondeterministic.
func replayFactory(cfg learner.Config) replay.Factory {
	return replay.Factory{
		Model: func(name string) (learner.Model, error) { return learner.New(name, cfg) },
		Store: func() (replay.Store, error) {
			fc := features.DefaultConfig()
			fc.RecentCap = cfg.RecentCap
			fc.HalfLife = cfg.Pop.HalfLife.Std()
			start := time.Unix(0, 0)
			fc.Now = func() time.Time { return start }
			return features.NewMemory(fc)
		},
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// newProgress returns a progress callback drawing a bar on stderr when it is
// a terminal, and a func to finish it.
func newProgress(env Env, total int64, what string) (func(int), func()) {
	if !isTerminal(env.Stderr) || total <= 0 {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(env.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return func(n int) { _ = bar.Add(n) }, func() { _ = bar.Finish() }
}

// replayWork estimates the events a replay processes, for the progress bar.
func replayWork(cfg *replay.Config, n int) int64 {
	m := int64(len(cfg.Models))
	switch cfg.Protocol {
	case replay.KFold:
		train := int64(n) - int64(n)/int64(cfg.Folds)
		return m * int64(cfg.Folds) * (train*int64(cfg.Epochs) + int64(n)/int64(cfg.Folds))
	case replay.TimeSplit:
		sp := int64(float64(n) * 0.6)
		return m * (sp*int64(cfg.Epochs) + int64(n) - sp)
	}
	return m * int64(n)
}

func runReplay(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("replay", env)
	var data replayData
	data.register(fs)
	protocol := fs.String("protocol", replay.Prequential, "prequential, timesplit or kfold")
	models := fs.String("models", "mean,bias,pop,itemknn,mf,ranker,twostage", "comma-separated models: "+strings.Join(learner.Names(), ", "))
	k := fs.Int("k", 10, "list length of the ranking metrics")
	asJSON := fs.Bool("json", false, "print one JSON object on stdout")
	reportDir := fs.String("report", "", "write report.md, report.json and SVG plots to this folder")
	seed := fs.Int64("seed", 42, "seed of the k-fold split and of the models")
	configFile := fs.String("config", "", "learner configuration file (JSON, as streamrec tune writes it)")
	evalEvery := fs.Int("eval-every", 1, "prequential: rank every Nth eligible positive (1 = all, 0 = none)")
	epochs := fs.Int("epochs", 1, "timesplit/kfold: passes over the training events before evaluating")
	folds := fs.Int("folds", 5, "kfold: number of folds")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "models (and folds) replayed at once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the replay to this file")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	names, err := learner.ParseModels(*models)
	if err != nil {
		return usagef("--models: %v", err)
	}
	lcfg, err := loadLearnerConfig(*configFile)
	if err != nil {
		return err
	}
	lcfg.Seed = *seed
	cfg := replay.DefaultConfig()
	cfg.Protocol, cfg.Models, cfg.K, cfg.Seed = *protocol, names, *k, *seed
	cfg.EvalEvery, cfg.Epochs, cfg.Folds, cfg.Parallel = *evalEvery, *epochs, *folds, *parallel
	cfg.MinValue, cfg.MaxValue = data.minValue, data.maxValue
	cfg.Positive = lcfg.PositiveMin
	cfg.MaxRecentFor = recentFor(lcfg)
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	d, err := data.load(ctx)
	if err != nil {
		return err
	}
	progress, done := newProgress(env, replayWork(&cfg, len(d.Events)), "replay "+cfg.Protocol)
	cfg.Progress = progress
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	rep, err := replay.Run(ctx, d.Name, d.Events, d.Items, cfg, replayFactory(lcfg))
	stop()
	done()
	if err != nil {
		return err
	}
	if *reportDir != "" {
		if err := replay.WriteReport(*reportDir, rep); err != nil {
			return err
		}
	}
	if *asJSON {
		b, err := rep.MarshalJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		return err
	}
	if d.Rejected > 0 {
		fmt.Fprintf(env.Stdout, "%d lines rejected while loading (first: %v)\n", d.Rejected, d.Errors[0])
	}
	return rep.WriteTable(env.Stdout)
}

// startCPUProfile starts a CPU profile to path ("" = none) and returns its stop.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// recentFor is how many of a user's recent items each model reads, as the
// learner's Trainer copies them into its feature reads.
func recentFor(c learner.Config) map[string]int {
	return map[string]int{
		"mean": 0, "bias": 0, "pop": 0, "mf": 0,
		"itemknn":          c.KNN.Window,
		learner.RankerName: c.Ranker.HistoryLen,
		"twostage":         max(c.KNN.Window, c.TwoStage.Recent, c.Ranker.HistoryLen),
	}
}
