package serve

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
)

// BenchmarkRecommendML measures one recommendation request in-process
// (no network, in-memory feature store) over a two-stage snapshot trained
// on MovieLens latest-small: the CPU cost per request that bounds peak
// req/s, and the server's allocations beside the model's.
//
//	go test -run '^$' -bench BenchmarkRecommendML -benchmem ./serve
func BenchmarkRecommendML(b *testing.B) {
	dir := mlLatestSmall(b)
	ctx := context.Background()
	d, err := dataset.Load(ctx, "movielens:"+dir, dataset.Options{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := features.NewMemory(features.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	loadStore(b, store, d)
	lc := learner.DefaultConfig()
	lc.HREvery = 1 << 30
	// SERVE_BENCH_CANDIDATES=MF,COOC,POP overrides the two-stage candidate
	// counts, to see what the model's per-request cost depends on.
	if v := os.Getenv("SERVE_BENCH_CANDIDATES"); v != "" {
		if _, err := fmt.Sscanf(v, "%d,%d,%d", &lc.TwoStage.MFCandidates, &lc.TwoStage.CoocCandidates, &lc.TwoStage.PopCandidates); err != nil {
			b.Fatalf("SERVE_BENCH_CANDIDATES=%q: want MF,COOC,POP", v)
		}
	}
	b.Logf("two-stage candidates: MF %d, co-occurrence %d, popularity %d", lc.TwoStage.MFCandidates, lc.TwoStage.CoocCandidates, lc.TwoStage.PopCandidates)
	blob, _ := trainTwoStageSnapshot(ctx, b, lc, d, store)
	cfg := DefaultConfig()
	cfg.CacheTTL = 0 // every request runs the model
	srv, err := New(cfg, Deps{Features: store, Snapshots: &fakeSnapshots{}, Registry: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Load(1, blob); err != nil {
		b.Fatal(err)
	}
	snap, err := learner.DecodeSnapshot(blob)
	if err != nil {
		b.Fatal(err)
	}
	user := d.Events[len(d.Events)/2].User
	h := srv.Handler()
	for _, tc := range []struct{ name, path string }{
		{"known-user", "/v1/users/" + user + "/recommendations?n=10"},
		{"unknown-user", "/v1/users/nobody/recommendations?n=10"},
		{"popular", "/v1/popular?n=10"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", tc.path, nil)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
	// CPU time per request (immune to other processes on a shared machine).
	for _, path := range []string{"/v1/users/" + user + "/recommendations?n=10", "/v1/users/nobody/recommendations?n=10"} {
		req, _ := http.NewRequest("GET", path, nil)
		w := &discard{h: http.Header{}}
		c0 := cpuTime()
		const n = 300
		for i := 0; i < n; i++ {
			h.ServeHTTP(w, req)
		}
		b.Logf("%s: %.3f ms CPU per request (process CPU time over %d requests)", path, float64(cpuTime()-c0)/1e6/n, n)
	}
	b.Run("snapshot.Recommend-only", func(b *testing.B) {
		u, seen, _, _ := store.UserSeen(ctx, user)
		ex := map[string]struct{}{}
		for _, s := range seen {
			ex[s] = struct{}{}
		}
		q := &learner.Query{User: &u, TS: time.Now().UnixMilli(), Exclude: func(s string) bool { _, ok := ex[s]; return ok }}
		b.ReportAllocs()
		for b.Loop() {
			snap.Recommend(q, 10, nil)
		}
	})
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSnapshotDecode measures what every snapshot swap costs a server:
// verifying and decoding the two-stage snapshot of MovieLens latest-small,
// serving indexes included.
//
//	go test -run '^$' -bench BenchmarkSnapshotDecode -benchtime 5x ./serve
func BenchmarkSnapshotDecode(b *testing.B) {
	d, err := dataset.Load(context.Background(), "movielens:"+mlLatestSmall(b), dataset.Options{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := features.NewMemory(features.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	lc := learner.DefaultConfig()
	lc.HREvery = 1 << 30
	blob, _ := trainTwoStageSnapshot(context.Background(), b, lc, d, store)
	b.SetBytes(int64(len(blob)))
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := learner.DecodeSnapshot(blob); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/1e6/float64(b.N), "cpu-ms/op")
}
