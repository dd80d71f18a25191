package learner

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"gonum.org/v1/gonum/floats"
)

// RankerName is the ranker's name in the model registry and on the command line.
const RankerName = "ranker"

// RankerConfig configures the deep ranker. The learner Config embeds it as
// field Ranker, and tune searches over its fields.
type RankerConfig struct {
	// Dim is the size of the user, item and history embeddings and of the
	// bottom MLP's output.
	Dim int `json:"dim"`
	// Bottom lists the hidden layer sizes of the bottom MLP over the dense
	// features; its output layer (Dim wide) is added after them.
	Bottom []int `json:"bottom"`
	// Top lists the hidden layer sizes of the top MLP over the bottom output
	// and the pairwise interactions; its output layer (one unit per loss) is
	// added after them.
	Top []int `json:"top"`
	// HistoryLen is how many of the user's recent items feed the history
	// embedding (SVD++-style) and the category overlap; 0 disables both.
	HistoryLen int `json:"history_len"`

	// LRBias, LREmbedding and LRDense are the learning rates of the bias
	// terms and embeddings (AdaGrad, updated on every example) and of the
	// MLP weights (Adam, updated once per mini-batch).
	LRBias      float64 `json:"lr_bias"`
	LREmbedding float64 `json:"lr_embedding"`
	LRDense     float64 `json:"lr_dense"`
	// L2Bias, L2Embedding and L2Dense are the L2 penalties of those groups.
	L2Bias      float64 `json:"l2_bias"`
	L2Embedding float64 `json:"l2_embedding"`
	L2Dense     float64 `json:"l2_dense"`
	// AdagradInit is the initial AdaGrad accumulator of biases and
	// embeddings: it bounds a new parameter's first steps to about
	// lr·|g|/sqrt(AdagradInit), so one surprising first event cannot move
	// a fresh user or item far.
	AdagradInit float64 `json:"adagrad_init"`

	// BatchSize is how many examples (negatives included) the MLP gradients
	// are accumulated over before one optimiser step.
	BatchSize int `json:"batch_size"`
	// Negatives is how many items are sampled as negatives per implicit
	// positive.
	Negatives int `json:"negatives"`
	// InitStd is the standard deviation of new embeddings.
	InitStd float64 `json:"init_std"`
	// SessionGapHours, when positive, gives each user a session bias on
	// the explicit head that is learned like the other biases but starts
	// again from zero after a gap of more than this many hours between the
	// user's events (rating-session effects); 0 disables it.
	SessionGapHours float64 `json:"session_gap_hours"`
	// Shrinkage is the prior weight (in events) pulling user and item
	// explicit means towards the global mean in the shrunk-mean features.
	Shrinkage float64 `json:"shrinkage"`
	// HalfLifeHours is the popularity half-life used when decaying an item's
	// popularity to the event time (the feature store's default is 168 h).
	HalfLifeHours float64 `json:"half_life_hours"`
	// RerankTop, when positive, makes ScoreItems a cascade: all candidates
	// get a cheap score (biases and the MF term), and only the best
	// RerankTop of them go through the full network; the others are placed
	// below them in their cheap order. 0 scores every candidate fully.
	RerankTop int `json:"rerank_top"`
	// Seed seeds weight initialisation and negative sampling.
	Seed uint64 `json:"seed"`
}

// DefaultRankerConfig returns the configuration tuned on MovieLens 100K
// prequential RMSE (RANKER_DEV=1 RANKER_SEEDS=3 go test -run
// TestRankerDevML100K ./learner: 0.9313–0.9318 over seeds 1–3).
func DefaultRankerConfig() RankerConfig {
	return RankerConfig{
		Dim:             32,
		Bottom:          []int{16},
		Top:             []int{16},
		HistoryLen:      32,
		LRBias:          0.1,
		LREmbedding:     0.1,
		LRDense:         0.001,
		L2Bias:          0.001,
		L2Embedding:     0.03,
		L2Dense:         1e-5,
		AdagradInit:     0.1,
		BatchSize:       32,
		Negatives:       2,
		InitStd:         0.05,
		Shrinkage:       5,
		SessionGapHours: 2,
		HalfLifeHours:   168,
		RerankTop:       50,
		Seed:            1,
	}
}

