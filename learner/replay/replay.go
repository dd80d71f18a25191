// Package replay backtests models by replaying a time-ordered event log
// through the production code: the in-memory feature store (features.Memory)
// and the learner's models. For each event it reads the features as they
// were just before the event, scores the model, lets it learn, and only then
// applies the event to the store — the order the online learner uses.
//
// Three protocols are offered (docs/evaluation.md defines them and every
// metric precisely):
//
//   - prequential: test-then-train over the whole stream; RMSE/MAE over
//     explicit events and HR@K, NDCG@K, MRR@K over new positive pairs;
//   - timesplit: train before t0+0.6(t1−t0), validate up to 0.8, test after;
//     test RMSE with frozen weights (rmse_frozen) and while learning
//     (rmse_online);
//   - kfold: 5-fold random split; mean RMSE/MAE over folds and P@K, R@K,
//     NDCG@K ranking every item the user has not rated in training.
//
// Models run independently (each with its own feature store), in parallel
// goroutines, so the results do not depend on scheduling.
package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// Protocol names.
const (
	Prequential = "prequential"
	TimeSplit   = "timesplit"
	KFold       = "kfold"
)

// Protocols lists the protocol names.
var Protocols = []string{Prequential, TimeSplit, KFold}

// Store is what replay needs of a feature store: the allocation-free point
// reads and single-event writes that features.Memory offers.
type Store interface {
	// UserFeaturesInto copies the user's features (at most maxRecent recent
	// items; all when negative) into dst and reports whether the user exists.
	UserFeaturesInto(id string, dst *features.User, maxRecent int) bool
	// ItemInto copies the item's features into dst and reports whether it exists.
	ItemInto(id string, dst *features.Item) bool
	// GlobalNow returns the store-wide counters.
	GlobalNow() features.Global
	// ApplyEvent applies one event exactly once.
	ApplyEvent(e *streamrec.Event) bool
	// PutItems stores item metadata.
	PutItems(ctx context.Context, items []streamrec.ItemMeta) error
}

var _ Store = (*features.Memory)(nil)

// Factory builds the fresh models and feature stores a replay needs. Each
// model run (and each fold) gets its own, so runs are independent.
type Factory struct {
	// Model returns a new, untrained model by name (learner.New with the
	// learner configuration).
	Model func(name string) (learner.Model, error)
	// Store returns a new, empty feature store.
	Store func() (Store, error)
}

// Config says how to replay. Start from DefaultConfig.
type Config struct {
	Protocol string
	Models   []string
	// K is the list length of the ranking metrics.
	K int
	// Seed drives the k-fold split (models take theirs from their own config).
	Seed int64
	// EvalEvery ranks every Nth eligible positive in the prequential
	// protocol (1 = all, 0 = none); RMSE/MAE always cover every explicit event.
	EvalEvery int
	// Folds is the number of k-fold folds.
	Folds int
	// Epochs is how many passes over the training events the timesplit and
	// kfold protocols make before evaluating (each pass with a fresh feature
	// store, so features stay point-in-time). The prequential protocol is a
	// single pass by definition.
	Epochs int
	// MinValue and MaxValue clip predicted values (the event contract's range).
	MinValue, MaxValue float64
	// Positive is the explicit value from which a rating counts as a
	// positive interaction; implicit events are always positive.
	Positive float64
	// ValFraction, when in (0,1), splits the prequential stream into a
	// validation prefix (the first ⌊f·n⌋ events) and a test rest, reported
	// separately (used by tune).
	ValFraction float64
	// MaxRecent caps the recent items copied into each feature read
	// (negative: all the store keeps); MaxRecentFor overrides it per model.
	MaxRecent    int
	MaxRecentFor map[string]int
	// RankOnly names the models whose Predict is a relevance score rather
	// than a value (pop, itemknn): they get no RMSE/MAE.
	RankOnly []string
	// Parallel bounds the goroutines; 0 means GOMAXPROCS.
	Parallel int
	// Buckets is the resolution of the metric series over the stream.
	Buckets int
	// Progress, when set, is called with the number of events processed
	// since its last call (from several goroutines).
	Progress func(n int)
}

