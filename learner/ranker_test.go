package learner

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

func mustRanker(tb testing.TB, cfg RankerConfig) *Ranker {
	tb.Helper()
	r, err := NewRanker(cfg)
	if err != nil {
		tb.Fatalf("NewRanker: %v", err)
	}
	return r
}

// rkSmallConfig is a small ranker for fast unit tests.
func rkSmallConfig() RankerConfig {
	c := DefaultRankerConfig()
	c.Dim, c.Bottom, c.Top, c.HistoryLen = 8, []int{8}, []int{8}, 16
	return c
}

func TestRankerConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *RankerConfig)
		field string // "" when valid
	}{
		{"default", func(*RankerConfig) {}, ""},
		{"no hidden layers", func(c *RankerConfig) { c.Bottom, c.Top = nil, nil }, ""},
		{"zero dim", func(c *RankerConfig) { c.Dim = 0 }, "dim"},
		{"bad bottom", func(c *RankerConfig) { c.Bottom = []int{8, 0} }, "bottom[1]"},
		{"bad top", func(c *RankerConfig) { c.Top = []int{-1} }, "top[0]"},
		{"negative history", func(c *RankerConfig) { c.HistoryLen = -1 }, "history_len"},
		{"zero lr", func(c *RankerConfig) { c.LRDense = 0 }, "lr_dense"},
		{"NaN lr", func(c *RankerConfig) { c.LRBias = math.NaN() }, "lr_bias"},
		{"negative l2", func(c *RankerConfig) { c.L2Embedding = -1 }, "l2_embedding"},
		{"zero batch", func(c *RankerConfig) { c.BatchSize = 0 }, "batch_size"},
		{"too many negatives", func(c *RankerConfig) { c.Negatives = 1000 }, "negatives"},
		{"zero half-life", func(c *RankerConfig) { c.HalfLifeHours = 0 }, "half_life_hours"},
		{"infinite shrinkage", func(c *RankerConfig) { c.Shrinkage = math.Inf(1) }, "shrinkage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultRankerConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.field)) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.field)
			}
			if _, err := NewRanker(c); err == nil {
				t.Fatal("NewRanker accepted an invalid config")
			}
		})
	}
}

