package replay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/learner/replay"
)

// fakeMean predicts the running mean of explicit values (0 before any).
type fakeMean struct {
	n   int64
	sum float64
}

func (m *fakeMean) Name() string { return "mean" }
func (m *fakeMean) Predict(ex *learner.Example) float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}
func (m *fakeMean) Learn(ex *learner.Example) {
	if ex.Event.Kind == streamrec.Explicit {
		m.n++
		m.sum += ex.Event.Value
	}
}
func (m *fakeMean) MarshalBinary() ([]byte, error) {
	return json.Marshal([]float64{float64(m.n), m.sum})
}
func (m *fakeMean) UnmarshalBinary(b []byte) error {
	var v []float64
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 2 {
		return fmt.Errorf("fakeMean: bad snapshot")
	}
	m.n, m.sum = int64(v[0]), v[1]
	return nil
}

// fakePop ranks items by their event count as the feature store sees them
// when they were last learned from (ties by id).
type fakePop struct{ count map[string]int }

func (p *fakePop) Name() string                        { return "pop" }
func (p *fakePop) Predict(ex *learner.Example) float64 { return float64(p.count[ex.Event.Item]) }
func (p *fakePop) Learn(ex *learner.Example)           { p.count[ex.Event.Item]++ }
func (p *fakePop) MarshalBinary() ([]byte, error)      { return json.Marshal(p.count) }
func (p *fakePop) UnmarshalBinary(b []byte) error      { return json.Unmarshal(b, &p.count) }
func (p *fakePop) Recommend(q *learner.Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	var all []streamrec.Scored
	for it, c := range p.count {
		if q.Exclude != nil && q.Exclude(it) {
			continue
		}
		all = append(all, streamrec.Scored{Item: it, Score: float64(c)})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Score != all[j].Score {
			return all[i].Score > all[j].Score
		}
		return all[i].Item < all[j].Item
	})
	if len(all) > k {
		all = all[:k]
	}
	return append(dst, all...)
}

func fakeFactory() replay.Factory {
	return replay.Factory{
		Model: func(name string) (learner.Model, error) {
			switch name {
			case "mean":
				return &fakeMean{}, nil
			case "pop":
				return &fakePop{count: map[string]int{}}, nil
			}
			return nil, fmt.Errorf("unknown model %q", name)
		},
		Store: func() (replay.Store, error) {
			cfg := features.DefaultConfig()
			cfg.Now = func() time.Time { return time.Unix(1e9, 0) }
			return features.NewMemory(cfg)
		},
	}
}

func ev(i int, user, item string, kind streamrec.Kind, value float64, ts int64) streamrec.Event {
	e := streamrec.Event{Type: "rating", Kind: kind, Weight: 1, User: user, Item: item, Value: value, TS: ts,
		Pos: streamrec.Position{Topic: "replay", Offset: int64(i)}}
	if kind == streamrec.Implicit {
		e.Type, e.Value = "view", 0
	}
	return e
}

// smallLog is a deterministic mixed log of n events over a few users/items.
func smallLog(n int) []streamrec.Event {
	out := make([]streamrec.Event, n)
	for i := range out {
		u := fmt.Sprint("u", (i*7)%13)
		it := fmt.Sprint("i", (i*7)%211) // (user, item) pairs are unique below 2,743 events
		kind := streamrec.Explicit
		if i%3 == 0 {
			kind = streamrec.Implicit
		}
		out[i] = ev(i, u, it, kind, float64(1+(i*5)%5), int64(1000+i*1000))
	}
	return out
}

func TestPrequentialMeanMatchesDirect(t *testing.T) {
	events := smallLog(300)
	cfg := replay.DefaultConfig()
	cfg.Models = []string{"mean"}
	rep, err := replay.Run(context.Background(), "small", events, nil, cfg, fakeFactory())
	if err != nil {
		t.Fatal(err)
	}
	// Direct: predict the mean of earlier explicit values, 0 before any,
	// clipped to [0.5, 5].
	var n, sum, sq, ab float64
	for _, e := range events {
		if e.Kind != streamrec.Explicit {
			continue
		}
		p := 0.0
		if n > 0 {
			p = sum / n
		}
		p = math.Min(math.Max(p, 0.5), 5)
		sq += (p - e.Value) * (p - e.Value)
		ab += math.Abs(p - e.Value)
		n++
		sum += e.Value
	}
	r := rep.Results[0]
	if math.Abs(r.RMSE-math.Sqrt(sq/n)) > 1e-12 || math.Abs(r.MAE-ab/n) > 1e-12 {
		t.Fatalf("RMSE %v MAE %v, direct %v %v", r.RMSE, r.MAE, math.Sqrt(sq/n), ab/n)
	}
	if r.Evaluated != int64(n) || !math.IsNaN(r.HR) {
		t.Fatalf("evaluated %d (want %v), HR %v (mean cannot rank)", r.Evaluated, n, r.HR)
	}
}