// DefaultConfig returns the defaults of product.md §6.
func DefaultConfig() Config {
	return Config{
		Protocol:  Prequential,
		K:         10,
		Seed:      42,
		EvalEvery: 1,
		Folds:     5,
		Epochs:    1,
		MinValue:  streamrec.DefaultMinValue,
		MaxValue:  streamrec.DefaultMaxValue,
		Positive:  4,
		MaxRecent: -1,
		Buckets:   200,
		RankOnly:  []string{"pop", "itemknn"},
	}
}

// Validate checks c field by field.
func (c *Config) Validate() error {
	var errs []error
	if !slices.Contains(Protocols, c.Protocol) {
		errs = append(errs, fmt.Errorf("protocol %q: want prequential, timesplit or kfold", c.Protocol))
	}
	if len(c.Models) == 0 {
		errs = append(errs, errors.New("no models"))
	}
	if c.K < 1 || c.K > 1000 {
		errs = append(errs, fmt.Errorf("k must be in 1..1000, got %d", c.K))
	}
	if c.EvalEvery < 0 {
		errs = append(errs, fmt.Errorf("eval-every must be >= 0, got %d", c.EvalEvery))
	}
	if c.Folds < 2 {
		errs = append(errs, fmt.Errorf("folds must be >= 2, got %d", c.Folds))
	}
	if c.Epochs < 1 || c.Epochs > 1000 {
		errs = append(errs, fmt.Errorf("epochs must be in 1..1000, got %d", c.Epochs))
	}
	if !(c.MinValue <= c.MaxValue) {
		errs = append(errs, fmt.Errorf("value range [%g, %g] is empty", c.MinValue, c.MaxValue))
	}
	if c.ValFraction < 0 || c.ValFraction >= 1 {
		errs = append(errs, fmt.Errorf("validation fraction must be in [0,1), got %g", c.ValFraction))
	}
	if c.Buckets < 1 {
		errs = append(errs, fmt.Errorf("buckets must be positive, got %d", c.Buckets))
	}
	if c.Parallel < 0 {
		errs = append(errs, fmt.Errorf("parallel must be >= 0, got %d", c.Parallel))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("replay config: %w", err)
	}
	return nil
}

// Result is one model's figures. Metrics that do not apply to the protocol
// (or had nothing to evaluate) are NaN and left out of the JSON.
type Result struct {
	Model      string
	RMSE, MAE  float64
	RMSEFrozen float64
	RMSEOnline float64
	HR, NDCG   float64
	MRR        float64
	P, R       float64
	// Evaluated counts what the headline metrics cover (docs/evaluation.md).
	Evaluated    int64
	EventsPerSec float64
	Seconds      float64
	// Detail holds what report.json adds to the contract fields.
	Detail Detail
}

// Detail is a model's breakdown for reports and tuning.
type Detail struct {
	// Rated counts explicit predictions scored, Ranked the ranking queries,
	// Eligible the eligible positives before --eval-every sampling.
	Rated    int64 `json:"rated"`
	Ranked   int64 `json:"ranked"`
	Eligible int64 `json:"eligible,omitempty"`
	// Processed counts event passes through the model (training + scoring).
	Processed int64 `json:"processed"`
	// Val and Test are the validation and test figures: for timesplit the
	// frozen model on the validation and test periods (ValOnline, TestOnline
	// while learning); for prequential with a validation fraction the
	// prefix and the rest.
	Val        *Figures `json:"validation,omitempty"`
	ValOnline  *Figures `json:"validation_online,omitempty"`
	Test       *Figures `json:"test,omitempty"`
	TestOnline *Figures `json:"test_online,omitempty"`
	// Folds holds each k-fold fold's figures.
	Folds []Figures `json:"folds,omitempty"`
	// Series are the metrics over the stream, per bucket of events.
	Series []Series `json:"series,omitempty"`
}

// Figures are one evaluation's metrics (NaN when not applicable).
type Figures struct {
	RMSE float64 `json:"rmse"`
	MAE  float64 `json:"mae"`
	HR   float64 `json:"hr"`
	NDCG float64 `json:"ndcg"`
	MRR  float64 `json:"mrr"`
	P    float64 `json:"p"`
	R    float64 `json:"r"`
	// Rated and Ranked count the predictions and queries behind them.
	Rated  int64 `json:"rated"`
	Ranked int64 `json:"ranked"`
}

func figures(reg *Regression, rk *Ranking) Figures {
	return Figures{RMSE: reg.RMSE(), MAE: reg.MAE(), HR: rk.HR(), NDCG: rk.NDCG(), MRR: rk.MRR(),
		P: rk.Precision(), R: rk.Recall(), Rated: reg.N, Ranked: rk.N}
}