// Validate checks c field by field.
func (c *RankerConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ranker: "+format, args...)) }
	if c.Dim <= 0 || c.Dim > 1024 {
		bad("dim must be in 1..1024, got %d", c.Dim)
	}
	for i, n := range c.Bottom {
		if n <= 0 || n > 4096 {
			bad("bottom[%d] must be in 1..4096, got %d", i, n)
		}
	}
	for i, n := range c.Top {
		if n <= 0 || n > 4096 {
			bad("top[%d] must be in 1..4096, got %d", i, n)
		}
	}
	if c.HistoryLen < 0 || c.HistoryLen > 10000 {
		bad("history_len must be in 0..10000, got %d", c.HistoryLen)
	}

	for _, f := range []struct {
		name string
		v    float64
		pos  bool
	}{
		{"lr_bias", c.LRBias, true}, {"lr_embedding", c.LREmbedding, true}, {"lr_dense", c.LRDense, true},
		{"l2_bias", c.L2Bias, false}, {"l2_embedding", c.L2Embedding, false}, {"l2_dense", c.L2Dense, false}, {"adagrad_init", c.AdagradInit, false},
		{"init_std", c.InitStd, false}, {"shrinkage", c.Shrinkage, false}, {"half_life_hours", c.HalfLifeHours, true}, {"session_gap_hours", c.SessionGapHours, false},
	} {
		switch {
		case math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0:
			bad("%s must be a finite non-negative number, got %g", f.name, f.v)
		case f.pos && f.v == 0:
			bad("%s must be positive", f.name)
		}
	}
	if c.BatchSize <= 0 || c.BatchSize > 1<<16 {
		bad("batch_size must be in 1..65536, got %d", c.BatchSize)
	}
	if c.RerankTop < 0 {
		bad("rerank_top must be non-negative, got %d", c.RerankTop)
	}
	if c.Negatives < 0 || c.Negatives > 100 {
		bad("negatives must be in 0..100, got %d", c.Negatives)
	}
	return errors.Join(errs...)
}

// Output heads of the ranker: one per loss.
const (
	rkHeadExplicit = 0 // squared error on the value, as a residual over the global mean
	rkHeadImplicit = 1 // logistic on positives and sampled negatives
	rkNumHeads     = 2
)

