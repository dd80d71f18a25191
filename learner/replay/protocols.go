package replay

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// progressEvery is how many events a runner processes between progress calls
// and context checks.
const progressEvery = 4096

// runner drives one model over events with its own feature store, in the
// learner's order: read features, score, learn, apply.
type runner struct {
	cfg   *Config
	model learner.Model
	rec   learner.Recommender // nil when the model cannot rank
	store Store
	u     features.User
	it    features.Item
	g     features.Global
	ex    learner.Example
	buf   []streamrec.Scored
	list  []string
	ticks int
	n     int64 // events processed
	// values says the model predicts values (RMSE/MAE apply).
	values bool
	// maxRecent caps the recent items of each feature read.
	maxRecent int
}

func (e *runEnv) newRunner(ctx context.Context, model string) (*runner, error) {
	m, err := e.f.Model(model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	r := &runner{cfg: e.cfg, model: m, values: !slices.Contains(e.cfg.RankOnly, model), maxRecent: e.cfg.MaxRecent}
	if n, ok := e.cfg.MaxRecentFor[model]; ok {
		r.maxRecent = n
	}
	r.rec, _ = m.(learner.Recommender)
	if err := r.resetStore(ctx, e); err != nil {
		return nil, err
	}
	return r, nil
}

// resetStore gives the runner a fresh feature store holding the catalogue.
func (r *runner) resetStore(ctx context.Context, e *runEnv) error {
	s, err := e.f.Store()
	if err != nil {
		return fmt.Errorf("feature store: %w", err)
	}
	if len(e.items) > 0 {
		if err := s.PutItems(ctx, e.items); err != nil {
			return fmt.Errorf("feature store: items: %w", err)
		}
	}
	r.store = s
	return nil
}

// read loads the features as they are just before ev.
func (r *runner) read(ev *streamrec.Event) *learner.Example {
	r.store.UserFeaturesInto(ev.User, &r.u, r.maxRecent)
	r.store.ItemInto(ev.Item, &r.it)
	r.g = r.store.GlobalNow()
	r.ex = learner.Example{Event: ev, User: &r.u, Item: &r.it, Global: &r.g}
	return &r.ex
}

// predict returns m's value prediction for ex, clipped to the value range.
func (r *runner) predict(m learner.Model, ex *learner.Example) float64 {
	p := m.Predict(ex)
	if math.IsNaN(p) {
		p = r.cfg.MinValue
	}
	return min(max(p, r.cfg.MinValue), r.cfg.MaxValue)
}

// apply writes ev to the store, counts it and reports progress.
func (r *runner) apply(ctx context.Context, ev *streamrec.Event) error {
	r.store.ApplyEvent(ev)
	return r.tick(ctx)
}

func (r *runner) tick(ctx context.Context) error {
	r.n++
	r.ticks++
	if r.ticks == progressEvery {
		r.ticks = 0
		if r.cfg.Progress != nil {
			r.cfg.Progress(progressEvery)
		}
		return ctx.Err()
	}
	return nil
}

func (r *runner) flush() {
	if r.cfg.Progress != nil && r.ticks > 0 {
		r.cfg.Progress(r.ticks)
	}
	r.ticks = 0
}

// topK asks the model for the user's top k items, excluding what exclude
// says, and returns their ids (valid until the next call).
func (r *runner) topK(u *features.User, exclude func(string) bool, ts int64, k int) []string {
	q := learner.Query{User: u, Exclude: exclude, TS: ts}
	r.buf = r.rec.Recommend(&q, k, r.buf[:0])
	r.list = r.list[:0]
	for _, s := range r.buf {
		r.list = append(r.list, s.Item)
	}
	return r.list
}

// train makes cfg.Epochs passes over the events that keep says are training
// events, each with a fresh store, learning from point-in-time features. The
// runner's store afterwards holds every training event.
func (r *runner) train(ctx context.Context, e *runEnv, keep func(i int) bool) error {
	for epoch := 0; epoch < r.cfg.Epochs; epoch++ {
		if epoch > 0 {
			if err := r.resetStore(ctx, e); err != nil {
				return err
			}
		}
		for i := range e.events {
			if !keep(i) {
				continue
			}
			ev := &e.events[i]
			r.model.Learn(r.read(ev))
			if err := r.apply(ctx, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// IsPositive reports whether ev is a positive interaction: every implicit
// event, and explicit events whose value is at least threshold.
func IsPositive(ev *streamrec.Event, threshold float64) bool {
	return ev.Kind == streamrec.Implicit || ev.Value >= threshold
}

// eligiblePositives marks the prequential ranking queries: positive events
// whose (user, item) pair has not occurred before and whose item has (by any
// user). Every evalEvery-th eligible event is marked 2 (ranked); the others 1.
func eligiblePositives(events []streamrec.Event, threshold float64, evalEvery int) []uint8 {
	out := make([]uint8, len(events))
	type pair struct{ u, i string }
	pairs := make(map[pair]struct{}, len(events))
	items := make(map[string]struct{}, 1024)
	n := 0
	for i := range events {
		ev := &events[i]
		p := pair{ev.User, ev.Item}
		_, seenPair := pairs[p]
		_, seenItem := items[ev.Item]
		if IsPositive(ev, threshold) && !seenPair && seenItem {
			out[i] = 1
			n++
			if evalEvery > 0 && n%evalEvery == 0 {
				out[i] = 2
			}
		}
		pairs[p] = struct{}{}
		items[ev.Item] = struct{}{}
	}
	return out
}

// userItems is each user's set of items so far (the exclusion set).
type userItems map[string]map[string]struct{}

func (s userItems) add(user, item string) {
	m := s[user]
	if m == nil {
		m = make(map[string]struct{}, 8)
		s[user] = m
	}
	m[item] = struct{}{}
}

func (r *runner) finish(o *outcome) *outcome {
	r.flush()
	o.processed = r.n
	return o
}

// prequential is test-then-train over the whole stream.
func (e *runEnv) prequential(ctx context.Context, t *task) (*outcome, error) {
	r, err := e.newRunner(ctx, t.model)
	if err != nil {
		return nil, err
	}
	o := &outcome{}
	n := len(e.events)
	valEnd := -1
	if e.cfg.ValFraction > 0 {
		valEnd = int(math.Floor(e.cfg.ValFraction * float64(n)))
	}
	ranking := r.rec != nil && e.cfg.EvalEvery > 0
	var seen userItems
	if ranking {
		seen = userItems{}
	}
	var excl map[string]struct{}
	exclude := func(item string) bool { _, ok := excl[item]; return ok }
	buckets := newBuckets(n, e.cfg.Buckets)
	k := e.cfg.K
	for i := range e.events {
		ev := &e.events[i]
		ex := r.read(ev)
		b := buckets.at(i)
		scored := false
		if ev.Kind == streamrec.Explicit && r.values {
			p := r.predict(r.model, ex)
			o.reg.Add(p, ev.Value)
			b.reg.Add(p, ev.Value)
			if i < valEnd {
				o.val.Add(p, ev.Value)
			} else if valEnd >= 0 {
				o.testReg.Add(p, ev.Value)
			}
			scored = true
		}
		if r.rec != nil && e.eligible[i] > 0 {
			o.eligible++
			if e.eligible[i] == 2 {
				excl = seen[ev.User]
				rank := Rank(r.topK(&r.u, exclude, ev.TS, k), ev.Item)
				o.rk.AddRank(rank, k)
				b.rk.AddRank(rank, k)
				if i < valEnd {
					o.valRk.AddRank(rank, k)
				} else if valEnd >= 0 {
					o.testRk.AddRank(rank, k)
				}
				scored = true
			}
		}
		if scored {
			o.scored++
		}
		r.model.Learn(ex)
		if seen != nil {
			seen.add(ev.User, ev.Item)
		}
		if err := r.apply(ctx, ev); err != nil {
			return nil, err
		}
	}
	o.series = buckets.series("", k)
	return r.finish(o), nil
}

// Split is the timesplit protocol's partition of a time-ordered log.
type Split struct {
	// B1 and B2 are t0+0.6(t1−t0) and t0+0.8(t1−t0) in Unix ms.
	B1, B2 float64
	// Train, Val and Test count the events with ts < B1, B1 ≤ ts < B2 and
	// ts ≥ B2.
	Train, Val, Test int
}

// Phase returns 0 (train), 1 (validation) or 2 (test) for a timestamp.
func (s *Split) Phase(ts int64) int {
	switch t := float64(ts); {
	case t < s.B1:
		return 0
	case t < s.B2:
		return 1
	}
	return 2
}

// SplitTime computes the timesplit boundaries of time-ordered events.
func SplitTime(events []streamrec.Event) Split {
	var s Split
	if len(events) == 0 {
		return s
	}
	t0, t1 := float64(events[0].TS), float64(events[len(events)-1].TS)
	s.B1, s.B2 = t0+0.6*(t1-t0), t0+0.8*(t1-t0)
	for i := range events {
		switch s.Phase(events[i].TS) {
		case 0:
			s.Train++
		case 1:
			s.Val++
		default:
			s.Test++
		}
	}
	return s
}

// timesplit trains on the training period, then scores the validation and
// test periods twice over one feature store that keeps consuming every
// event: with the trained model frozen (restored from its snapshot bytes, as
// serve loads it) and with the model learning on (test-then-train).
func (e *runEnv) timesplit(ctx context.Context, t *task) (*outcome, error) {
	r, err := e.newRunner(ctx, t.model)
	if err != nil {
		return nil, err
	}
	sp := &e.split
	if err := r.train(ctx, e, func(i int) bool { return sp.Phase(e.events[i].TS) == 0 }); err != nil {
		return nil, err
	}
	snap, err := r.model.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("snapshot after training: %w", err)
	}
	frozen, err := e.f.Model(t.model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := frozen.UnmarshalBinary(snap); err != nil {
		return nil, fmt.Errorf("restore snapshot after training: %w", err)
	}
	o := &outcome{}
	first := sp.Train
	buckets := newBuckets(len(e.events)-first, e.cfg.Buckets)
	frozenB := newBuckets(len(e.events)-first, e.cfg.Buckets)
	for i := first; i < len(e.events); i++ {
		ev := &e.events[i]
		ex := r.read(ev)
		if ev.Kind == streamrec.Explicit && r.values {
			pf := r.predict(frozen, ex)
			po := r.predict(r.model, ex)
			frozenB.at(i-first).reg.Add(pf, ev.Value)
			buckets.at(i-first).reg.Add(po, ev.Value)
			if sp.Phase(ev.TS) == 1 {
				o.val.Add(pf, ev.Value)
				o.valOnline.Add(po, ev.Value)
			} else {
				o.reg.Add(pf, ev.Value)
				o.online.Add(po, ev.Value)
			}
		}
		r.model.Learn(ex)
		if err := r.apply(ctx, ev); err != nil {
			return nil, err
		}
	}
	o.series = append(frozenB.series(" frozen", e.cfg.K), buckets.series(" online", e.cfg.K)...)
	return r.finish(o), nil
}

// FoldOf assigns each of n events to one of k folds: a seeded random
// permutation (PCG, seed) dealt round-robin, so fold sizes differ by at most 1.
func FoldOf(n, k int, seed int64) []uint8 {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed))
	perm := rng.Perm(n)
	out := make([]uint8, n)
	for j, i := range perm {
		out[i] = uint8(j % k)
	}
	return out
}

// kfold trains on every fold but t.fold (in time order) and scores t.fold:
// RMSE/MAE of its explicit events with the trained model and the training
// features, and P@K, R@K, NDCG@K of each user's top K among the items the
// user has no training event for, against all the user's test items.
func (e *runEnv) kfold(ctx context.Context, t *task) (*outcome, error) {
	r, err := e.newRunner(ctx, t.model)
	if err != nil {
		return nil, err
	}
	fold := uint8(t.fold)
	train := func(i int) bool { return e.folds[i] != fold }
	if err := r.train(ctx, e, train); err != nil {
		return nil, err
	}
	o := &outcome{fold: t.fold}
	var lastTS int64
	trainItems := userItems{}
	for i := range e.events {
		if train(i) {
			trainItems.add(e.events[i].User, e.events[i].Item)
			lastTS = max(lastTS, e.events[i].TS)
		}
	}
	test := userItems{}
	var users []string
	for i := range e.events {
		if train(i) {
			continue
		}
		ev := &e.events[i]
		if ev.Kind == streamrec.Explicit && r.values {
			p := r.predict(r.model, r.read(ev))
			o.reg.Add(p, ev.Value)
		}
		if _, ok := test[ev.User]; !ok {
			users = append(users, ev.User)
		}
		test.add(ev.User, ev.Item)
		if err := r.tick(ctx); err != nil {
			return nil, err
		}
	}
	if r.rec != nil {
		for _, user := range users {
			excl := trainItems[user]
			rel := test[user]
			for it := range rel {
				if _, ok := excl[it]; ok {
					delete(rel, it) // a repeat of a training pair is not new to the user
				}
			}
			r.store.UserFeaturesInto(user, &r.u, r.maxRecent)
			list := r.topK(&r.u, func(item string) bool { _, ok := excl[item]; return ok }, lastTS, e.cfg.K)
			o.rk.AddSet(list, rel, e.cfg.K)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	return r.finish(o), nil
}
