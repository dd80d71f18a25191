package learner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as "168h0m0s"
// (or a number of nanoseconds), so config files stay readable.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts a Go duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"168h\" or nanoseconds: %w", err)
	}
	*d = Duration(n)
	return nil
}

// Std converts to a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MFConfig configures online biased matrix factorisation.
type MFConfig struct {
	Dims int `json:"dims"`
	// LR is the AdaGrad base rate of the factors; BiasLR of the biases.
	LR     float64 `json:"lr"`
	BiasLR float64 `json:"bias_lr"`
	// Reg is the L2 regularisation of the factors; BiasReg of the biases.
	Reg     float64 `json:"reg"`
	BiasReg float64 `json:"bias_reg"`
	// InitStd is the standard deviation of new factors.
	InitStd float64 `json:"init_std"`
	// Negatives is the number of sampled negatives per implicit positive (BPR).
	Negatives int `json:"negatives"`
	// ImplicitLR is the AdaGrad base rate used for implicit (BPR) updates.
	ImplicitLR float64 `json:"implicit_lr"`
	// PositiveMin, when positive, makes ratings at or above it also BPR
	// positives (so MF ranks well on rating-only data), each against
	// RatingNegatives sampled negatives; 0 disables.
	PositiveMin     float64 `json:"positive_min"`
	RatingNegatives int     `json:"rating_negatives"`
}

// BiasConfig configures the user/item bias baseline.
type BiasConfig struct {
	LR  float64 `json:"lr"`
	Reg float64 `json:"reg"`
}

// KNNConfig configures incremental item-kNN (co-occurrence with cosine).
type KNNConfig struct {
	// Window is how many of the user's most recent items an event co-occurs with.
	Window int `json:"window"`
	// Neighbours is how many neighbours per recent item a query expands.
	Neighbours int `json:"neighbours"`
	// Shrink is added to the cosine denominator to damp rare pairs.
	Shrink float64 `json:"shrink"`
}

// PopConfig configures time-decayed popularity.
type PopConfig struct {
	HalfLife Duration `json:"half_life"`
}

// TwoStageConfig configures candidate generation of the two-stage recommender.
type TwoStageConfig struct {
	// MFCandidates is M of "MF top-M".
	MFCandidates   int `json:"mf_candidates"`
	CoocCandidates int `json:"cooc_candidates"`
	PopCandidates  int `json:"pop_candidates"`
	// Recent is how many of the user's recent items seed co-occurrence.
	Recent int `json:"recent"`
	// Candidates are ranked by reciprocal rank fusion of four signals with
	// these weights (0 drops a signal); FusionK damps the top ranks. The
	// defaults were chosen on prequential HR@10 (ML-100K: 0.215 against
	// 0.067 for the ranker's order alone; synthetic: 0.293).
	RankerWeight float64 `json:"ranker_weight"`
	MFWeight     float64 `json:"mf_weight"`
	CoocWeight   float64 `json:"cooc_weight"`
	PopWeight    float64 `json:"pop_weight"`
	FusionK      float64 `json:"fusion_k"`
	// The session's category profile: the share of each category among the
	// user's CategoryRecent newest items, the r-th newest weighted
	// CategoryDecay^r. The most popular items of the profile's top categories
	// join the candidates (CategoryCandidates in all, split by share; 0
	// adds none), and each candidate gains CategoryWeight × lift² / FusionK
	// in the fused score (0 disables it), lift being its best category's
	// share over the category's base rate b: max(0, (share − b) / (1 − b)).
	// Weight 4 was chosen on ML-100K prequential HR@10 (0.2075 against
	// 0.2079 without) and the e2e session test (10/10 of the category).
	CategoryRecent     int     `json:"category_recent"`
	CategoryDecay      float64 `json:"category_decay"`
	CategoryCandidates int     `json:"category_candidates"`
	CategoryWeight     float64 `json:"category_weight"`
}

