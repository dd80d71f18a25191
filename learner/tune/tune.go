// Package tune searches learner hyperparameters by random search with
// successive halving. Every trial is a replay (package replay) of the chosen
// protocol over the production models and feature store; rungs replay
// growing prefixes of the data, and only the best 1/η of the trials of a
// rung go on to the next. The objective is the protocol's validation metric
// (docs/evaluation.md): the prequential RMSE over the validation prefix (the
// first 80% of the events) or the timesplit validation RMSE with frozen
// weights; NDCG@K over the validation prefix for implicit-only data.
package tune

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/learner/replay"
)

// ValFraction is the share of events (prequential) that forms the
// validation prefix; the rest is the test part.
const ValFraction = 0.8

// Config says how to search. Start from DefaultConfig.
type Config struct {
	Protocol string // replay.Prequential or replay.TimeSplit
	Model    string
	Trials   int
	Parallel int // concurrent trials; 0 means GOMAXPROCS
	Seed     int64
	// Eta is the halving rate: each rung keeps the best ⌈n/η⌉ trials.
	Eta int
	// MinFraction is the smallest data prefix a rung replays.
	MinFraction float64
	// Replay is the replay configuration trials run under (K, value range,
	// positives, recent items); Protocol and Models are set per trial.
	Replay replay.Config
	// Progress, when set, is called with events processed.
	Progress func(n int)
}

// DefaultConfig returns a small search: 20 trials, η = 3, rungs no
// smaller than 30% of the data (shorter prefixes favour fast learners).
func DefaultConfig() Config {
	return Config{Protocol: replay.Prequential, Trials: 20, Seed: 42, Eta: 3, MinFraction: 0.3, Replay: replay.DefaultConfig()}
}

// Validate checks c.
func (c *Config) Validate() error {
	var errs []error
	if c.Protocol != replay.Prequential && c.Protocol != replay.TimeSplit {
		errs = append(errs, fmt.Errorf("protocol %q: tune supports prequential and timesplit", c.Protocol))
	}
	if c.Trials < 1 || c.Trials > 10000 {
		errs = append(errs, fmt.Errorf("trials must be in 1..10000, got %d", c.Trials))
	}
	if c.Parallel < 0 {
		errs = append(errs, fmt.Errorf("parallel must be >= 0, got %d", c.Parallel))
	}
	if c.Eta < 2 {
		errs = append(errs, fmt.Errorf("eta must be >= 2, got %d", c.Eta))
	}
	if !(c.MinFraction > 0 && c.MinFraction <= 1) {
		errs = append(errs, fmt.Errorf("min fraction must be in (0,1], got %g", c.MinFraction))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tune config: %w", err)
	}
	return nil
}

// Factory builds models from a trial's configuration and fresh stores.
type Factory struct {
	Model func(name string, cfg learner.Config) (learner.Model, error)
	Store func(cfg learner.Config) (replay.Store, error)
	// Recent, when set, gives the recent items each model reads under a
	// trial's configuration (replay.Config.MaxRecentFor).
	Recent func(cfg learner.Config) map[string]int
}

// Rung is one trial's score on one rung.
type Rung struct {
	Fraction float64 `json:"fraction"`
	Events   int     `json:"events"`
	Score    float64 `json:"score"`
}

// Trial is one sampled configuration and how far it got.
type Trial struct {
	ID int `json:"trial"`
	// Params are the sampled values (trial 0 is the base configuration).
	Params map[string]any `json:"params"`
	Rungs  []Rung         `json:"rungs"`
	// Validation and Test are the full-data figures (finalists only).
	Validation *replay.Figures `json:"-"`
	Test       *replay.Figures `json:"-"`
	// TestOnline is the timesplit test with learning on.
	TestOnline *replay.Figures `json:"-"`
	Config     learner.Config  `json:"-"`
}