// rkGradExample builds a ranker with random weights everywhere and an
// example whose user has a history of known, categorised items.
func rkGradExample(t *testing.T) (*Ranker, *Example, int32, int32) {
	t.Helper()
	cfg := DefaultRankerConfig()
	cfg.Dim, cfg.Bottom, cfg.Top, cfg.HistoryLen = 4, []int{5}, []int{6, 3}, 8
	cfg.SessionGapHours = 48 // the example falls inside the session
	r := mustRanker(t, cfg)
	ts := int64(1_700_000_000_000)
	cats := [][]string{{"a", "b"}, {"b"}, {"c"}, {"a"}, {"d"}}
	for k := range 5 {
		id := "i" + strconv.Itoa(k)
		ev := &streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u0", Item: id, Value: 4, TS: ts}
		r.Learn(&Example{Event: ev, User: &features.User{ID: "u0"},
			Item: &features.Item{ID: id, Categories: cats[k]}, Global: &features.Global{}})
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	fill := func(v []float64) {
		for i := range v {
			v[i] = rnd.NormFloat64() * 0.4
		}
	}
	for _, tb := range r.tables() {
		fill(tb.data)
	}
	for _, m := range []*rkMLP{&r.bottom, &r.top, &r.wide} {
		for l := range m.layers {
			fill(m.layers[l].w)
			fill(m.layers[l].b)
		}
	}
	r.sc.cache.valid = false
	ex := &Example{
		Event: &streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u0", Item: "i4", Value: 4, TS: ts + 3_600_000*30},
		User: &features.User{ID: "u0", Recent: []string{"i0", "i1", "i2", "i3"},
			Counters: features.Counters{Events: 6, Explicit: 4, Implicit: 2, ExplicitSum: 14, ImplicitWeight: 3, FirstTS: ts - 86_400_000, LastTS: ts}},
		Item: &features.Item{ID: "i4", Categories: []string{"a", "d"}, Popularity: 3.5, PopularityTS: ts,
			Counters: features.Counters{Events: 9, Explicit: 7, Implicit: 2, ExplicitSum: 25, FirstTS: ts - 5*86_400_000, LastTS: ts - 7_200_000}},
		Global: &features.Global{Events: 100, Explicit: 80, ExplicitSum: 290, Users: 10, Items: 20, LastTS: ts},
	}
	return r, ex, r.users.lookup("u0"), r.items.lookup("i4")
}

// rkLoss is the loss of one head on ex with the current weights.
func rkLoss(r *Ranker, ex *Example, ui, ii int32, head int, label float64) float64 {
	sc := r.sc
	sc.setExample(ex, ui, ii)
	sc.forward(ui, ii)
	if head == rkHeadExplicit {
		d := sc.gm + sc.s[rkHeadExplicit] - label
		return 0.5 * d * d
	}
	s := sc.s[rkHeadImplicit]
	softplus := func(x float64) float64 { return math.Max(x, 0) + math.Log1p(math.Exp(-math.Abs(x))) }
	return label*softplus(-s) + (1-label)*softplus(s)
}

// TestRankerGradients checks backward against central finite differences
// for every parameter group and both losses.
func TestRankerGradients(t *testing.T) {
	cases := []struct {
		name  string
		head  int
		label float64
	}{
		{"explicit squared error", rkHeadExplicit, 4.5},
		{"implicit logistic positive", rkHeadImplicit, 1},
		{"implicit logistic negative", rkHeadImplicit, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, ex, ui, ii := rkGradExample(t)
			sc := r.sc
			for _, m := range []*rkMLP{&r.bottom, &r.top, &r.wide} {
				for l := range m.layers {
					clear(m.layers[l].gw)
					clear(m.layers[l].gb)
				}
			}
			rkLoss(r, ex, ui, ii, tc.head, tc.label)
			if sc.histN != 4 {
				t.Fatalf("history rows = %d, want 4", sc.histN)
			}
			var delta float64
			if tc.head == rkHeadExplicit {
				delta = sc.gm + sc.s[rkHeadExplicit] - tc.label
			} else {
				delta = rkSigmoid(sc.s[rkHeadImplicit]) - tc.label
			}
			if math.Abs(delta) >= rkGradClip {
				t.Fatalf("delta %g is clipped; pick a closer label", delta)
			}
			sc.backward(tc.head, delta)

			type group struct {
				name   string
				params []float64
				grad   []float64
			}
			cp := func(v []float64) []float64 { return append([]float64(nil), v...) }
			groups := []group{
				{"user embedding", r.userP.row(ui), cp(sc.gPu)},
				{"item embedding", r.itemQ.row(ii), cp(sc.gQi)},
				{"user bias", r.userB.row(ui), cp(sc.gB[:])},
				{"item bias", r.itemB.row(ii), cp(sc.gB[:])},
				{"global bias", r.bias0.row(0), cp(sc.gB[:])},
			}
			if tc.head == rkHeadExplicit { // the session bias is on the explicit head only
				if !sc.sessOn {
					t.Fatal("the session bias is not exercised")
				}
				groups = append(groups, group{"session bias", r.userS.row(ui), cp(sc.gB[rkHeadExplicit : rkHeadExplicit+1])})
			}
			gy := make([]float64, len(sc.gH))
			for j := range gy {
				gy[j] = sc.gH[j] * sc.histScale
			}
			for _, j := range sc.histIdx {
				groups = append(groups, group{"history vector " + r.items.ids[j], r.itemY.row(j), gy})
			}
			for name, m := range map[string]*rkMLP{"bottom": &r.bottom, "top": &r.top, "wide": &r.wide} {
				for l := range m.layers {
					ly := &m.layers[l]
					groups = append(groups,
						group{name + " layer " + strconv.Itoa(l) + " weights", ly.w, cp(ly.gw)},
						group{name + " layer " + strconv.Itoa(l) + " biases", ly.b, cp(ly.gb)})
				}
			}
			const eps = 1e-6
			for _, g := range groups {
				nonzero := false
				for k := range g.params {
					orig := g.params[k]
					g.params[k] = orig + eps
					lp := rkLoss(r, ex, ui, ii, tc.head, tc.label)
					g.params[k] = orig - eps
					lm := rkLoss(r, ex, ui, ii, tc.head, tc.label)
					g.params[k] = orig
					num := (lp - lm) / (2 * eps)
					if diff := math.Abs(num - g.grad[k]); diff > 1e-6+1e-4*math.Max(math.Abs(num), math.Abs(g.grad[k])) {
						t.Errorf("%s[%d]: backward %.8g, finite difference %.8g", g.name, k, g.grad[k], num)
					}
					if g.grad[k] != 0 {
						nonzero = true
					}
				}
				// The implicit head's gradient never reaches the explicit
				// biases and vice versa; every other group must be exercised.
				if !nonzero {
					t.Errorf("%s: all gradients are zero; the check proves nothing", g.name)
				}
			}
		})
	}
}

