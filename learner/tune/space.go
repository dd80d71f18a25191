package tune

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/streamrec/streamrec/learner"
)

// Param is one hyperparameter of the search space: Sample draws a value,
// writes it into the config and returns it for the report. A local draw
// stays near the config's current value (within a factor of 2, or the
// neighbouring choices); a global one covers the whole range.
type Param struct {
	Name   string
	Sample func(rng *rand.Rand, c *learner.Config, local bool) any
}

// logUniform draws from [lo, hi] uniformly on a log scale, rounded to 3
// significant digits so configs stay readable.
func logUniform(rng *rand.Rand, lo, hi float64) float64 {
	v := math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	return r
}

func pick[T any](rng *rand.Rand, vs ...T) T { return vs[rng.IntN(len(vs))] }

func logParam(name string, lo, hi float64, field func(c *learner.Config) *float64) Param {
	return Param{name, func(rng *rand.Rand, c *learner.Config, local bool) any {
		a, b := lo, hi
		if cur := *field(c); local && cur > 0 {
			a, b = max(lo, cur/2), min(hi, cur*2)
			if a >= b {
				a, b = lo, hi
			}
		}
		v := logUniform(rng, a, b)
		*field(c) = v
		return v
	}}
}

// near returns the choices next to index i (and i itself).
func near[T any](choices []T, i int) []T {
	if i < 0 {
		return choices
	}
	return choices[max(0, i-1):min(len(choices), i+2)]
}

func intParam(name string, field func(c *learner.Config) *int, choices ...int) Param {
	return Param{name, func(rng *rand.Rand, c *learner.Config, local bool) any {
		cs := choices
		if local {
			cs = near(choices, slices.Index(choices, *field(c)))
		}
		v := pick(rng, cs...)
		*field(c) = v
		return v
	}}
}

func layersParam(name string, field func(c *learner.Config) *[]int, choices ...[]int) Param {
	return Param{name, func(rng *rand.Rand, c *learner.Config, local bool) any {
		cs := choices
		if local {
			cs = near(choices, slices.IndexFunc(choices, func(l []int) bool { return slices.Equal(l, *field(c)) }))
		}
		v := slices.Clone(pick(rng, cs...))
		*field(c) = v
		return v
	}}
}

var (
	mfSpace = []Param{
		intParam("mf.dims", func(c *learner.Config) *int { return &c.MF.Dims }, 8, 16, 32, 64, 128),
		logParam("mf.lr", 0.01, 0.5, func(c *learner.Config) *float64 { return &c.MF.LR }),
		logParam("mf.bias_lr", 0.03, 1, func(c *learner.Config) *float64 { return &c.MF.BiasLR }),
		logParam("mf.reg", 0.002, 0.2, func(c *learner.Config) *float64 { return &c.MF.Reg }),
		logParam("mf.bias_reg", 0.001, 0.1, func(c *learner.Config) *float64 { return &c.MF.BiasReg }),
		logParam("mf.init_std", 0.01, 0.2, func(c *learner.Config) *float64 { return &c.MF.InitStd }),
	}
	layers      = [][]int{{16}, {32}, {64}, {64, 32}, {128, 64}}
	rankerSpace = []Param{
		intParam("ranker.dim", func(c *learner.Config) *int { return &c.Ranker.Dim }, 8, 16, 32, 64),
		layersParam("ranker.bottom", func(c *learner.Config) *[]int { return &c.Ranker.Bottom }, layers...),
		layersParam("ranker.top", func(c *learner.Config) *[]int { return &c.Ranker.Top }, layers...),
		intParam("ranker.history_len", func(c *learner.Config) *int { return &c.Ranker.HistoryLen }, 0, 16, 32, 64),
		logParam("ranker.lr_bias", 0.01, 0.2, func(c *learner.Config) *float64 { return &c.Ranker.LRBias }),
		logParam("ranker.lr_embedding", 0.005, 0.1, func(c *learner.Config) *float64 { return &c.Ranker.LREmbedding }),
		logParam("ranker.lr_dense", 2e-4, 5e-3, func(c *learner.Config) *float64 { return &c.Ranker.LRDense }),
		logParam("ranker.l2_bias", 1e-4, 1e-2, func(c *learner.Config) *float64 { return &c.Ranker.L2Bias }),
		logParam("ranker.l2_embedding", 1e-3, 0.1, func(c *learner.Config) *float64 { return &c.Ranker.L2Embedding }),
		logParam("ranker.l2_dense", 1e-6, 1e-4, func(c *learner.Config) *float64 { return &c.Ranker.L2Dense }),
		logParam("ranker.shrinkage", 1, 50, func(c *learner.Config) *float64 { return &c.Ranker.Shrinkage }),
	}
	twoStageSpace = []Param{
		intParam("twostage.mf_candidates", func(c *learner.Config) *int { return &c.TwoStage.MFCandidates }, 100, 200, 400),
		intParam("twostage.cooc_candidates", func(c *learner.Config) *int { return &c.TwoStage.CoocCandidates }, 50, 100, 200),
		intParam("twostage.pop_candidates", func(c *learner.Config) *int { return &c.TwoStage.PopCandidates }, 20, 50, 100),
	}
)