// Ranker is the deep ranking model, a member of the DLRM family:
//
//   - sparse part: a user embedding p_u, an item embedding q_i, a history
//     embedding h_u (the scaled sum of implicit item vectors y_j over the
//     user's recent items, as in SVD++), and per-head user, item and global
//     bias terms;
//   - dense part: features computed from the point-in-time features of the
//     Example (log counts, explicit means and their shrunk versions,
//     recency, decayed popularity, cyclic hour-of-day and day-of-week,
//     category overlap with the user's recent items) fed to a bottom MLP
//     whose output z has the embedding width;
//   - interactions: the pairwise dot products of {p_u, q_i, h_u, z}, fed
//     with z to a top MLP with one output per head;
//   - output: s = b0 + b_u + b_i + (p_u+h_u)·q_i + top(z, dots). Explicit
//     events predict globalMean + s_explicit (squared error); implicit
//     events predict sigmoid(s_implicit) (logistic loss, positives and
//     Negatives uniformly sampled items).
//
// Training is online: biases and embeddings take an AdaGrad step on every
// example (so a user's next event already sees the update), the MLP weights
// accumulate gradients for BatchSize examples and then take one Adam step.
// Predictions always use the current weights.
//
// The ranker also remembers, per item, the dense features it last saw
// (counters, popularity, categories) updated in Learn, so ScoreItems can
// rank candidates at serve time without a feature-store round trip.
//
// A Ranker is not safe for concurrent use; for concurrent read-only scoring
// of a Ranker that no longer learns (a loaded snapshot), use NewScorer.
type Ranker struct {
	cfg RankerConfig
	dim int
	// noInit skips the random embedding of new rows while a decode makes
	// rows it then overwrites.
	noInit bool

	users  rkIndex
	items  rkIndex
	cats   rkIndex
	userP  rkTable // p_u
	userB  rkTable // per-head user bias
	userS  rkTable // per-user session bias (explicit head)
	sessTS []int64 // per user: time of the last learned event
	itemQ  rkTable // q_i
	itemY  rkTable // y_j (history vectors)
	itemB  rkTable // per-head item bias
	bias0  rkTable // one row: per-head global bias
	bottom rkMLP
	top    rkMLP
	wide   rkMLP // linear layer from the dense features to the heads

	itemFeat []rkItemState // per item index: the latest features seen
	// uhist caches each user's resolved recent rows (HistoryLen per user,
	// uhistLen valid), see Scorer.resolveHistory. Not serialised.
	uhist    []int32
	uhistLen []int32
	// userOff is the sum over the user's explicit events of the value
	// minus the item's shrunk mean at the time; userOffN counts them.
	userOff, userOffN []float64
	global            features.Global

	// examples counts learned examples (negatives included); pending counts
	// examples whose MLP gradients wait for the next Adam step.
	examples, pending int64
	// version changes whenever the weights do (Learn, UnmarshalBinary).
	version   uint64
	adamT     int64
	explicitN int64
	implicitN int64

	rng *rand.PCG
	sc  *Scorer // scratch for Predict/Learn/ScoreItems

	// link maps the two-stage model's item table (MF's) to the item rows,
	// built once when a snapshot is prepared (linkItems): the candidates
	// then cost no string hash each. Learn drops it.
	link rkLink
}

// rkLink maps another item table's indexes to the ranker's item rows.
type rkLink struct {
	names []string // the table it was built for (identity-checked)
	rows  []int32  // -1: an item the ranker does not know
}

// linkItems links names (MF's item table) to the ranker's item rows.
func (r *Ranker) linkItems(names []string) {
	rows := make([]int32, len(names))
	for i, n := range names {
		rows[i] = r.items.lookup(n)
	}
	r.link = rkLink{names: names, rows: rows}
}

// linkedTo reports whether the link was built for this very table (same
// backing array and length).
func (l *rkLink) linkedTo(names []string) bool {
	return len(names) > 0 && len(l.rows) == len(names) && &l.names[0] == &names[0]
}

var _ Model = (*Ranker)(nil)

// NewRanker returns an untrained ranker.
func NewRanker(cfg RankerConfig) (*Ranker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Bottom = append([]int(nil), cfg.Bottom...)
	cfg.Top = append([]int(nil), cfg.Top...)
	r := &Ranker{cfg: cfg, dim: cfg.Dim}
	r.users = newRKIndex()
	r.items = newRKIndex()
	r.cats = newRKIndex()
	d := cfg.Dim
	ai := cfg.AdagradInit
	r.userP = rkTable{width: d, rowWise: true, init: ai}
	r.userB = rkTable{width: rkNumHeads, init: ai}
	r.userS = rkTable{width: 1, init: ai}
	r.itemQ = rkTable{width: d, rowWise: true, init: ai}
	r.itemY = rkTable{width: d, rowWise: true, init: ai}
	r.itemB = rkTable{width: rkNumHeads, init: ai}
	r.bias0 = rkTable{width: rkNumHeads, init: ai}
	r.bias0.grow()
	r.rng = rand.NewPCG(cfg.Seed, 0x5eed0fa11ced)
	rnd := rand.New(r.rng)
	r.bottom = newRKMLP(rkNumDense, cfg.Bottom, d, true, rnd)
	r.top = newRKMLP(d+rkNumPairs, cfg.Top, rkNumHeads, false, rnd)
	r.wide = newRKMLP(rkNumDense, nil, rkNumHeads, false, rnd)
	clear(r.wide.layers[0].w)
	// The top output starts at zero so an untrained ranker predicts the
	// global mean plus biases.
	last := &r.top.layers[len(r.top.layers)-1]
	clear(last.w)
	r.sc = r.NewScorer()
	r.sc.own = true
	return r, nil
}