// rkTrain streams events through a feature store into r and returns the store.
func rkTrain(tb testing.TB, r *Ranker, s *rkStream, evs []streamrec.Event) {
	tb.Helper()
	for i := range evs {
		ex := s.example(&evs[i])
		r.Predict(ex)
		r.Learn(ex)
		s.apply(&evs[i])
	}
}

func rkSynthetic(tb testing.TB, spec string) ([]streamrec.Event, []streamrec.ItemMeta) {
	tb.Helper()
	d := rkLoad(tb, spec)
	return d.Events, d.Items
}

func TestRankerMarshalRoundTrip(t *testing.T) {
	evs, items := rkSynthetic(t, "synthetic:users=60,items=120,events=3000,seed=3")
	r := mustRanker(t, rkSmallConfig())
	s := newRKStream(t, items)
	rkTrain(t, r, s, evs[:2000])
	blob, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	other := rkSmallConfig()
	other.Seed, other.Dim = 99, 4 // overwritten by the blob
	r2 := mustRanker(t, other)
	if err := r2.UnmarshalBinary(blob); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if r2.Config().Dim != rkSmallConfig().Dim || r2.Users() != r.Users() || r2.Items() != r.Items() {
		t.Fatalf("restored config/users/items = %d/%d/%d", r2.Config().Dim, r2.Users(), r2.Items())
	}
	blob2, _ := r2.MarshalBinary()
	if !bytes.Equal(blob, blob2) {
		t.Fatal("marshal(unmarshal(b)) != b")
	}
	var cands []string
	r.ItemIDs(func(id string) bool { cands = append(cands, id); return len(cands) < 50 })
	for i := 2000; i < 2200; i++ {
		ex := s.example(&evs[i])
		if p1, p2 := r.Predict(ex), r2.Predict(ex); p1 != p2 {
			t.Fatalf("event %d: Predict %v after round trip, want %v", i, p2, p1)
		}
		a := r.ScoreItems(ex.User, cands, ex.Event.TS, nil)
		b := r2.ScoreItems(ex.User, cands, ex.Event.TS, nil)
		if !slices.Equal(a, b) {
			t.Fatalf("event %d: ScoreItems differ after round trip", i)
		}
	}
	if !slices.Equal(r.ItemCategories(cands[0]), r2.ItemCategories(cands[0])) || len(r.ItemCategories(cands[0])) == 0 {
		t.Fatalf("ItemCategories %v vs %v", r.ItemCategories(cands[0]), r2.ItemCategories(cands[0]))
	}
	// Resuming training from the blob continues bit for bit.
	s2 := newRKStream(t, items)
	for i := range evs[:2000] {
		s2.apply(&evs[i])
	}
	rkTrain(t, r, s, evs[2000:])
	rkTrain(t, r2, s2, evs[2000:])
	b1, _ := r.MarshalBinary()
	b2, _ := r2.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Fatal("training resumed from a snapshot diverged from uninterrupted training")
	}

	t.Run("corrupt", func(t *testing.T) {
		before, _ := r2.MarshalBinary()
		for name, bad := range map[string][]byte{
			"flipped byte": func() []byte { b := slices.Clone(blob); b[len(b)/2] ^= 0x40; return b }(),
			"truncated":    blob[:len(blob)-7],
			"empty":        nil,
			"wrong magic":  append([]byte("XXXX"), blob[4:]...),
		} {
			err := r2.UnmarshalBinary(bad)
			if !errors.Is(err, ErrRankerBlob) {
				t.Errorf("%s: UnmarshalBinary = %v, want ErrRankerBlob", name, err)
			}
		}
		after, _ := r2.MarshalBinary()
		if !bytes.Equal(before, after) {
			t.Error("a rejected blob changed the model")
		}
	})
}