func TestPrequentialRanking(t *testing.T) {
	// u1 views a,b,c; u2 views a (eligible: a seen before, rank of a by pop
	// excluding nothing = 1), then b (rank: a excluded; b and c have 1 each,
	// b first by id), then d (never seen: not eligible); u2 rates c 2 (not
	// positive) and then u1 views a again (not a new pair).
	events := []streamrec.Event{
		ev(0, "u1", "a", streamrec.Implicit, 0, 1000),
		ev(1, "u1", "b", streamrec.Implicit, 0, 2000),
		ev(2, "u1", "c", streamrec.Implicit, 0, 3000),
		ev(3, "u2", "a", streamrec.Implicit, 0, 4000),
		ev(4, "u2", "c", streamrec.Implicit, 0, 5000),
		ev(5, "u2", "d", streamrec.Implicit, 0, 6000),
		ev(6, "u3", "b", streamrec.Explicit, 2, 7000),
		ev(7, "u1", "a", streamrec.Implicit, 0, 8000),
	}
	cfg := replay.DefaultConfig()
	cfg.Models = []string{"pop"}
	cfg.K = 1
	rep, err := replay.Run(context.Background(), "tiny", events, nil, cfg, fakeFactory())
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	// Eligible: e3 (u2, a) and e4 (u2, c); e1, e2, e5 are items never seen
	// before, e6 is not positive, e7 is not a new pair.
	//  e3: counts a1 b1 c1, nothing excluded → [a] → hit at rank 1.
	//  e4: counts a2 b1 c1, a excluded → [b] (b, c tie; b first) → miss.
	if r.Detail.Ranked != 2 || math.Abs(r.HR-0.5) > 1e-12 || math.Abs(r.MRR-0.5) > 1e-12 {
		t.Fatalf("ranked %d HR %v MRR %v, want 2 queries, HR 0.5, MRR 0.5", r.Detail.Ranked, r.HR, r.MRR)
	}
	// pop is rank-only: its rating is not scored for RMSE.
	if r.Detail.Rated != 0 || r.Evaluated != 2 || !math.IsNaN(r.RMSE) {
		t.Fatalf("rated %d evaluated %d RMSE %v, want 0, 2 and none", r.Detail.Rated, r.Evaluated, r.RMSE)
	}
}

// stripTiming drops the timing fields the determinism check ignores.
func stripTiming(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JSON %s: %v", b, err)
	}
	for _, r := range m["results"].([]any) {
		delete(r.(map[string]any), "events_per_sec")
		delete(r.(map[string]any), "seconds")
	}
	return m
}

func TestDeterministicJSON(t *testing.T) {
	events := smallLog(1200)
	for _, proto := range replay.Protocols {
		t.Run(proto, func(t *testing.T) {
			cfg := replay.DefaultConfig()
			cfg.Protocol = proto
			cfg.Models = []string{"mean", "pop"}
			var outs []map[string]any
			for i := 0; i < 2; i++ {
				rep, err := replay.Run(context.Background(), "small", events, nil, cfg, fakeFactory())
				if err != nil {
					t.Fatal(err)
				}
				b, err := json.Marshal(rep)
				if err != nil {
					t.Fatal(err)
				}
				outs = append(outs, stripTiming(t, b))
			}
			if !reflect.DeepEqual(outs[0], outs[1]) {
				t.Fatalf("two runs differ:\n%v\n%v", outs[0], outs[1])
			}
		})
	}
}