// Report is a replay's outcome: the §6 JSON object.
type Report struct {
	Dataset  string
	Protocol string
	Events   int
	K        int
	Results  []Result
	// Settings records how the replay ran (report.json only).
	Settings Settings
}

// Settings are the replay parameters recorded in report.json.
type Settings struct {
	Seed      int64   `json:"seed"`
	EvalEvery int     `json:"eval_every"`
	Folds     int     `json:"folds,omitempty"`
	Epochs    int     `json:"epochs"`
	MinValue  float64 `json:"min_value"`
	MaxValue  float64 `json:"max_value"`
	Positive  float64 `json:"positive"`
	// Splits are the timesplit train/validation/test sizes.
	Splits []int `json:"splits,omitempty"`
	// Boundaries are the timesplit boundaries in Unix ms.
	Boundaries []float64 `json:"boundaries,omitempty"`
}

// Run replays events (time-ordered, as dataset.Load returns them) under
// cfg, scoring each model on identical data. items is the catalogue (may be
// nil). Runs are deterministic for a given config and model seeds.
func Run(ctx context.Context, name string, events []streamrec.Event, items []streamrec.ItemMeta, cfg Config, f Factory) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if f.Model == nil || f.Store == nil {
		return nil, errors.New("replay: factory needs Model and Store")
	}
	if len(events) == 0 {
		return nil, errors.New("replay: no events")
	}
	if !slices.IsSortedFunc(events, func(a, b streamrec.Event) int { return cmpInt(a.TS, b.TS) }) {
		return nil, errors.New("replay: events are not in time order")
	}
	rep := &Report{Dataset: name, Protocol: cfg.Protocol, Events: len(events), K: cfg.K,
		Settings: Settings{Seed: cfg.Seed, EvalEvery: cfg.EvalEvery, Epochs: cfg.Epochs,
			MinValue: cfg.MinValue, MaxValue: cfg.MaxValue, Positive: cfg.Positive}}
	env := &runEnv{cfg: &cfg, f: f, events: events, items: items}
	var tasks []task
	switch cfg.Protocol {
	case Prequential:
		rep.Settings.EvalEvery = cfg.EvalEvery
		env.eligible = eligiblePositives(events, cfg.Positive, cfg.EvalEvery)
		for _, m := range cfg.Models {
			tasks = append(tasks, task{model: m, run: env.prequential})
		}
	case TimeSplit:
		sp := SplitTime(events)
		rep.Settings.Splits = []int{sp.Train, sp.Val, sp.Test}
		rep.Settings.Boundaries = []float64{sp.B1, sp.B2}
		env.split = sp
		for _, m := range cfg.Models {
			tasks = append(tasks, task{model: m, run: env.timesplit})
		}
	case KFold:
		rep.Settings.Folds = cfg.Folds
		env.folds = FoldOf(len(events), cfg.Folds, cfg.Seed)
		for _, m := range cfg.Models {
			for fold := 0; fold < cfg.Folds; fold++ {
				tasks = append(tasks, task{model: m, fold: fold, run: env.kfold})
			}
		}
	}
	outs, err := runTasks(ctx, tasks, cfg.Parallel)
	if err != nil {
		return nil, err
	}
	for _, m := range cfg.Models {
		var mine []*outcome
		for i := range tasks {
			if tasks[i].model == m {
				mine = append(mine, outs[i])
			}
		}
		rep.Results = append(rep.Results, combine(cfg.Protocol, m, mine))
	}
	return rep, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// runEnv is what every task of one replay shares (read only).
type runEnv struct {
	cfg      *Config
	f        Factory
	events   []streamrec.Event
	items    []streamrec.ItemMeta
	eligible []uint8 // prequential: 0 not eligible, 1 eligible, 2 eligible and ranked
	split    Split
	folds    []uint8
}

type task struct {
	model string
	fold  int
	run   func(ctx context.Context, t *task) (*outcome, error)
}