// Result is a search's outcome.
type Result struct {
	Model    string
	Protocol string
	// Metric is the objective ("rmse" or "ndcg@K") and Minimize its direction.
	Metric   string
	Minimize bool
	Best     *Trial
	// Base is trial 0, the configuration the search started from.
	Base   *Trial
	Trials []*Trial
	// Fractions are the rungs' data prefixes.
	Fractions []float64
}

// rungs returns the data fractions of the successive-halving rungs for n
// trials: up to 3 rungs ending at 1, each η times the previous, none below
// minFrac.
func rungs(n, eta int, minFrac float64) []float64 {
	r := 1
	for m := eta; m <= n && r < 3; m *= eta {
		r++
	}
	out := make([]float64, 0, r)
	for i := r - 1; i >= 0; i-- {
		f := math.Pow(float64(eta), -float64(i))
		f = math.Max(f, minFrac)
		if len(out) > 0 && f < 1.5*out[len(out)-1] && f < 1 {
			continue // too close to the previous rung to tell anything new
		}
		if len(out) > 0 && f == 1 && out[len(out)-1] > 1/1.5 {
			out = out[:len(out)-1]
		}
		out = append(out, f)
	}
	return out
}

// Run searches cfg.Trials configurations drawn around base (trial 0 is base
// itself) on events and returns the best by the validation metric.
func Run(ctx context.Context, name string, events []streamrec.Event, items []streamrec.ItemMeta, base learner.Config, cfg Config, f Factory) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	space, err := Space(cfg.Model)
	if err != nil {
		return nil, err
	}
	explicit := false
	for i := range events {
		if events[i].Kind == streamrec.Explicit {
			explicit = true
			break
		}
	}
	rankOnly := slices.Contains(cfg.Replay.RankOnly, cfg.Model)
	res := &Result{Model: cfg.Model, Protocol: cfg.Protocol, Metric: "rmse", Minimize: true}
	if !explicit || rankOnly {
		if cfg.Protocol != replay.Prequential {
			return nil, fmt.Errorf("tune: %s scores RMSE only, and %s", cfg.Protocol, whyNoRMSE(explicit, cfg.Model))
		}
		res.Metric, res.Minimize = fmt.Sprintf("ndcg@%d", cfg.Replay.K), false
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7475e))
	trials := []*Trial{{ID: 0, Params: map[string]any{}, Config: clone(base)}}
	for id := 1; id < cfg.Trials; id++ {
		// Odd trials explore near the start (often already tuned), even
		// ones the whole ranges.
		c, params, err := sample(rng, base, space, id%2 == 1)
		if err != nil {
			return nil, err
		}
		trials = append(trials, &Trial{ID: id, Params: params, Config: c})
	}
	res.Trials, res.Base = trials, trials[0]
	res.Fractions = rungs(len(trials), cfg.Eta, cfg.MinFraction)
	alive := trials
	for ri, frac := range res.Fractions {
		final := ri == len(res.Fractions)-1
		if err := evaluate(ctx, name, events, items, alive, frac, final, cfg, f, res); err != nil {
			return nil, err
		}
		sort.SliceStable(alive, func(i, j int) bool {
			return better(last(alive[i]), last(alive[j]), res.Minimize)
		})
		if !final {
			keep := (len(alive) + cfg.Eta - 1) / cfg.Eta
			alive = alive[:keep]
		}
	}
	if res.Base.Validation == nil {
		// The base configuration fell out early: score it on full data too,
		// so that the search never returns something worse than its start.
		if err := evaluate(ctx, name, events, items, []*Trial{res.Base}, 1, true, cfg, f, res); err != nil {
			return nil, err
		}
		alive = append(alive, res.Base)
		sort.SliceStable(alive, func(i, j int) bool {
			return better(last(alive[i]), last(alive[j]), res.Minimize)
		})
	}
	res.Best = alive[0]
	return res, nil
}

func whyNoRMSE(explicit bool, model string) string {
	if !explicit {
		return "the data has no explicit events"
	}
	return "model " + model + " does not predict values"
}