// Config holds every hyperparameter of the learner. Zero fields are invalid;
// start from DefaultConfig.
type Config struct {
	Seed     int64          `json:"seed"`
	MF       MFConfig       `json:"mf"`
	Bias     BiasConfig     `json:"bias"`
	KNN      KNNConfig      `json:"itemknn"`
	Pop      PopConfig      `json:"pop"`
	TwoStage TwoStageConfig `json:"twostage"`
	// Ranker configures the deep ranker (ranker.go). Its Seed is replaced
	// by one derived from Seed when models are built.
	Ranker RankerConfig `json:"ranker"`

	// Window is the number of evaluated events in the windowed prequential
	// metrics (RMSE over explicit events, HR@K over new positive pairs).
	Window int `json:"window"`
	// K is the list length of HR@K.
	K int `json:"k"`
	// PositiveMin is the lowest explicit value that counts as a positive
	// interaction for HR@K (implicit events always do).
	PositiveMin float64 `json:"positive_min"`
	// HREvery evaluates HR@K on every Nth eligible positive (1 = all).
	HREvery int `json:"hr_every"`
	// RecentCap caps the trainer's feature store recent lists.
	RecentCap int `json:"recent_cap"`
	// VectorEvery writes changed user vectors to the feature store every N events.
	VectorEvery int `json:"vector_every"`
	// GuardrailMargin is how much rankedBelow (RMSE higher, or HR@K lower, in
	// absolute terms) a snapshot may be than the serving one before it is held back.
	GuardrailMargin float64 `json:"guardrail_margin"`
	// SnapshotKeep is how many snapshots a store keeps for rollback.
	SnapshotKeep int `json:"snapshot_keep"`
}

// DefaultConfig returns the tuned defaults.
func DefaultConfig() Config {
	return Config{
		Seed: 1,
		MF: MFConfig{Dims: 16, LR: 0.1, BiasLR: 0.3, Reg: 0.02, BiasReg: 0.01,
			InitStd: 0.05, Negatives: 4, ImplicitLR: 0.05, PositiveMin: 4, RatingNegatives: 2},
		Bias: BiasConfig{LR: 0.05, Reg: 0.01},
		KNN:  KNNConfig{Window: 10, Neighbours: 50, Shrink: 10},
		Pop:  PopConfig{HalfLife: Duration(7 * 24 * time.Hour)},
		TwoStage: TwoStageConfig{MFCandidates: 100, CoocCandidates: 50, PopCandidates: 20, Recent: 10,
			RankerWeight: 1, MFWeight: 1, CoocWeight: 3, PopWeight: 0.25, FusionK: 20,
			CategoryRecent: 30, CategoryDecay: 0.9, CategoryCandidates: 30, CategoryWeight: 4},
		Window:          5000,
		K:               10,
		HREvery:         1,
		PositiveMin:     4,
		RecentCap:       500,
		VectorEvery:     10000,
		GuardrailMargin: 0.05,
		SnapshotKeep:    5,
		Ranker:          DefaultRankerConfig(),
	}
}

