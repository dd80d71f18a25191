package learner

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec/ingest/dataset"
)

var fixedNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// synthetic returns the generator's data set with planted taste clusters.
func synthetic(tb testing.TB, users, items, events int) *dataset.Data {
	tb.Helper()
	cfg := dataset.DefaultSyntheticConfig()
	cfg.Users, cfg.Items, cfg.Events, cfg.Seed = users, items, events, 1
	d, _ := dataset.Synthetic(cfg)
	return d
}

func newTestTrainer(tb testing.TB, cfg Config, names ...string) *Trainer {
	tb.Helper()
	var ms []Model
	for _, n := range names {
		m, err := New(n, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		ms = append(ms, m)
	}
	tr, err := NewTrainerWith(cfg, ms, zerolog.Nop(), TrainerOptions{Now: fixedNow})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

func train(tb testing.TB, tr *Trainer, d *dataset.Data) {
	tb.Helper()
	if err := tr.PutItems(d.Items); err != nil {
		tb.Fatal(err)
	}
	for i := range d.Events {
		tr.Process(&d.Events[i])
	}
}

// TestMFBeatsPopularityOnPlantedClusters: on the synthetic generator's
// planted taste clusters, MF and the two-stage recommender must rank clearly
// better than popularity, and MF rate better than the global mean.
func TestMFBeatsPopularityOnPlantedClusters(t *testing.T) {
	d := synthetic(t, 200, 300, 12000)
	cfg := DefaultConfig()
	cfg.Window = 1 << 20 // whole-stream figures
	tr := newTestTrainer(t, cfg, "pop", "mf", "mean")
	train(t, tr, d)
	if tr.Events() != int64(len(d.Events)) {
		t.Fatalf("trained %d events, want %d", tr.Events(), len(d.Events))
	}
	by := map[string]ModelMetrics{}
	for _, mm := range tr.Metrics() {
		t.Logf("%-5s rmse %.4f hr@10 %.4f (explicit %d, hr evaluated %d)", mm.Model, mm.RMSEAll, mm.HRAll, mm.Explicit, mm.HREvaluated)
		by[mm.Model] = mm
	}
	pop, mf, mean := by["pop"], by["mf"], by["mean"]
	if mf.HREvaluated < 2000 {
		t.Fatalf("only %d HR evaluations", mf.HREvaluated)
	}
	// Margins: over ~4,400 evaluations at HR ≈ 0.25 the standard error of
	// each HR is ≈ 0.0065, so 0.03 is over 3 standard errors of the
	// difference even if the two were independent (they are positively
	// correlated, which shrinks it); the gap measured when written is 0.053
	// (0.291 vs 0.237). RMSE is over ~2,400 ratings; the measured gap to the
	// mean is 0.13 against the asserted 0.05. The data and seed are fixed, so
	// the test is deterministic; the margins guard against regressions, not
	// against noise.
	if mf.HRAll < pop.HRAll+0.03 {
		t.Errorf("MF HR@10 %.4f does not beat popularity %.4f by 0.03", mf.HRAll, pop.HRAll)
	}
	if mf.RMSEAll > mean.RMSEAll-0.05 {
		t.Errorf("MF RMSE %.4f does not beat the global mean %.4f by 0.05", mf.RMSEAll, mean.RMSEAll)
	}
}

// TestTwoStageBeatsPopularityOnPlantedClusters: the production recommender
// (candidates from MF, co-occurrence and popularity, fused with the deep
// ranker) must rank clearly better than popularity on planted clusters.
// Fewer candidates than the defaults keep the test fast; HR@10 is over
// ~3,000 evaluations (standard error ≈ 0.008 each); the gap measured when
// written is 0.055 (0.321 vs 0.266), asserted at 0.04.
func TestTwoStageBeatsPopularityOnPlantedClusters(t *testing.T) {
	d := synthetic(t, 150, 250, 8000)
	cfg := DefaultConfig()
	cfg.Window = 1 << 20
	cfg.TwoStage.MFCandidates, cfg.TwoStage.CoocCandidates, cfg.TwoStage.PopCandidates = 40, 30, 10
	tr := newTestTrainer(t, cfg, "pop", "twostage")
	train(t, tr, d)
	mm := tr.Metrics()
	pop, two := mm[0], mm[1]
	t.Logf("pop hr@10 %.4f, twostage hr@10 %.4f rmse %.4f (hr evaluated %d)", pop.HRAll, two.HRAll, two.RMSEAll, two.HREvaluated)
	if two.HREvaluated < 2500 {
		t.Fatalf("only %d HR evaluations", two.HREvaluated)
	}
	if two.HRAll < pop.HRAll+0.04 {
		t.Errorf("two-stage HR@10 %.4f does not beat popularity %.4f by 0.04", two.HRAll, pop.HRAll)
	}
}
