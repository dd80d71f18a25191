package tune

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/learner/replay"
)

func TestRungs(t *testing.T) {
	tests := []struct {
		n, eta int
		min    float64
		want   []float64
	}{
		{1, 3, 0.1, []float64{1}},
		{2, 3, 0.1, []float64{1}},
		{3, 3, 0.1, []float64{1.0 / 3, 1}},
		{9, 3, 0.1, []float64{1.0 / 9, 1.0 / 3, 1}},
		{100, 3, 0.1, []float64{1.0 / 9, 1.0 / 3, 1}}, // at most 3 rungs
		{20, 3, 0.3, []float64{0.3, 1}},               // 1/9 and 1/3 clamp to 0.3: one rung
		{8, 2, 0.2, []float64{0.25, 0.5, 1}},
	}
	for _, tt := range tests {
		if got := rungs(tt.n, tt.eta, tt.min); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("rungs(%d, %d, %g) = %v, want %v", tt.n, tt.eta, tt.min, got, tt.want)
		}
	}
}

func TestSampleStaysValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range learner.Names() {
		space, err := Space(m)
		if m == "mean" {
			if err == nil {
				t.Fatal("mean has nothing to tune")
			}
			continue
		}
		if err != nil || len(space) == 0 {
			t.Fatalf("%s: %v", m, err)
		}
		for i := 0; i < 50; i++ {
			c, params, err := sample(rng, learner.DefaultConfig(), space, i%2 == 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil || len(params) != len(space) {
				t.Fatalf("%s: %v (%d params)", m, err, len(params))
			}
		}
	}
	// Local draws stay within a factor of 2 of the start and on
	// neighbouring choices.
	base0 := learner.DefaultConfig()
	for i := 0; i < 50; i++ {
		c, _, err := sample(rng, base0, mfSpace, true)
		if err != nil {
			t.Fatal(err)
		}
		if c.MF.LR < base0.MF.LR/2-1e-9 || c.MF.LR > base0.MF.LR*2+1e-9 {
			t.Fatalf("local mf.lr %v, start %v", c.MF.LR, base0.MF.LR)
		}
		if c.MF.Dims < base0.MF.Dims/2 || c.MF.Dims > base0.MF.Dims*2 {
			t.Fatalf("local mf.dims %d, start %d", c.MF.Dims, base0.MF.Dims)
		}
	}
	// Sampling must not alias the base config's layer slices.
	base := learner.DefaultConfig()
	bottom := append([]int(nil), base.Ranker.Bottom...)
	for i := 0; i < 20; i++ {
		_, _, _ = sample(rng, base, rankerSpace, i%2 == 0)
	}
	if !reflect.DeepEqual(base.Ranker.Bottom, bottom) {
		t.Fatal("sampling changed the base config")
	}
}

func factory() Factory {
	return Factory{
		Model: learner.New,
		Store: func(c learner.Config) (replay.Store, error) {
			fc := features.DefaultConfig()
			fc.Now = func() time.Time { return time.Unix(0, 0) }
			return features.NewMemory(fc)
		},
	}
}

func TestRunPicksNoWorseThanStartAndIsDeterministic(t *testing.T) {
	d, err := dataset.Load(context.Background(), "synthetic:users=60,items=80,events=4000,seed=5", dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{replay.Prequential, replay.TimeSplit} {
		t.Run(proto, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Protocol, cfg.Model, cfg.Trials, cfg.Parallel = proto, "bias", 9, 2
			var scores [][]float64
			for run := 0; run < 2; run++ {
				res, err := Run(context.Background(), d.Name, d.Events, d.Items, learner.DefaultConfig(), cfg, factory())
				if err != nil {
					t.Fatal(err)
				}
				if res.Best.Validation == nil || res.Base.Validation == nil || res.Best.Test == nil {
					t.Fatalf("best %+v base %+v lack full-data figures", res.Best, res.Base)
				}
				if res.Best.Validation.RMSE > res.Base.Validation.RMSE {
					t.Fatalf("best validation RMSE %v worse than the start's %v", res.Best.Validation.RMSE, res.Base.Validation.RMSE)
				}
				if proto == replay.TimeSplit && res.Best.TestOnline == nil {
					t.Fatal("timesplit best lacks the online test figures")
				}
				var s []float64
				for _, tr := range res.Trials {
					for _, r := range tr.Rungs {
						s = append(s, r.Score)
					}
				}
				scores = append(scores, append(s, float64(res.Best.ID)))
			}
			if !reflect.DeepEqual(scores[0], scores[1]) {
				t.Fatalf("same seed, different searches:\n%v\n%v", scores[0], scores[1])
			}
		})
	}
}
