package learner

import (
	"encoding/json"
	"math"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// rkCPUTime is the process's user+system CPU time in ns: on a shared,
// oversubscribed machine it is a steadier cost measure than wall time.
func rkCPUTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkRankerPredictLearn measures one Predict plus one Learn on ML-100K
// examples in time order (features precomputed), i.e. the ranker's share of
// a prequential replay.
func BenchmarkRankerPredictLearn(b *testing.B) {
	d := rkLoadML100K(b)
	cfg := DefaultRankerConfig()
	if s := os.Getenv("RANKER_CFG"); s != "" { // development: compare configurations
		if err := json.Unmarshal([]byte(s), &cfg); err != nil {
			b.Fatal(err)
		}
	}
	exs := rkFrozenExamples(b, d, cfg.HistoryLen)
	r, err := NewRanker(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// One warm pass so every user and item exists (no growth allocations).
	for i := range exs {
		r.Learn(&exs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), rkCPUTime()
	sink := 0.0
	for i := 0; i < b.N; i++ {
		ex := &exs[i%len(exs)]
		sink += r.Predict(ex)
		r.Learn(ex)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(rkCPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if math.IsNaN(sink) {
		b.Fatal("NaN prediction")
	}
}

// BenchmarkPrequentialML100K runs the whole prequential protocol on
// MovieLens 100K in time order (predict clipped to [1,5], then learn, then
// update the point-in-time features) and reports the RMSE and the
// throughput of the whole loop (feature upkeep included).
func BenchmarkPrequentialML100K(b *testing.B) {
	d := rkLoadML100K(b)
	var rmse float64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r, err := NewRanker(DefaultRankerConfig())
		if err != nil {
			b.Fatal(err)
		}
		rmse = rkPrequentialRMSE(b, r, d, 0, 1, 5)
	}
	b.ReportMetric(rmse, "rmse")
	b.ReportMetric(float64(b.N*len(d.Events))/time.Since(start).Seconds(), "events/s")
}

// BenchmarkRankerScoreItems measures serving-side ranking: one op scores 300
// candidates for one user (ScoreItems with the item table the ranker keeps).
func BenchmarkRankerScoreItems(b *testing.B) {
	d := rkLoadML100K(b)
	cfg := DefaultRankerConfig()
	exs := rkFrozenExamples(b, d, cfg.HistoryLen)
	r, err := NewRanker(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for i := range exs {
		r.Learn(&exs[i])
	}
	var cands []string
	r.ItemIDs(func(id string) bool { cands = append(cands, id); return len(cands) < 300 })
	dst := make([]float64, 0, len(cands))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := rkCPUTime()
	for i := 0; i < b.N; i++ {
		ex := &exs[(i*7919)%len(exs)]
		dst = r.ScoreItems(ex.User, cands, ex.Event.TS, dst)
	}
	b.ReportMetric(float64(rkCPUTime()-cpu0)/float64(b.N*len(cands)), "cpu-ns/candidate")
}

// BenchmarkRankerMemory measures the ranker's heap per new user and per new
// item (embeddings, biases, optimiser state, caches and index entries; the
// id strings belong to the caller).
func BenchmarkRankerMemory(b *testing.B) {
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "id-" + strconv.Itoa(i)
	}
	heapNow := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perUser, perItem float64
	for i := 0; i < b.N; i++ {
		r, err := NewRanker(DefaultRankerConfig())
		if err != nil {
			b.Fatal(err)
		}
		ev := &streamrec.Event{Kind: streamrec.Explicit, Weight: 1, User: "seed-user", Item: "seed-item", Value: 4, TS: 1e12}
		ex := &Example{Event: ev, User: &features.User{ID: "seed-user"},
			Item: &features.Item{ID: "seed-item", Categories: []string{"Drama", "Comedy"}}, Global: &features.Global{}}
		r.Learn(ex)
		h0 := heapNow()
		for _, id := range ids {
			ev.User = id
			r.Learn(ex)
		}
		h1 := heapNow()
		ev.User = "seed-user"
		for _, id := range ids {
			ev.Item = id
			r.Learn(ex)
		}
		h2 := heapNow()
		perUser += float64(h1-h0) / n
		perItem += float64(h2-h1) / n
		runtime.KeepAlive(r)
	}
	b.ReportMetric(perUser/float64(b.N), "heap-B/user")
	b.ReportMetric(perItem/float64(b.N), "heap-B/item")
}
