package learner

import (
	"math"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// prequentialRMSE runs test-then-train over evs with bare examples (no
// features), as MF needs none.
func prequentialRMSE(m Model, evs []streamrec.Event) float64 {
	var se float64
	var n int
	u, it, g := &features.User{}, &features.Item{}, &features.Global{}
	for k := range evs {
		ex := Example{Event: &evs[k], User: u, Item: it, Global: g}
		p := m.Predict(&ex)
		d := p - evs[k].Value
		se += d * d
		n++
		m.Learn(&ex)
	}
	return math.Sqrt(se / float64(n))
}

// TestMFMovieLensPrequentialRMSE holds online MF to its measured quality on
// MovieLens 100K in time order (0.9359 with the defaults when written; River's
// BiasedMF scores 0.948 on this protocol) and ahead of the bias baseline.
func TestMFMovieLensPrequentialRMSE(t *testing.T) {
	evs := loadML100K(t)
	cfg := DefaultConfig()
	mf := prequentialRMSE(NewMF(cfg.MF, cfg.Seed), evs)
	bias := prequentialRMSE(NewBias(cfg.Bias), evs)
	t.Logf("prequential RMSE on ML-100K: mf %.4f, bias %.4f", mf, bias)
	if mf > 0.945 {
		t.Errorf("MF prequential RMSE %.4f > 0.945", mf)
	}
	if mf > bias-0.005 {
		t.Errorf("MF RMSE %.4f does not beat the bias baseline %.4f", mf, bias)
	}
}
