package learner

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest/dataset"
)

// rkDataDir returns DIR/sub for the shared data folder ($STREAMREC_TEST_DATA or
// ../shared/data beside the repository), skipping the test when it is
// absent outside CI and failing in CI.
func rkDataDir(tb testing.TB, sub string) string {
	tb.Helper()
	if dir := dataset.SharedDataDir(); dir != "" {
		p := filepath.Join(dir, sub)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("data set %s not found (set STREAMREC_TEST_DATA or put shared/data beside the repository)", sub)
	}
	tb.Skipf("data set %s not found", sub)
	return ""
}

// rkLoad loads a data spec with the production loader.
func rkLoad(tb testing.TB, spec string) *dataset.Data {
	tb.Helper()
	d, err := dataset.Load(context.Background(), spec, dataset.Options{})
	if err != nil {
		tb.Fatalf("load %s: %v", spec, err)
	}
	return d
}

// rkLoadML100K loads MovieLens 100K in time order (stable for ties).
func rkLoadML100K(tb testing.TB) *dataset.Data {
	tb.Helper()
	return rkLoad(tb, "movielens:"+rkDataDir(tb, "ml-100k"))
}

// rkStream feeds a data set through the in-memory feature store the way the
// learner does: for each event, fn gets the features as they were just
// before it, and only afterwards the event is applied to the store.
type rkStream struct {
	store *features.Memory
	user  features.User
	item  features.Item
	glob  features.Global
	ex    Example
}

func newRKStream(tb testing.TB, items []streamrec.ItemMeta) *rkStream {
	tb.Helper()
	m, err := features.NewMemory(features.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.PutItems(context.Background(), items); err != nil {
		tb.Fatal(err)
	}
	return &rkStream{store: m}
}

// example fills the point-in-time example for ev (valid until the next call).
func (s *rkStream) example(ev *streamrec.Event) *Example {
	s.store.UserInto(ev.User, &s.user)
	s.store.ItemInto(ev.Item, &s.item)
	s.glob = s.store.GlobalNow()
	s.ex = Example{Event: ev, User: &s.user, Item: &s.item, Global: &s.glob}
	return &s.ex
}

func (s *rkStream) apply(ev *streamrec.Event) { s.store.ApplyEvent(ev) }

// rkPrequentialRMSE runs the prequential protocol over the first n events
// (all when n <= 0): predict (clipped to [lo, hi]) each explicit event, then
// learn, then update the features. It returns the RMSE.
func rkPrequentialRMSE(tb testing.TB, m Model, d *dataset.Data, n int, lo, hi float64) float64 {
	tb.Helper()
	evs := d.Events
	if n > 0 && n < len(evs) {
		evs = evs[:n]
	}
	s := newRKStream(tb, d.Items)
	var se float64
	cnt := 0
	for i := range evs {
		ev := &evs[i]
		ex := s.example(ev)
		if ev.Kind == streamrec.Explicit {
			p := math.Max(lo, math.Min(hi, m.Predict(ex)))
			se += (p - ev.Value) * (p - ev.Value)
			cnt++
		}
		m.Learn(ex)
		s.apply(ev)
	}
	return math.Sqrt(se / float64(cnt))
}

// rkFrozenExamples precomputes the point-in-time examples of evs (recent
// lists cut to keep) so that benchmarks measure the ranker alone.
func rkFrozenExamples(tb testing.TB, d *dataset.Data, keep int) []Example {
	s := newRKStream(tb, d.Items)
	out := make([]Example, len(d.Events))
	for i := range d.Events {
		ev := &d.Events[i]
		ex := s.example(ev)
		u, it, g := *ex.User, *ex.Item, *ex.Global
		u.Recent = append([]string(nil), u.Recent[:min(keep, len(u.Recent))]...)
		it.Categories = append([]string(nil), it.Categories...)
		out[i] = Example{Event: ev, User: &u, Item: &it, Global: &g}
		s.apply(ev)
	}
	return out
}

// TestRankerDevML100K is a development hook, skipped unless RANKER_DEV is
// set: it runs the prequential protocol on ML-100K with RANKER_CFG (JSON
// over the defaults), over RANKER_SEEDS seeds when set.
func TestRankerDevML100K(t *testing.T) {
	if os.Getenv("RANKER_DEV") == "" {
		t.Skip("set RANKER_DEV=1 to run")
	}
	d := rkLoadML100K(t)
	cfg := DefaultRankerConfig()
	if s := os.Getenv("RANKER_CFG"); s != "" {
		if err := json.Unmarshal([]byte(s), &cfg); err != nil {
			t.Fatal(err)
		}
	}
	seeds, _ := strconv.Atoi(os.Getenv("RANKER_SEEDS"))
	seeds = max(seeds, 1)
	var sum float64
	var all []string
	start := time.Now()
	for seed := 1; seed <= seeds; seed++ {
		c := cfg
		if seeds > 1 {
			c.Seed = uint64(seed)
		}
		r, err := NewRanker(c)
		if err != nil {
			t.Fatal(err)
		}
		v := rkPrequentialRMSE(t, r, d, 0, 1, 5)
		sum += v
		all = append(all, strconv.FormatFloat(v, 'f', 4, 64))
	}
	t.Logf("mean rmse %.4f over %d seeds %v; %.0f events/s", sum/float64(seeds), seeds, all,
		float64(seeds*len(d.Events))/time.Since(start).Seconds())
}
