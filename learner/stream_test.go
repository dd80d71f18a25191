package learner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/twmb/franz-go/pkg/kfake"
)

func startKfake(tb testing.TB) string {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, streamrec.TopicEvents))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func produceEvents(tb testing.TB, addr string, evs []streamrec.Event) {
	tb.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: streamrec.TopicEvents, Balancer: &kafka.Hash{},
		BatchSize: 500, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, len(evs))
	for i := range evs {
		msgs[i] = kafka.Message{Key: []byte(evs[i].User), Value: streamrec.AppendJSON(nil, &evs[i])}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		tb.Fatal(err)
	}
}

// crashingStore fails every Publish after the first once crashed is set:
// the learner is "killed" right after its first snapshot, and the events it
// trains on afterwards are lost with it.
type crashingStore struct {
	*MemorySnapshots
	crashed   atomic.Bool
	published atomic.Int64
}

func (c *crashingStore) Publish(ctx context.Context, info SnapshotInfo, blob []byte) error {
	if c.crashed.Load() && c.published.Load() > 0 {
		return errors.New("killed")
	}
	c.published.Add(1)
	return c.MemorySnapshots.Publish(ctx, info, blob)
}

func streamConfig(addr string) StreamConfig {
	cfg := DefaultStreamConfig()
	cfg.Brokers = []string{addr}
	cfg.ItemsTopic = ""
	cfg.SnapshotInterval = time.Hour
	cfg.SnapshotEvents = 250
	cfg.Models = []string{"mf", "pop"}
	cfg.Learner.GuardrailMargin = 1e3 // this test is about offsets, not quality
	return cfg
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamLearnerKillAndResume(t *testing.T) {
	addr := startKfake(t)
	d := synthetic(t, 100, 200, 3000)
	half := len(d.Events)/2 + 77 // not a multiple of the snapshot interval
	produceEvents(t, addr, d.Events[:half])
	n := int64(len(d.Events))
	store := &crashingStore{MemorySnapshots: NewMemorySnapshots(5)}
	store.crashed.Store(true)

	// First learner: killed (its publishes fail from then on) mid-stream.
	a, err := NewStreamLearner(streamConfig(addr), nil, store, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	waitFor(t, "first learner to train on the first half", func() bool { return a.Status().Events == int64(half) })
	cancel() // killed: no snapshot after the first
	wg.Wait()
	produceEvents(t, addr, d.Events[half:])
	_, blob, err := store.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	resumeAt := snap.Info().EventsTrained
	if resumeAt == 0 || resumeAt >= int64(half) {
		t.Fatalf("last good snapshot covers %d events; want some but fewer than %d", resumeAt, half)
	}
	var sum int64
	for _, off := range snap.Info().Offsets {
		sum += off
	}
	if sum != resumeAt {
		t.Fatalf("snapshot offsets sum to %d, but it covers %d events", sum, resumeAt)
	}

	// Second learner resumes from the snapshot's offsets.
	store.crashed.Store(false)
	b, err := NewStreamLearner(streamConfig(addr), nil, store, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx2) }()
	waitFor(t, "second learner to catch up", func() bool { return b.Status().Events >= n })
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := b.Status()
	if st.Events != n {
		t.Fatalf("resumed learner ends with %d events, an uninterrupted run has %d", st.Events, n)
	}
	if b.tr.Skipped() != 0 {
		t.Fatalf("resumed learner re-read %d events already in its snapshot (did not seek to its offsets)", b.tr.Skipped())
	}
	// The final snapshot covers the whole stream.
	_, blob, _ = store.Current(context.Background())
	snap, err = DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Info().EventsTrained != n {
		t.Fatalf("final snapshot covers %d events, want %d", snap.Info().EventsTrained, n)
	}
	t.Logf("killed after snapshot at %d events, resumed to %d", resumeAt, n)
}

func TestGuardrailCheck(t *testing.T) {
	g := Guardrail{Margin: 0.05}
	tests := []struct {
		name               string
		candidate, serving map[string]float64
		held               bool
	}{
		{"no serving snapshot", map[string]float64{"rmse": 3}, nil, false},
		{"rmse within margin", map[string]float64{"rmse": 0.94}, map[string]float64{"rmse": 0.90}, false},
		{"rmse worse", map[string]float64{"rmse": 0.96}, map[string]float64{"rmse": 0.90}, true},
		{"rmse better", map[string]float64{"rmse": 0.5}, map[string]float64{"rmse": 0.90}, false},
		{"hr worse", map[string]float64{"hr@10": 0.10}, map[string]float64{"hr@10": 0.20}, true},
		{"hr within margin", map[string]float64{"hr@10": 0.16}, map[string]float64{"hr@10": 0.20}, false},
		{"metric missing on one side", map[string]float64{"hr@10": 0.0}, map[string]float64{"rmse": 0.9}, false},
	}
	for _, tc := range tests {
		if got := g.Check(tc.candidate, tc.serving) != ""; got != tc.held {
			t.Errorf("%s: held back %v, want %v", tc.name, got, tc.held)
		}
	}
}

// TestGuardrailHoldsBackDegradedModel: a learner resumed from a good
// snapshot but with absurd learning rates produces a worse model; judged
// against the restored (frozen) serving model on the same events, its
// snapshot is held back with the default margin and the good one stays
// current, while a healthy learner resumed from the same snapshot publishes.
func TestGuardrailHoldsBackDegradedModel(t *testing.T) {
	ctx := context.Background()
	d := synthetic(t, 60, 120, 3000)
	half := len(d.Events) / 2
	store := NewMemorySnapshots(5)
	newLearner := func(degraded bool) *StreamLearner {
		cfg := streamConfig("127.0.0.1:1")
		cfg.Learner.GuardrailMargin = DefaultConfig().GuardrailMargin
		if degraded {
			cfg.Learner.MF.LR, cfg.Learner.MF.BiasLR, cfg.Learner.MF.ImplicitLR = 500, 500, 500
		}
		l, err := NewStreamLearner(cfg, nil, store, nil, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.PutItems(d.Items); err != nil {
			t.Fatal(err)
		}
		return l
	}
	good := newLearner(false)
	for i := range d.Events[:half] {
		good.Train(&d.Events[i])
	}
	info, ok, err := good.Checkpoint(ctx)
	if err != nil || !ok || info.Version != 1 {
		t.Fatalf("first snapshot: %+v %v %v", info, ok, err)
	}

	bad := newLearner(true)
	for i := half; i < len(d.Events); i++ {
		bad.Train(&d.Events[i])
	}
	if _, ok, err := bad.Checkpoint(ctx); err != nil || ok {
		t.Fatalf("degraded snapshot published (ok=%v, err=%v); metrics %v vs serving %v",
			ok, err, bad.Status().Metrics, info.Metrics)
	}
	st := bad.Status()
	if st.HeldBack != 1 {
		t.Fatalf("held back %d, want 1", st.HeldBack)
	}
	if g := st.Guard; g.Version != 1 || g.Explicit < 100 || g.HREvaluated < 100 {
		t.Fatalf("guard %+v: want the restored v1 judged on >= 100 shared evaluations of each metric", g)
	}
	if v, _, _ := store.Current(ctx); v != 1 {
		t.Fatalf("current = %d after a held-back snapshot, want 1", v)
	}
	t.Logf("held back: degraded %v vs frozen v1 %v on the same %d/%d events", st.Guard.Live, st.Guard.Serving,
		st.Guard.Explicit, st.Guard.HREvaluated)

	healthy := newLearner(false)
	for i := half; i < len(d.Events); i++ {
		healthy.Train(&d.Events[i])
	}
	hg := healthy.Status().Guard
	if info2, ok, err := healthy.Checkpoint(ctx); err != nil || !ok || info2.Version != 2 {
		t.Fatalf("healthy snapshot: %+v %v %v (guard %+v)", info2, ok, err, hg)
	}
	t.Logf("published: healthy %v vs frozen v1 %v", hg.Live, hg.Serving)
	// After the publish the frozen model is v2, with fresh paired windows.
	if g := healthy.Status().Guard; g.Version != 2 || g.Explicit != 0 || g.HREvaluated != 0 {
		t.Fatalf("guard after publishing v2: %+v", g)
	}
}

// TestGuardrailFollowsDrift: on a stream whose online metrics drift down
// for every model (the synthetic stream of serve's end-to-end tests: as the
// catalogue fills up, the two-stage model's windowed HR@10 falls from about
// 0.31 to 0.24), the guardrail with the default margin keeps publishing,
// because it compares the candidate with the frozen serving model on the
// same events. The drift is larger than the margin, so comparing with the
// figures the serving snapshot had when published (the old guardrail)
// would have frozen publishing.
func TestGuardrailFollowsDrift(t *testing.T) {
	d := synthetic(t, 300, 600, 20000)
	const every = 2500
	ctx := context.Background()
	cfg := streamConfig("127.0.0.1:1")
	cfg.Models = []string{"twostage"}
	cfg.Learner = DefaultConfig() // the default guardrail margin
	cfg.Learner.HREvery = 5       // HR@10 on every 5th positive (the frozen model on the same ones)
	cfg.Learner.Window = 2000     // the windowed metrics follow the drift within a few snapshots
	l, err := NewStreamLearner(cfg, nil, NewMemorySnapshots(5), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.PutItems(d.Items); err != nil {
		t.Fatal(err)
	}
	var first SnapshotInfo
	stale := "" // why the old guardrail (against v1's own figures) would hold a snapshot back
	for i := range d.Events {
		l.Train(&d.Events[i])
		if (i+1)%every != 0 {
			continue
		}
		g := l.Status().Guard
		info, ok, err := l.Checkpoint(ctx)
		if err != nil || !ok {
			t.Fatalf("snapshot at %d events not published (ok=%v, err=%v); guard %+v", i+1, ok, err, g)
		}
		if want := int64((i + 1) / every); info.Version != want {
			t.Fatalf("version %d at %d events, want %d", info.Version, i+1, want)
		}
		if info.Version == 1 {
			first = info
			continue
		}
		// The guardrail really judged both metrics on shared events.
		if g.Version != info.Version-1 || g.Explicit < cfg.GuardrailMinEvents || g.HREvaluated < cfg.GuardrailMinEvents ||
			len(g.Live) != 2 || len(g.Serving) != 2 {
			t.Fatalf("v%d: guard %+v, want both metrics of v%d over >= %d paired evaluations",
				info.Version, g, info.Version-1, cfg.GuardrailMinEvents)
		}
		if stale == "" {
			if r := (Guardrail{Margin: cfg.Learner.GuardrailMargin}).Check(info.Metrics, first.Metrics); r != "" {
				stale = fmt.Sprintf("v%d: %s", info.Version, r)
			}
		}
		t.Logf("v%d at %d events: %v; live %v vs serving %v on the same %d/%d events", info.Version, i+1,
			info.Metrics, g.Live, g.Serving, g.Explicit, g.HREvaluated)
	}
	if stale == "" {
		t.Fatalf("no drift: v1 %v, last %v; the test needs a stream whose metric falls by more than the margin",
			first.Metrics, l.Status().Last.Metrics)
	}
	t.Logf("against v1's own figures the old guardrail would have frozen publishing at %s", stale)
}

func TestGuardrailJudgesOnlyWithEnoughEvents(t *testing.T) {
	g := GuardMetrics{Version: 3, Live: map[string]float64{"rmse": 2, "hr@10": 0.1},
		Serving: map[string]float64{"rmse": 1, "hr@10": 0.3}}
	tests := []struct {
		name         string
		explicit, hr int64
		held         bool
	}{
		{"too few of both", 99, 99, false},
		{"enough explicit", 100, 0, true},
		{"enough positives", 0, 100, true},
		{"enough of both", 500, 500, true},
	}
	guard := Guardrail{Margin: 0.05}
	for _, tc := range tests {
		g.Explicit, g.HREvaluated = tc.explicit, tc.hr
		live, serving := judged(g, 100)
		if got := guard.Check(live, serving) != ""; got != tc.held {
			t.Errorf("%s: held back %v, want %v (judged %v vs %v)", tc.name, got, tc.held, live, serving)
		}
	}
	if live, serving := judged(GuardMetrics{}, 0); len(live) != 0 || len(serving) != 0 {
		t.Errorf("no frozen model: judged %v vs %v, want nothing", live, serving)
	}
}

// benchGuard: the trainer's per-event cost on the two-stage model (HR@10 on
// every hrEvery-th eligible positive) after 10,000 warm-up events, with and
// without a frozen serving model predicting beside it for the guardrail.
// Run with -benchtime 20000x (at most the events left after the warm-up).
func benchGuard(b *testing.B, frozen bool, hrEvery int) {
	evs, _ := benchEvents(b)
	const warm = 10000
	cfg := DefaultConfig()
	cfg.HREvery = hrEvery
	tr := newTestTrainer(b, cfg, "twostage")
	for i := range evs[:warm] {
		tr.Process(&evs[i])
	}
	if frozen {
		blob, _, err := tr.Snapshot(1, nil, fixedNow())
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.FreezeServing(1, blob); err != nil {
			b.Fatal(err)
		}
	}
	rest := evs[warm:]
	if b.N > len(rest) {
		b.Fatalf("b.N %d > %d events after the warm-up: use -benchtime %dx or less", b.N, len(rest), len(rest))
	}
	b.ReportAllocs()
	b.ResetTimer()
	c := startCPU()
	for i := 0; i < b.N; i++ {
		tr.Process(&rest[i])
	}
	reportRate(b, c)
}

func BenchmarkTrainerTwoStageNoGuard(b *testing.B)       { benchGuard(b, false, 1<<30) }
func BenchmarkTrainerTwoStageFrozenGuard(b *testing.B)   { benchGuard(b, true, 1<<30) }
func BenchmarkTrainerTwoStageHRNoGuard(b *testing.B)     { benchGuard(b, false, 10) }
func BenchmarkTrainerTwoStageHRFrozenGuard(b *testing.B) { benchGuard(b, true, 10) }

// TestSnapshotSchedule: a snapshot is due once the oldest event waiting for
// one has waited the interval less the last checkpoint's duration and a 5%
// allowance for the servers (never less than half the interval), and never
// without events.
func TestSnapshotSchedule(t *testing.T) {
	for _, tc := range []struct {
		interval, lastDur, want time.Duration
	}{
		{5 * time.Second, 0, 4750 * time.Millisecond},
		{5 * time.Second, 300 * time.Millisecond, 4450 * time.Millisecond},
		{5 * time.Second, 4 * time.Second, 2500 * time.Millisecond},
		{100 * time.Millisecond, 0, 95 * time.Millisecond},
	} {
		if got := snapshotWait(tc.interval, tc.lastDur); got != tc.want {
			t.Errorf("snapshotWait(%v, %v) = %v, want %v", tc.interval, tc.lastDur, got, tc.want)
		}
	}

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultStreamConfig()
	cfg.Brokers = []string{"unused:9092"}
	cfg.ItemsTopic = ""
	cfg.SnapshotEvents = 1 << 40
	cfg.Models = []string{"pop"}
	cfg.Now = func() time.Time { return now }
	l, err := NewStreamLearner(cfg, nil, NewMemorySnapshots(3), prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if l.due() {
		t.Fatal("due without events")
	}
	l.Train(&streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: "i", TS: now.UnixMilli()})
	now = now.Add(4700 * time.Millisecond)
	l.Train(&streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: "j", TS: now.UnixMilli()})
	if l.due() {
		t.Fatal("due 4.7 s after the first waiting event (wait 4.75 s)")
	}
	now = now.Add(50 * time.Millisecond)
	if !l.due() {
		t.Fatal("not due 4.75 s after the first waiting event")
	}
	if _, ok, err := l.Checkpoint(context.Background()); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	now = now.Add(time.Hour)
	if l.due() {
		t.Fatal("due with nothing new since the snapshot")
	}
}