// Space returns the search space of a model: the learner.Config fields it
// reads (learning rates, regularisation, dimensions, layer sizes).
func Space(model string) ([]Param, error) {
	switch model {
	case "mf":
		return mfSpace, nil
	case "bias":
		return []Param{
			logParam("bias.lr", 0.005, 0.5, func(c *learner.Config) *float64 { return &c.Bias.LR }),
			logParam("bias.reg", 1e-4, 0.1, func(c *learner.Config) *float64 { return &c.Bias.Reg }),
		}, nil
	case "itemknn":
		return []Param{
			intParam("itemknn.window", func(c *learner.Config) *int { return &c.KNN.Window }, 5, 10, 20, 50, 100),
			intParam("itemknn.neighbours", func(c *learner.Config) *int { return &c.KNN.Neighbours }, 20, 50, 100, 200),
			logParam("itemknn.shrink", 1, 100, func(c *learner.Config) *float64 { return &c.KNN.Shrink }),
		}, nil
	case "pop":
		return []Param{{"pop.half_life", func(rng *rand.Rand, c *learner.Config, local bool) any {
			hours := []int{1, 6, 24, 72, 168, 720, 2160}
			if local {
				hours = near(hours, slices.Index(hours, int(time.Duration(c.Pop.HalfLife)/time.Hour)))
			}
			h := pick(rng, hours...)
			c.Pop.HalfLife = learner.Duration(time.Duration(h) * time.Hour)
			return time.Duration(c.Pop.HalfLife).String()
		}}}, nil
	case learner.RankerName:
		return rankerSpace, nil
	case "twostage":
		return slices.Concat(mfSpace, rankerSpace, twoStageSpace), nil
	case "mean":
		return nil, fmt.Errorf("tune: model mean has no hyperparameters")
	}
	return nil, fmt.Errorf("tune: unknown model %q", model)
}

// sample draws one configuration from space over base (locally around
// base's values, or over the whole ranges), retrying draws that the
// learner's validation rejects.
func sample(rng *rand.Rand, base learner.Config, space []Param, local bool) (learner.Config, map[string]any, error) {
	var last error
	for try := 0; try < 100; try++ {
		c := clone(base)
		params := make(map[string]any, len(space))
		for _, p := range space {
			params[p.Name] = p.Sample(rng, &c, local)
		}
		if err := c.Validate(); err != nil {
			last = err
			continue
		}
		return c, params, nil
	}
	return base, nil, fmt.Errorf("tune: no valid configuration in 100 draws: %w", last)
}

// clone deep-copies the slices of a config.
func clone(c learner.Config) learner.Config {
	c.Ranker.Bottom = slices.Clone(c.Ranker.Bottom)
	c.Ranker.Top = slices.Clone(c.Ranker.Top)
	return c
}