// Config returns the ranker's configuration.
func (r *Ranker) Config() RankerConfig {
	c := r.cfg
	c.Bottom = append([]int(nil), c.Bottom...)
	c.Top = append([]int(nil), c.Top...)
	return c
}

// Name implements Model.
func (*Ranker) Name() string { return RankerName }

// Users and Items return how many users and items the ranker has embeddings for.
func (r *Ranker) Users() int { return r.users.len() }

// Items returns how many items the ranker knows.
func (r *Ranker) Items() int { return r.items.len() }

// Examples returns how many examples the ranker has learned from, sampled
// negatives included.
func (r *Ranker) Examples() int64 { return r.examples }

// Predict implements Model: for an explicit event the predicted value
// (unclipped; callers clip to their value range), for an implicit one the
// probability that the user interacts with the item. Unknown users and items
// are scored from biases and dense features alone.
func (r *Ranker) Predict(ex *Example) float64 {
	if ex == nil || ex.Event == nil {
		return 0
	}
	sc := r.sc
	ui, ii := r.users.lookup(ex.Event.User), r.items.lookup(ex.Event.Item)
	sc.setExample(ex, ui, ii)
	sc.forward(ui, ii)
	sc.cache = rkKeyOf(ex, r.version, ui, ii)
	if ex.Event.Kind == streamrec.Explicit {
		return sc.gm + sc.s[rkHeadExplicit]
	}
	return rkSigmoid(sc.s[rkHeadImplicit])
}

// Learn implements Model: one online step on the example (and, for an
// implicit event, on Negatives sampled items), then it records the item's
// features for serving.
func (r *Ranker) Learn(ex *Example) {
	if ex == nil || ex.Event == nil || ex.User == nil || ex.Item == nil || ex.Global == nil {
		return
	}
	ev := ex.Event
	if ev.Kind == streamrec.Explicit && (math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0)) {
		return
	}
	if r.link.rows != nil {
		r.link = rkLink{} // new items would be missing from it
	}
	ui := r.userIndex(ev.User)
	ii := r.itemIndex(ev.Item)
	sc := r.sc
	if !sc.cache.valid || sc.cache != rkKeyOf(ex, r.version, ui, ii) {
		sc.setExample(ex, ui, ii)
		sc.forward(ui, ii)
	}
	sc.cache.valid = false
	r.version++
	if ev.Kind == streamrec.Explicit {
		r.explicitN++
		sc.backward(rkHeadExplicit, sc.gm+sc.s[rkHeadExplicit]-ev.Value)
		r.applySparse(sc, ui, ii)
		r.step()
		// Offsets from the point-in-time counters (data, not weights).
		k := r.cfg.Shrinkage
		r.userOff[ui] += ev.Value - sc.gm - rkShrunk(&ex.Item.Counters, sc.gm, k)
		r.userOffN[ui]++
		st := &r.itemFeat[ii]
		st.off += ev.Value - sc.gm - rkShrunk(&ex.User.Counters, sc.gm, k)
		st.offN++
	} else {
		r.implicitN++
		w := ev.Weight
		if w <= 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			w = 1
		}
		sc.backward(rkHeadImplicit, w*(rkSigmoid(sc.s[rkHeadImplicit])-1))
		r.applySparse(sc, ui, ii)
		r.step()
		if n := r.items.len(); n > 1 {
			for k := 0; k < r.cfg.Negatives; k++ {
				neg := int32(r.rng.Uint64() % uint64(n))
				if neg == ii {
					continue
				}
				sc.sumHistory() // the y vectors just moved
				sc.setTableItem(neg)
				sc.forward(ui, neg)
				sc.backward(rkHeadImplicit, rkSigmoid(sc.s[rkHeadImplicit]))
				r.applySparse(sc, ui, neg)
				r.step()
			}
		}
	}
	r.observe(ex, ii)
}

