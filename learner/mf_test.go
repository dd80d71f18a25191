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

func TestMFMovieLensRMSE(t *testing.T) {
	evs := loadML100K(t)
	for _, dims := range []int{8, 16, 32} {
		cfg := DefaultConfig()
		cfg.MF.Dims = dims
		m := NewMF(cfg.MF, cfg.Seed)
		t.Logf("dims %d rmse %.4f", dims, prequentialRMSE(m, evs))
	}
	b := NewBias(DefaultConfig().Bias)
	t.Logf("bias rmse %.4f", prequentialRMSE(b, evs))
}
