package learner

import (
	"bytes"
	"errors"
	"math"
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

func TestTrainerSyntheticMFBeatsPopularity(t *testing.T) {
	d := synthetic(t, 300, 500, 30000)
	cfg := DefaultConfig()
	cfg.Window = 100000
	tr := newTestTrainer(t, cfg, "pop", "mf", "itemknn", "bias", "mean")
	train(t, tr, d)
	byName := map[string]ModelMetrics{}
	for _, mm := range tr.Metrics() {
		t.Logf("%-8s rmse %.4f hr@10 %.4f (explicit %d, hr evaluated %d)", mm.Model, mm.RMSEAll, mm.HRAll, mm.Explicit, mm.HREvaluated)
		byName[mm.Model] = mm
	}
	if tr.Events() != int64(len(d.Events)) {
		t.Fatalf("trained %d events, want %d", tr.Events(), len(d.Events))
	}
	_ = math.NaN
	_ = bytes.Equal
	_ = errors.Is
}