func last(t *Trial) float64 {
	if len(t.Rungs) == 0 {
		return math.NaN()
	}
	return t.Rungs[len(t.Rungs)-1].Score
}

// better orders scores; NaN (a failed or empty evaluation) is worst.
func better(a, b float64, minimize bool) bool {
	switch {
	case math.IsNaN(a):
		return false
	case math.IsNaN(b):
		return true
	case minimize:
		return a < b
	}
	return a > b
}

// evaluate scores trials on the first frac of the data, in parallel.
func evaluate(ctx context.Context, name string, events []streamrec.Event, items []streamrec.ItemMeta, trials []*Trial,
	frac float64, final bool, cfg Config, f Factory, res *Result) error {
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	n := len(events)
	if cfg.Protocol == replay.Prequential && !final {
		n = int(frac * ValFraction * float64(len(events)))
	} else if !final {
		n = int(frac * float64(len(events)))
	}
	n = max(n, min(len(events), 10))
	prefix := events[:n]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(trials))
	var wg sync.WaitGroup
	for i, t := range trials {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := score(ctx, name, prefix, items, t, frac, final, cfg, f, res); err != nil {
				errs[i] = fmt.Errorf("tune: trial %d: %w", t.ID, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// score replays one trial on events and records its rung score (and, on the
// final rung, its validation and test figures).
func score(ctx context.Context, name string, events []streamrec.Event, items []streamrec.ItemMeta, t *Trial,
	frac float64, final bool, cfg Config, f Factory, res *Result) error {
	rc := cfg.Replay
	rc.Protocol, rc.Models, rc.Parallel, rc.Progress = cfg.Protocol, []string{cfg.Model}, 1, cfg.Progress
	rc.Buckets = 1
	if cfg.Protocol == replay.Prequential {
		rc.ValFraction = 0
		if final {
			rc.ValFraction = ValFraction
		}
		if res.Minimize {
			rc.EvalEvery = 0 // ranking is not the objective: skip it for speed
		}
	}
	tc := t.Config
	if f.Recent != nil {
		rc.MaxRecentFor = f.Recent(tc)
	}
	fac := replay.Factory{
		Model: func(m string) (learner.Model, error) { return f.Model(m, tc) },
		Store: func() (replay.Store, error) { return f.Store(tc) },
	}
	rep, err := replay.Run(ctx, name, events, items, rc, fac)
	if err != nil {
		return err
	}
	r := &rep.Results[0]
	var s float64
	switch {
	case cfg.Protocol == replay.TimeSplit:
		s = r.Detail.Val.RMSE
		if final {
			t.Validation, t.Test, t.TestOnline = r.Detail.Val, r.Detail.Test, r.Detail.TestOnline
		}
	case final:
		t.Validation, t.Test = r.Detail.Val, r.Detail.Test
		s = objective(t.Validation, res.Minimize)
	case res.Minimize:
		s = r.RMSE
	default:
		s = r.NDCG
	}
	t.Rungs = append(t.Rungs, Rung{Fraction: frac, Events: len(events), Score: s})
	return nil
}

func objective(f *replay.Figures, minimize bool) float64 {
	if minimize {
		return f.RMSE
	}
	return f.NDCG
}

// FigureMap turns figures into named metrics ("rmse", "mae", "hr@K", …),
// leaving out those that do not apply.
func FigureMap(f *replay.Figures, k int) map[string]float64 {
	if f == nil {
		return nil
	}
	out := map[string]float64{}
	put := func(name string, v float64) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[name] = v
		}
	}
	put("rmse", f.RMSE)
	put("mae", f.MAE)
	put(fmt.Sprintf("hr@%d", k), f.HR)
	put(fmt.Sprintf("ndcg@%d", k), f.NDCG)
	put(fmt.Sprintf("mrr@%d", k), f.MRR)
	return out
}