func TestRankerDeterministic(t *testing.T) {
	evs, items := rkSynthetic(t, "synthetic:users=50,items=100,events=2000,seed=5")
	run := func(seed uint64) []byte {
		c := rkSmallConfig()
		c.Seed = seed
		r := mustRanker(t, c)
		rkTrain(t, r, newRKStream(t, items), evs)
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := run(1), run(1), run(2)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed and input gave different model bytes")
	}
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave identical models; the seed is not used")
	}
}

func rkFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func TestRankerExtremeInputs(t *testing.T) {
	r := mustRanker(t, rkSmallConfig())
	huge := features.Counters{Events: math.MaxInt64 / 2, Explicit: math.MaxInt64 / 4, Implicit: math.MaxInt64 / 4,
		ExplicitSum: 1e300, ImplicitWeight: math.Inf(1), FirstTS: 1, LastTS: math.MaxInt64 / 4}
	cases := []struct {
		name string
		ev   streamrec.Event
		u    features.User
		it   features.Item
		g    features.Global
	}{
		{"new user and item", streamrec.Event{Kind: streamrec.Explicit, User: "n1", Item: "m1", Value: 3, TS: 1e12},
			features.User{ID: "n1"}, features.Item{ID: "m1"}, features.Global{}},
		{"huge counters", streamrec.Event{Kind: streamrec.Explicit, User: "n2", Item: "m2", Value: 5, TS: 2e12},
			features.User{ID: "n2", Counters: huge, Recent: []string{"m1", "never-seen", "m1"}},
			features.Item{ID: "m2", Counters: huge, Popularity: 1e308, Categories: []string{"x", "x", ""}},
			features.Global{Events: math.MaxInt64, Explicit: 1, ExplicitSum: -1e300}},
		{"negative and zero times", streamrec.Event{Kind: streamrec.Implicit, Weight: 1, User: "n3", Item: "m3", TS: -5e12},
			features.User{ID: "n3", Counters: features.Counters{Events: 1, FirstTS: 7e12, LastTS: 7e12}},
			features.Item{ID: "m3", PopularityTS: 9e12, Popularity: -3}, features.Global{}},
		{"value far out of range", streamrec.Event{Kind: streamrec.Explicit, User: "n1", Item: "m2", Value: 1e9, TS: 3e12},
			features.User{ID: "n1"}, features.Item{ID: "m2"}, features.Global{Explicit: 1, ExplicitSum: 3}},
		{"NaN value is ignored", streamrec.Event{Kind: streamrec.Explicit, User: "n1", Item: "m1", Value: math.NaN(), TS: 3e12},
			features.User{ID: "n1"}, features.Item{ID: "m1"}, features.Global{}},
		{"infinite weight", streamrec.Event{Kind: streamrec.Implicit, Weight: math.Inf(1), User: "n4", Item: "m1", TS: 4e12},
			features.User{ID: "n4", Recent: []string{"m2", "m3"}}, features.Item{ID: "m1"}, features.Global{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := &Example{Event: &tc.ev, User: &tc.u, Item: &tc.it, Global: &tc.g}
			for range 3 {
				if p := r.Predict(ex); !rkFinite(p) {
					t.Fatalf("Predict = %v", p)
				}
				r.Learn(ex)
			}
			if p := r.Predict(ex); !rkFinite(p) {
				t.Fatalf("Predict after Learn = %v", p)
			}
			for _, u := range []*features.User{nil, &tc.u, {ID: "stranger"}} {
				for _, v := range r.ScoreItems(u, []string{"m1", "m2", "unknown"}, tc.ev.TS, nil) {
					if !rkFinite(v) {
						t.Fatalf("ScoreItems gave %v", v)
					}
				}
			}
		})
	}
	if got := r.ScoreItems(nil, nil, 0, make([]float64, 3)); len(got) != 0 {
		t.Fatalf("ScoreItems of no items = %v", got)
	}
	if r.Predict(nil) != 0 || r.Predict(&Example{}) != 0 {
		t.Fatal("Predict of an empty example is not 0")
	}
	r.Learn(nil)
	r.Learn(&Example{})
}