func TestJSONFields(t *testing.T) {
	events := smallLog(1000)
	want := map[string][]string{
		replay.Prequential: {"model", "rmse", "mae", "hr@5", "ndcg@5", "mrr@5", "evaluated", "events_per_sec", "seconds"},
		replay.TimeSplit:   {"model", "mae", "rmse_frozen", "rmse_online", "evaluated", "events_per_sec", "seconds"},
		replay.KFold:       {"model", "rmse", "mae", "ndcg@5", "p@5", "r@5", "evaluated", "events_per_sec", "seconds"},
	}
	for proto, fields := range want {
		cfg := replay.DefaultConfig()
		cfg.Protocol, cfg.Models, cfg.K = proto, []string{"pop"}, 5
		cfg.RankOnly = nil // the fake pop predicts counts: treat them as values here
		rep, err := replay.Run(context.Background(), "small", events, nil, cfg, fakeFactory())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rep)
		var top map[string]json.RawMessage
		if err := json.Unmarshal(b, &top); err != nil {
			t.Fatal(err)
		}
		keys := func(m map[string]json.RawMessage) []string {
			var ks []string
			for k := range m {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			return ks
		}
		if got := keys(top); !reflect.DeepEqual(got, []string{"dataset", "events", "k", "protocol", "results"}) {
			t.Fatalf("%s: top-level keys %v", proto, got)
		}
		var results []map[string]json.RawMessage
		_ = json.Unmarshal(top["results"], &results)
		sort.Strings(fields)
		if got := keys(results[0]); !reflect.DeepEqual(got, fields) {
			t.Fatalf("%s: result keys %v, want %v", proto, got, fields)
		}
	}
}

func TestFoldOf(t *testing.T) {
	a, b := replay.FoldOf(1003, 5, 42), replay.FoldOf(1003, 5, 42)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different folds")
	}
	if reflect.DeepEqual(a, replay.FoldOf(1003, 5, 43)) {
		t.Fatal("different seeds, same folds")
	}
	sizes := make([]int, 5)
	for _, f := range a {
		sizes[f]++
	}
	for _, s := range sizes {
		if s != 200 && s != 201 {
			t.Fatalf("fold sizes %v", sizes)
		}
	}
}

// sharedData returns the shared data folder, skipping when it is absent
// outside CI.
func sharedData(t *testing.T) string {
	t.Helper()
	dir := dataset.SharedDataDir()
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("shared data (../shared/data or $STREAMREC_TEST_DATA) is missing in CI")
		}
		t.Skip("shared data not found")
	}
	return dir
}

func TestTimeSplitMovieLens100K(t *testing.T) {
	dir := sharedData(t)
	d, err := dataset.Load(context.Background(), "movielens:"+filepath.Join(dir, "ml-100k"), dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp := replay.SplitTime(d.Events)
	if sp.Train != 65336 || sp.Val != 15778 || sp.Test != 18886 {
		t.Fatalf("split %d / %d / %d, want 65,336 / 15,778 / 18,886", sp.Train, sp.Val, sp.Test)
	}
	cfg := replay.DefaultConfig()
	cfg.Protocol, cfg.Models = replay.TimeSplit, []string{"mean"}
	rep, err := replay.Run(context.Background(), d.Name, d.Events, d.Items, cfg, fakeFactory())
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !reflect.DeepEqual(rep.Settings.Splits, []int{65336, 15778, 18886}) || r.Evaluated != 18886 ||
		r.Detail.Val.Rated != 15778 || r.Detail.Test.Rated != 18886 {
		t.Fatalf("splits %v, evaluated %d, validation %d", rep.Settings.Splits, r.Evaluated, r.Detail.Val.Rated)
	}
	// The frozen mean is the training mean; learning on can only move it.
	if math.IsNaN(r.RMSEFrozen) || math.IsNaN(r.RMSEOnline) || r.RMSEFrozen == r.RMSEOnline {
		t.Fatalf("frozen %v online %v", r.RMSEFrozen, r.RMSEOnline)
	}
}

// BenchmarkPrequentialHarness measures the replay loop itself (feature
// reads, store writes, bookkeeping) with the cheapest model.
func BenchmarkPrequentialHarness(b *testing.B) {
	events := smallLog(2500)
	cfg := replay.DefaultConfig()
	cfg.Models, cfg.EvalEvery, cfg.MaxRecent = []string{"mean"}, 0, 50
	f := fakeFactory()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := replay.Run(context.Background(), "small", events, nil, cfg, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