// Validate checks every field and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("learner config: "+format, args...))
		}
	}
	pos := func(name string, v float64) {
		check(v > 0 && v < 1e6, "%s must be positive and finite, got %g", name, v)
	}
	nonneg := func(name string, v float64) { check(v >= 0 && v < 1e6, "%s must be >= 0 and finite, got %g", name, v) }
	check(c.MF.Dims > 0 && c.MF.Dims <= 1024, "mf.dims must be in 1..1024, got %d", c.MF.Dims)
	pos("mf.lr", c.MF.LR)
	pos("mf.bias_lr", c.MF.BiasLR)
	pos("mf.implicit_lr", c.MF.ImplicitLR)
	nonneg("mf.reg", c.MF.Reg)
	nonneg("mf.bias_reg", c.MF.BiasReg)
	pos("mf.init_std", c.MF.InitStd)
	check(c.MF.Negatives >= 1 && c.MF.Negatives <= 100, "mf.negatives must be in 1..100, got %d", c.MF.Negatives)
	check(c.MF.RatingNegatives >= 0 && c.MF.RatingNegatives <= 100, "mf.rating_negatives must be in 0..100, got %d", c.MF.RatingNegatives)
	pos("bias.lr", c.Bias.LR)
	nonneg("bias.reg", c.Bias.Reg)
	check(c.KNN.Window > 0, "itemknn.window must be positive, got %d", c.KNN.Window)
	check(c.KNN.Neighbours > 0, "itemknn.neighbours must be positive, got %d", c.KNN.Neighbours)
	nonneg("itemknn.shrink", c.KNN.Shrink)
	check(c.Pop.HalfLife > 0, "pop.half_life must be positive, got %s", time.Duration(c.Pop.HalfLife))
	check(c.TwoStage.MFCandidates > 0, "twostage.mf_candidates must be positive, got %d", c.TwoStage.MFCandidates)
	check(c.TwoStage.CoocCandidates >= 0, "twostage.cooc_candidates must be >= 0, got %d", c.TwoStage.CoocCandidates)
	check(c.TwoStage.PopCandidates > 0, "twostage.pop_candidates must be positive, got %d", c.TwoStage.PopCandidates)
	check(c.TwoStage.Recent > 0, "twostage.recent must be positive, got %d", c.TwoStage.Recent)
	nonneg("twostage.ranker_weight", c.TwoStage.RankerWeight)
	nonneg("twostage.mf_weight", c.TwoStage.MFWeight)
	nonneg("twostage.cooc_weight", c.TwoStage.CoocWeight)
	nonneg("twostage.pop_weight", c.TwoStage.PopWeight)
	pos("twostage.fusion_k", c.TwoStage.FusionK)
	check(c.TwoStage.CategoryRecent >= 0, "twostage.category_recent must be >= 0, got %d", c.TwoStage.CategoryRecent)
	check(c.TwoStage.CategoryDecay > 0 && c.TwoStage.CategoryDecay <= 1, "twostage.category_decay must be in (0, 1], got %g", c.TwoStage.CategoryDecay)
	check(c.TwoStage.CategoryCandidates >= 0, "twostage.category_candidates must be >= 0, got %d", c.TwoStage.CategoryCandidates)
	nonneg("twostage.category_weight", c.TwoStage.CategoryWeight)
	check(c.Window > 0, "window must be positive, got %d", c.Window)
	check(c.K > 0 && c.K <= 1000, "k must be in 1..1000, got %d", c.K)
	check(c.HREvery > 0, "hr_every must be positive, got %d", c.HREvery)
	check(c.RecentCap > 0, "recent_cap must be positive, got %d", c.RecentCap)
	check(c.VectorEvery > 0, "vector_every must be positive, got %d", c.VectorEvery)
	nonneg("guardrail_margin", c.GuardrailMargin)
	check(c.SnapshotKeep > 0, "snapshot_keep must be positive, got %d", c.SnapshotKeep)
	if err := c.Ranker.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("learner config: ranker: %w", err))
	}
	return errors.Join(errs...)
}

// Hash is a short, stable digest of the configuration, recorded in snapshots.
func (c Config) Hash() string {
	b, err := json.Marshal(c)
	if err != nil {
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// LoadConfig reads a JSON config file over DefaultConfig (absent fields keep
// their defaults), rejects unknown fields, and validates it.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("learner config: %w", err)
	}
	if err := cfg.UnmarshalStrict(b); err != nil {
		return cfg, fmt.Errorf("learner config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("learner config %s: %w", path, err)
	}
	return cfg, nil
}

// UnmarshalStrict decodes JSON into c, rejecting unknown fields; fields
// absent from b keep their current values.
func (c *Config) UnmarshalStrict(b []byte) error {
	rbuf := json.NewDecoder(bytesReader(b))
	rbuf.DisallowUnknownFields()
	if err := rbuf.Decode(c); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// WriteFile writes c as indented JSON (what `streamrec tune` produces).
func (c *Config) WriteFile(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("learner config: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("learner config: %w", err)
	}
	return nil
}