// TestRankerConcurrentScorers scores from several goroutines over a model
// that is not learning meanwhile (the serving pattern), under -race.
func TestRankerConcurrentScorers(t *testing.T) {
	evs, items := rkSynthetic(t, "synthetic:users=40,items=80,events=1500,seed=9")
	r := mustRanker(t, rkSmallConfig())
	s := newRKStream(t, items)
	rkTrain(t, r, s, evs)
	var ids []string
	r.ItemIDs(func(id string) bool { ids = append(ids, id); return true })
	var u features.User
	s.store.UserInto(evs[0].User, &u)
	want := r.ScoreItems(&u, ids, evs[len(evs)-1].TS, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := r.NewScorer()
			var dst []float64
			for range 20 {
				dst = sc.ScoreItems(&u, ids, evs[len(evs)-1].TS, dst)
				if !slices.Equal(dst, want) {
					errs <- "a concurrent scorer disagrees with ScoreItems"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// rkHitRates replays the synthetic stream test-then-train and, for sampled
// implicit events with a new (user, item) pair in the last fifth, ranks the
// true item among 99 random items the user has not interacted with, by the
// ranker and by decayed popularity. It returns both HR@10.
func rkHitRates(tb testing.TB, spec string, cfg RankerConfig, maxEval int) (ranker, pop float64, n int) {
	tb.Helper()
	evs, items := rkSynthetic(tb, spec)
	r := mustRanker(tb, cfg)
	s := newRKStream(tb, items)
	var all []string
	for _, it := range items {
		all = append(all, it.Item)
	}
	rnd := rand.New(rand.NewPCG(42, 1))
	start := len(evs) * 4 / 5
	stride := max(1, (len(evs)-start)/(maxEval*6))
	var hitR, hitP int
	cands := make([]string, 0, 100)
	var scores []float64
	var it features.Item
	hl := r.halfLife()
	for i := range evs {
		ev := &evs[i]
		ex := s.example(ev)
		if i >= start && (i-start)%stride == 0 && n < maxEval && ev.Kind == streamrec.Implicit &&
			!slices.Contains(ex.User.Recent, ev.Item) && ex.Item.Events > 0 {
			cands = append(cands[:0], ev.Item)
			for len(cands) < 100 {
				c := all[rnd.IntN(len(all))]
				if !slices.Contains(cands, c) && !slices.Contains(ex.User.Recent, c) {
					cands = append(cands, c)
				}
			}
			scores = r.ScoreItems(ex.User, cands, ev.TS, scores)
			rank := func(score func(k int) float64) int {
				above := 0
				for k := 1; k < len(cands); k++ {
					if score(k) >= score(0) { // ties count against the true item
						above++
					}
				}
				return above
			}
			if rank(func(k int) float64 { return scores[k] }) < 10 {
				hitR++
			}
			popOf := func(k int) float64 {
				s.store.ItemInto(cands[k], &it)
				return it.PopularityAt(ev.TS, hl)
			}
			if rank(popOf) < 10 {
				hitP++
			}
			n++
		}
		r.Learn(ex)
		s.apply(ev)
	}
	return float64(hitR) / float64(n), float64(hitP) / float64(n), n
}

// TestRankerBeatsPopularity checks that the ranker finds the planted taste
// clusters: its HR@10 (true item among 100 sampled) beats decayed
// popularity by at least rkPopMargin on 300 prequential events. The margin
// measured on generator seeds 1–4 (RANKER_SEEDS=4) was 0.097–0.133 (ranker
// 0.39–0.43, popularity 0.26–0.33), ≥ 3.2× the asserted 0.03 (on the
// larger users=500,items=800,events=60000 it was 0.11–0.14).
func TestRankerBeatsPopularity(t *testing.T) {
	if seeds, _ := strconv.Atoi(os.Getenv("RANKER_SEEDS")); seeds > 0 {
		cfg := rkSmallConfig()
		if s := os.Getenv("RANKER_CFG"); s != "" {
			if err := json.Unmarshal([]byte(s), &cfg); err != nil {
				t.Fatal(err)
			}
		}
		for seed := 1; seed <= seeds; seed++ {
			hr, pop, n := rkHitRates(t, rkPopSpec(seed), cfg, 300)
			t.Logf("seed %d: HR@10 over %d events: ranker %.3f, popularity %.3f, margin %.3f", seed, n, hr, pop, hr-pop)
		}
		return
	}
	hr, pop, n := rkHitRates(t, rkPopSpec(1), rkSmallConfig(), 300)
	t.Logf("HR@10 over %d events: ranker %.3f, popularity %.3f", n, hr, pop)
	if n < 200 {
		t.Fatalf("only %d evaluated events", n)
	}
	if hr < pop+rkPopMargin {
		t.Fatalf("ranker HR@10 %.3f does not beat popularity %.3f by %.2f", hr, pop, rkPopMargin)
	}
}

// rkPopMargin is the asserted HR@10 lead over popularity.
const rkPopMargin = 0.03

// rkPopSpec is the synthetic data set of TestRankerBeatsPopularity, small
// enough to run in seconds under -race.
func rkPopSpec(seed int) string {
	return "synthetic:users=200,items=300,events=15000,seed=" + strconv.Itoa(seed)
}

// TestRankerML100KRMSE holds the ranker to the product target on real data:
// prequential RMSE on MovieLens 100K in time order ≤ 0.935 (product.md §7;
// measured 0.9313 with the default seed, 0.9313–0.9318 over seeds 1–3).
// Under -race it replays only the first rkRacePrefix events, whose RMSE
// (measured 0.9517) must stay ≤ 0.960, to keep the test under 20 s.
func TestRankerML100KRMSE(t *testing.T) {
	d := rkLoadML100K(t)
	n, bound := 0, 0.935
	if rkRace {
		n, bound = rkRacePrefix, 0.960
	}
	rmse := rkPrequentialRMSE(t, mustRanker(t, DefaultRankerConfig()), d, n, 1, 5)
	t.Logf("prequential RMSE (first %d events, 0 = all): %.4f (bound %.3f)", n, rmse, bound)
	if !(rmse <= bound) {
		t.Fatalf("prequential RMSE %.4f > %.3f", rmse, bound)
	}
}

const rkRacePrefix = 20000

func TestRankerSelectTop(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{1, 2, 5, 50, 51, 300} {
		for _, k := range []int{1, 2, n / 2, n - 1, n} {
			if k < 1 || k > n {
				continue
			}
			key := make([]float64, n)
			order := make([]int32, n)
			for i := range key {
				key[i] = float64(rnd.IntN(20)) // many ties
				order[i] = int32(i)
			}
			rkSelectTop(order, key, k)
			want := slices.Clone(order)
			slices.SortFunc(want, func(a, b int32) int {
				if key[a] != key[b] {
					if key[a] > key[b] {
						return -1
					}
					return 1
				}
				return int(a - b)
			})
			got := slices.Clone(order[:k])
			slices.Sort(got)
			top := slices.Clone(want[:k])
			slices.Sort(top)
			if !slices.Equal(got, top) {
				t.Fatalf("n=%d k=%d: top set %v, want %v", n, k, got, top)
			}
		}
	}
}

// TestRankerCascade checks that with RerankTop the best candidates by the
// cheap score are scored by the full network, exactly as without the
// cascade, and that every other candidate ranks below them.
func TestRankerCascade(t *testing.T) {
	evs, items := rkSynthetic(t, "synthetic:users=40,items=120,events=3000,seed=4")
	cfg := rkSmallConfig()
	cfg.RerankTop = 0
	r := mustRanker(t, cfg)
	s := newRKStream(t, items)
	rkTrain(t, r, s, evs)
	var ids []string
	r.ItemIDs(func(id string) bool { ids = append(ids, id); return true })
	ids = append(ids, "never-seen")
	var u features.User
	s.store.UserInto(evs[len(evs)-1].User, &u)
	ts := evs[len(evs)-1].TS
	fullScores := r.ScoreItems(&u, ids, ts, nil)
	r.cfg.RerankTop = 10
	casc := r.ScoreItems(&u, ids, ts, nil)
	var fullIdx, restMax, fullMin = 0, math.Inf(-1), math.Inf(1)
	for k := range ids {
		if casc[k] == fullScores[k] {
			fullIdx++
			fullMin = math.Min(fullMin, casc[k])
		} else {
			restMax = math.Max(restMax, casc[k])
		}
	}
	if fullIdx != 10 {
		t.Fatalf("%d candidates got the full score, want 10", fullIdx)
	}
	if !(restMax < fullMin) {
		t.Fatalf("a cheaply scored candidate (%g) ranks above a fully scored one (%g)", restMax, fullMin)
	}
}