// step counts one learned example and takes the Adam step when a
// mini-batch is complete.
func (r *Ranker) step() {
	r.examples++
	r.pending++
	if r.pending >= int64(r.cfg.BatchSize) {
		r.adamT++
		scale := 1 / float64(r.pending)
		r.bottom.adam(r.cfg.LRDense, r.cfg.L2Dense, scale, r.adamT)
		r.top.adam(r.cfg.LRDense, r.cfg.L2Dense, scale, r.adamT)
		r.wide.adam(r.cfg.LRDense, r.cfg.L2Dense, scale, r.adamT)
		r.pending = 0
	}
}

// userIndex returns the user's row, creating it (with random embedding) if new.
func (r *Ranker) userIndex(id string) int32 {
	if i, ok := r.users.get(id); ok {
		return i
	}
	i := r.users.add(id)
	r.userP.grow()
	r.userB.grow()
	r.userS.grow()
	r.sessTS = append(r.sessTS, 0)
	r.uhist = append(r.uhist, make([]int32, r.cfg.HistoryLen)...)
	r.uhistLen = append(r.uhistLen, 0)
	r.userOff = append(r.userOff, 0)
	r.userOffN = append(r.userOffN, 0)
	r.initRow(r.userP.row(i))
	return i
}

// itemIndex returns the item's row, creating it if new.
func (r *Ranker) itemIndex(id string) int32 {
	if i, ok := r.items.get(id); ok {
		return i
	}
	i := r.items.add(id)
	r.itemQ.grow()
	r.itemY.grow()
	r.itemB.grow()
	r.itemFeat = append(r.itemFeat, rkItemState{})
	r.initRow(r.itemQ.row(i))
	return i
}

func (r *Ranker) initRow(v []float64) {
	if r.cfg.InitStd == 0 || r.noInit {
		return
	}
	rnd := rand.New(r.rng)
	for j := range v {
		v[j] = rnd.NormFloat64() * r.cfg.InitStd
	}
}

// applySparse takes the AdaGrad step on the rows the last backward touched.
func (r *Ranker) applySparse(sc *Scorer, ui, ii int32) {
	c := &r.cfg
	r.userP.adagrad(ui, sc.gPu, c.LREmbedding, c.L2Embedding)
	r.itemQ.adagrad(ii, sc.gQi, c.LREmbedding, c.L2Embedding)
	r.userB.adagrad(ui, sc.gB[:], c.LRBias, c.L2Bias)
	r.itemB.adagrad(ii, sc.gB[:], c.LRBias, c.L2Bias)
	r.bias0.adagrad(0, sc.gB[:], c.LRBias, 0)
	if c.SessionGapHours > 0 {
		if !sc.sessOn { // a new session starts from zero
			r.userS.row(ui)[0] = 0
			r.userS.acc[ui] = r.userS.init
		}
		r.userS.adagrad(ui, sc.gB[rkHeadExplicit:rkHeadExplicit+1], c.LRBias, c.L2Bias)
		r.sessTS[ui] = max(r.sessTS[ui], sc.ts)
	}
	if sc.histN > 0 {
		for j := range sc.gY {
			sc.gY[j] = sc.gH[j] * sc.histScale
		}
		gg := floats.Dot(sc.gY, sc.gY)
		for _, hi := range sc.histIdx {
			r.itemY.rowStep(hi, r.itemY.row(hi), sc.gY, gg, c.LREmbedding, c.L2Embedding)
		}
	}
}