// outcome is what one task measured.
type outcome struct {
	fold      int
	reg       Regression // headline regression (prequential: all; timesplit: frozen test; kfold: fold test)
	rk        Ranking
	online    Regression // timesplit: online test
	val       Regression // validation (prequential prefix, timesplit frozen)
	valOnline Regression
	valRk     Ranking
	testReg   Regression // prequential: after the validation prefix
	testRk    Ranking
	eligible  int64
	scored    int64 // prequential: distinct events scored
	processed int64
	seconds   float64
	series    []Series
}

func runTasks(ctx context.Context, tasks []task, parallel int) ([]*outcome, error) {
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outs := make([]*outcome, len(tasks))
	errs := make([]error, len(tasks))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range tasks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			o, err := tasks[i].run(ctx, &tasks[i])
			if err != nil {
				errs[i] = fmt.Errorf("replay %s: %w", tasks[i].model, err)
				cancel()
				return
			}
			o.seconds = time.Since(start).Seconds()
			outs[i] = o
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// combine turns one model's task outcomes into its Result.
func combine(protocol, model string, outs []*outcome) Result {
	nan := math.NaN()
	r := Result{Model: model, RMSE: nan, MAE: nan, RMSEFrozen: nan, RMSEOnline: nan, HR: nan, NDCG: nan, MRR: nan, P: nan, R: nan}
	var processed int64
	for _, o := range outs {
		processed += o.processed
		r.Seconds += o.seconds
	}
	r.Detail.Processed = processed
	if r.Seconds > 0 {
		r.EventsPerSec = float64(processed) / r.Seconds
	}
	switch protocol {
	case Prequential:
		o := outs[0]
		r.RMSE, r.MAE = o.reg.RMSE(), o.reg.MAE()
		r.HR, r.NDCG, r.MRR = o.rk.HR(), o.rk.NDCG(), o.rk.MRR()
		r.Evaluated = o.scored
		r.Detail.Rated, r.Detail.Ranked, r.Detail.Eligible = o.reg.N, o.rk.N, o.eligible
		if o.val.N > 0 || o.valRk.N > 0 || o.testReg.N > 0 || o.testRk.N > 0 {
			v, t := figures(&o.val, &o.valRk), figures(&o.testReg, &o.testRk)
			r.Detail.Val, r.Detail.Test = &v, &t
		}
		r.Detail.Series = o.series
	case TimeSplit:
		o := outs[0]
		r.RMSEFrozen, r.RMSEOnline, r.MAE = o.reg.RMSE(), o.online.RMSE(), o.reg.MAE()
		r.Evaluated = o.reg.N
		r.Detail.Rated = o.reg.N
		var none Ranking
		v, vo := figures(&o.val, &none), figures(&o.valOnline, &none)
		t, to := figures(&o.reg, &none), figures(&o.online, &none)
		r.Detail.Val, r.Detail.ValOnline, r.Detail.Test, r.Detail.TestOnline = &v, &vo, &t, &to
		r.Detail.Series = o.series
	case KFold:
		slices.SortFunc(outs, func(a, b *outcome) int { return a.fold - b.fold })
		// Means over folds of each fold's metric (folds with nothing to
		// evaluate for a metric are left out of that metric's mean).
		var rmse, mae, hr, ndcg, mrr, p, rc meanOf
		for _, o := range outs {
			fg := figures(&o.reg, &o.rk)
			r.Detail.Folds = append(r.Detail.Folds, fg)
			rmse.add(fg.RMSE)
			mae.add(fg.MAE)
			hr.add(fg.HR)
			ndcg.add(fg.NDCG)
			mrr.add(fg.MRR)
			p.add(fg.P)
			rc.add(fg.R)
			r.Detail.Rated += o.reg.N
			r.Detail.Ranked += o.rk.N
		}
		r.RMSE, r.MAE = rmse.mean(), mae.mean()
		r.NDCG, r.P, r.R = ndcg.mean(), p.mean(), rc.mean()
		r.Evaluated = r.Detail.Rated
		if r.Evaluated == 0 {
			r.Evaluated = r.Detail.Ranked
		}
		for i, o := range outs {
			for _, s := range o.series {
				s.Name = fmt.Sprintf("%s (fold %d)", s.Name, i+1)
				r.Detail.Series = append(r.Detail.Series, s)
			}
		}
	}
	return r
}

type meanOf struct {
	n   int
	sum float64
}

func (m *meanOf) add(v float64) {
	if !math.IsNaN(v) {
		m.n++
		m.sum += v
	}
}

func (m *meanOf) mean() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return m.sum / float64(m.n)
}
