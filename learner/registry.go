package learner

import (
	"fmt"
	"slices"
	"strings"
)

// Names lists the model names New accepts, as replay's --models takes them.
func Names() []string {
	return []string{"mean", "bias", "pop", "itemknn", "mf", RankerName, "twostage"}
}

// New builds the named model from cfg. Every model is deterministic given
// cfg.Seed and a single worker.
func New(name string, cfg Config) (Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch name {
	case "mean":
		return NewMean(), nil
	case "bias":
		return NewBias(cfg.Bias), nil
	case "pop":
		return NewPopularity(cfg.Pop.HalfLife.Std()), nil
	case "itemknn":
		return NewItemKNN(cfg.KNN), nil
	case "mf":
		return NewMF(cfg.MF, cfg.Seed), nil
	case RankerName:
		return newRanker(cfg)
	case "twostage":
		r, err := newRanker(cfg)
		if err != nil {
			return nil, err
		}
		return NewTwoStage(cfg, rankerStage{r}), nil
	}
	return nil, fmt.Errorf("learner: unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
}

// ParseModels splits a comma-separated list of model names and checks each.
func ParseModels(list string) ([]string, error) {
	var names []string
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(Names(), n) {
			return nil, fmt.Errorf("learner: unknown model %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("learner: no models in %q", list)
	}
	return names, nil
}

// newRanker builds the deep ranker with a seed derived from cfg.Seed.
func newRanker(cfg Config) (*Ranker, error) {
	rc := cfg.Ranker
	rc.Seed = uint64(cfg.Seed)*0x9e3779b97f4a7c15 + 0x72616e6b
	r, err := NewRanker(rc)
	if err != nil {
		return nil, fmt.Errorf("learner: ranker: %w", err)
	}
	return r, nil
}

// rankerStage adapts *Ranker to the two-stage recommender's RankerModel.
type rankerStage struct{ *Ranker }

// NewItemScorer implements RankerModel.
func (r rankerStage) NewItemScorer() ItemScorer { return r.Ranker.NewScorer() }