// observe records the item's features after the event, for serving, and
// the global counters.
func (r *Ranker) observe(ex *Example, ii int32) {
	st := &r.itemFeat[ii]
	st.c = ex.Item.Counters
	hl := r.halfLife()
	st.pop = ex.Item.PopularityAt(ex.Event.TS, hl)
	if ex.Item.PopularityTS > ex.Event.TS {
		st.popTS = ex.Item.PopularityTS
	} else {
		st.popTS = ex.Event.TS
	}
	ev := ex.Event
	rkApplyCounters(&st.c, ev)
	w := ev.Weight
	if ev.Kind == streamrec.Explicit || w <= 0 {
		w = 1
	}
	st.pop += w
	if len(ex.Item.Categories) > 0 || st.cats == nil {
		st.cats = st.cats[:0]
		for _, name := range ex.Item.Categories {
			st.cats = append(st.cats, r.categoryIndex(name))
		}
	}
	r.global = *ex.Global
	r.global.Events++
	if ev.Kind == streamrec.Explicit {
		r.global.Explicit++
		r.global.ExplicitSum += ev.Value
	}
	if ev.TS > r.global.LastTS {
		r.global.LastTS = ev.TS
	}
}

func (r *Ranker) categoryIndex(name string) int32 {
	if i, ok := r.cats.get(name); ok {
		return i
	}
	return r.cats.add(name)
}

// rkApplyCounters adds one event to c, as the feature store does.
func rkApplyCounters(c *features.Counters, ev *streamrec.Event) {
	c.Events++
	if ev.Kind == streamrec.Explicit {
		c.Explicit++
		c.ExplicitSum += ev.Value
	} else {
		c.Implicit++
		c.ImplicitWeight += ev.Weight
	}
	if c.FirstTS == 0 || ev.TS < c.FirstTS {
		c.FirstTS = ev.TS
	}
	if ev.TS > c.LastTS {
		c.LastTS = ev.TS
	}
}

// ScoreItems scores candidate items for a user at event time ts (Unix ms)
// with the item features the ranker remembers from training, and returns
// dst resized to len(items) with one score per item, in order. Scores are
// comparable within one call. The head is the implicit one (probability of
// interaction) once the ranker has learned from implicit events, else the
// explicit one (predicted value). u may be nil or unknown (cold start);
// unknown items get feature-only scores. It reuses internal buffers and is
// not safe for concurrent use: use a Scorer per goroutine for that.
func (r *Ranker) ScoreItems(u *features.User, items []string, ts int64, dst []float64) []float64 {
	return r.sc.ScoreItems(u, items, ts, dst)
}

// ItemCategories returns the categories the ranker last saw for item (nil
// if unknown). The slice is freshly allocated.
func (r *Ranker) ItemCategories(item string) []string {
	i, ok := r.items.get(item)
	if !ok {
		return nil
	}
	cats := r.itemFeat[i].cats
	if len(cats) == 0 {
		return nil
	}
	out := make([]string, len(cats))
	for k, c := range cats {
		out[k] = r.cats.ids[c]
	}
	return out
}

// ItemIDs calls fn for every item the ranker knows, in first-seen order,
// until fn returns false.
func (r *Ranker) ItemIDs(fn func(item string) bool) {
	for _, id := range r.items.ids {
		if !fn(id) {
			return
		}
	}
}

// UserVector returns a copy of the user's embedding p_u as float32 (for the
// feature store's user vectors), or nil for an unknown user.
func (r *Ranker) UserVector(user string) []float32 {
	i, ok := r.users.get(user)
	if !ok {
		return nil
	}
	row := r.userP.row(i)
	out := make([]float32, len(row))
	for k, v := range row {
		out[k] = float32(v)
	}
	return out
}

func (r *Ranker) halfLife() time.Duration {
	return time.Duration(r.cfg.HalfLifeHours * float64(time.Hour))
}

func rkSigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}
