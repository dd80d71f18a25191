package learner

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// benchEvents is MovieLens 100K in time order, or the synthetic generator's
// 100,000 events when the data is absent.
func benchEvents(b *testing.B) ([]streamrec.Event, string) {
	b.Helper()
	if _, err := os.Stat(filepath.Join(dataDir(), "ml-100k", "u.data")); err == nil {
		return loadML100K(b), "ml-100k"
	}
	d := synthetic(b, 1000, 2000, 100000)
	return d.Events, "synthetic"
}

// cpuTimer measures the process's CPU time, so rates can be reported per
// CPU-second as well as per wall second (our machines are shared: under load
// the wall rate understates the code's speed).
type cpuTimer struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuTimer { return cpuTimer{cpuNow()} }

// reportRate reports events per wall second and per CPU second.
func reportRate(b *testing.B, c cpuTimer) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu := cpuNow() - c.start; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	}
}

// BenchmarkMFLearnPredict: one op is one event predicted then learned
// (the model alone, single worker).
func BenchmarkMFLearnPredict(b *testing.B) {
	evs, _ := benchEvents(b)
	cfg := DefaultConfig()
	m := NewMF(cfg.MF, cfg.Seed)
	u, it, g := &features.User{}, &features.Item{}, &features.Global{}
	ex := Example{User: u, Item: it, Global: g}
	var sink float64
	b.ReportAllocs()
	b.ResetTimer()
	c := startCPU()
	for i := 0; i < b.N; i++ {
		ex.Event = &evs[i%len(evs)]
		sink += m.Predict(&ex)
		m.Learn(&ex)
	}
	reportRate(b, c)
	_ = sink
}

// benchTrainer runs the full point-in-time loop (feature reads, predict,
// learn, feature write) over the data set, repeating it with fresh
// trainers; HR@10 is evaluated on every hrEvery-th eligible event.
func benchTrainer(b *testing.B, model string, hrEvery int) {
	evs, _ := benchEvents(b)
	cfg := DefaultConfig()
	cfg.HREvery = hrEvery
	b.ReportAllocs()
	b.ResetTimer()
	c := startCPU()
	var tr *Trainer
	for i := 0; i < b.N; i++ {
		if i%len(evs) == 0 {
			tr = newTestTrainer(b, cfg, model) // counted: a fresh trainer is part of a replay
		}
		tr.Process(&evs[i%len(evs)])
	}
	reportRate(b, c)
}

func BenchmarkTrainerMF(b *testing.B)         { benchTrainer(b, "mf", 1<<30) }
func BenchmarkTrainerMFHR(b *testing.B)       { benchTrainer(b, "mf", 1) }
func BenchmarkTrainerTwoStage(b *testing.B)   { benchTrainer(b, "twostage", 1<<30) }
func BenchmarkTrainerTwoStageHR(b *testing.B) { benchTrainer(b, "twostage", 10) }

// BenchmarkTwoStageLearnPredict: the two-stage model alone (MF, item-kNN,
// popularity and the ranker), with the point-in-time features precomputed
// outside the timer.
func BenchmarkTwoStageLearnPredict(b *testing.B) {
	evs, _ := benchEvents(b)
	n := min(len(evs), 20000)
	cfg := DefaultConfig()
	// Precompute examples with features through a trainer that learns nothing.
	tr := newTestTrainer(b, cfg, "mean")
	exs := make([]Example, n)
	users := make([]features.User, n)
	items := make([]features.Item, n)
	globals := make([]features.Global, n)
	for i := range n {
		st := tr.Store()
		st.UserFeaturesInto(evs[i].User, &users[i], max(cfg.KNN.Window, cfg.TwoStage.Recent, cfg.Ranker.HistoryLen))
		st.ItemInto(evs[i].Item, &items[i])
		globals[i] = st.GlobalNow()
		exs[i] = Example{Event: &evs[i], User: &users[i], Item: &items[i], Global: &globals[i]}
		tr.Process(&evs[i])
	}
	m, _ := New("twostage", cfg)
	var sink float64
	b.ReportAllocs()
	b.ResetTimer()
	c := startCPU()
	for i := 0; i < b.N; i++ {
		if i%n == 0 && i > 0 {
			m, _ = New("twostage", cfg)
		}
		ex := &exs[i%n]
		sink += m.Predict(ex)
		m.Learn(ex)
	}
	reportRate(b, c)
	_ = sink
}

// BenchmarkMFMemory measures MF's heap per user and per item: one op adds
// 10,000 new users (each with one rating of a known item) and then 10,000
// new items, and reports the heap growth divided by the count, next to the
// figure from the data layout.
func BenchmarkMFMemory(b *testing.B) {
	cfg := DefaultConfig()
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "id-" + strconv.Itoa(i) // the ids' bytes are the caller's, not MF's
	}
	var perUser, perItem float64
	for i := 0; i < b.N; i++ {
		m := NewMF(cfg.MF, 1)
		m.Learn(ex(streamrec.Explicit, "seed-user", "seed-item", 3, 0, nil))
		m.Learn(ex(streamrec.Explicit, "seed-user", "seed-item", 3, 0, nil))
		e := ex(streamrec.Explicit, "", "seed-item", 4, 0, nil)
		h0 := heap()
		for _, id := range ids {
			e.Event.User = id
			m.Learn(e)
		}
		h1 := heap()
		e.Event.User = "seed-user"
		for _, id := range ids {
			e.Event.Item = id
			m.Learn(e)
		}
		h2 := heap()
		perUser += float64(h1-h0) / n
		perItem += float64(h2-h1) / n
		runtime.KeepAlive(m)
	}
	d := cfg.MF.Dims
	b.ReportMetric(perUser/float64(b.N), "heap-B/user")
	b.ReportMetric(perItem/float64(b.N), "heap-B/item")
	// Layout: factors + AdaGrad accumulators (2·d float32), bias + its
	// accumulator (2 float32), the dirty flag (1 byte), the id's string
	// header in names (16 B) and its map entry (~ 16 B key + 4 B value +
	// overhead, about 40 B amortised). Items carry a second bias pair and a
	// category slot (24 B slice header) instead of the dirty flag.
	b.ReportMetric(float64(8*d+8+1+16+40), "layout-B/user")
	b.ReportMetric(float64(8*d+16+24+16+40), "layout-B/item")
}

func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSnapshotRecommend: the serving path, top 10 for a known user from
// a decoded snapshot of the production model.
func BenchmarkSnapshotRecommend(b *testing.B) {
	evs, name := benchEvents(b)
	cfg := DefaultConfig()
	tr := newTestTrainer(b, cfg, "twostage")
	for i := range evs {
		tr.Process(&evs[i])
	}
	blob, _, err := tr.Snapshot(1, nil, fixedNow())
	if err != nil {
		b.Fatal(err)
	}
	s, err := DecodeSnapshot(blob)
	if err != nil {
		b.Fatal(err)
	}
	var u features.User
	tr.Store().UserInto(evs[0].User, &u)
	q := &Query{User: &u, TS: evs[len(evs)-1].TS}
	dst := make([]streamrec.Scored, 0, 10)
	b.ReportMetric(float64(len(blob)), "snapshot-B")
	b.Logf("%s: snapshot %d bytes, %d items", name, len(blob), s.Items())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst = s.Recommend(q, 10, dst[:0])
	}
}
