package learner

import (
	"math"
	"slices"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"gonum.org/v1/gonum/floats"
)

// rkIndex maps string ids to dense rows in first-seen order.
type rkIndex struct {
	ids []string
	m   map[string]int32
}

func newRKIndex() rkIndex { return rkIndex{m: make(map[string]int32)} }

func (x *rkIndex) len() int { return len(x.ids) }

func (x *rkIndex) get(id string) (int32, bool) {
	i, ok := x.m[id]
	return i, ok
}

// lookup returns id's row or -1.
func (x *rkIndex) lookup(id string) int32 {
	if i, ok := x.m[id]; ok {
		return i
	}
	return -1
}

func (x *rkIndex) add(id string) int32 {
	i := int32(len(x.ids))
	x.ids = append(x.ids, id)
	x.m[id] = i
	return i
}

// rkTable holds one row of parameters per entity with AdaGrad
// accumulators: one per coordinate, or one per row when rowWise is set (the
// row-wise AdaGrad of DLRM's embedding tables: a single square root per row
// update instead of one per coordinate).
type rkTable struct {
	width   int
	rowWise bool
	init    float64 // initial accumulator: bounds the first steps to about lr·|g|/sqrt(init)
	data    []float64
	acc     []float64
}

func (t *rkTable) accWidth() int {
	if t.rowWise {
		return 1
	}
	return t.width
}

// reserve makes room for n more rows, so that growing to them does not
// reallocate (decoding knows the row count up front).
func (t *rkTable) reserve(n int) {
	t.data = slices.Grow(t.data, n*t.width)
	t.acc = slices.Grow(t.acc, n*t.accWidth())
}

func (t *rkTable) grow() {
	for k := 0; k < t.width; k++ {
		t.data = append(t.data, 0)
	}
	for k := t.accWidth(); k > 0; k-- {
		t.acc = append(t.acc, t.init)
	}
}

func (t *rkTable) row(i int32) []float64 {
	return t.data[int(i)*t.width : int(i+1)*t.width]
}

const rkAdagradEps = 1e-6

// adagrad applies one AdaGrad step with gradient g (plus L2) to row i.
func (t *rkTable) adagrad(i int32, g []float64, lr, l2 float64) {
	w := t.data[int(i)*t.width : int(i+1)*t.width]
	_ = g[len(w)-1]
	if t.rowWise {
		t.rowStep(i, w, g, floats.Dot(g, g), lr, l2)
		return
	}
	a := t.acc[int(i)*t.width : int(i+1)*t.width]
	_ = a[len(w)-1]
	for j := range w {
		gj := g[j] + l2*w[j]
		if gj == 0 {
			continue
		}
		a[j] += gj * gj
		w[j] -= lr * gj / math.Sqrt(a[j]+rkAdagradEps)
	}
}

// rowStep is the row-wise AdaGrad step on row i (values w) with loss
// gradient g, gg = g·g, and L2: the accumulator grows by the mean square
// of g + l2·w, then w -= step·(g + l2·w), with vector kernels.
func (t *rkTable) rowStep(i int32, w, g []float64, gg, lr, l2 float64) {
	ss := gg
	if l2 != 0 {
		ss += 2*l2*floats.Dot(g, w) + l2*l2*floats.Dot(w, w)
	}
	if ss == 0 {
		return
	}
	t.acc[i] += ss / float64(len(w))
	step := lr / math.Sqrt(t.acc[i]+rkAdagradEps)
	if l2 != 0 {
		floats.Scale(1-step*l2, w)
	}
	floats.AddScaled(w, -step, g)
}

// rkItemState is what the ranker remembers of an item for serving.
type rkItemState struct {
	c     features.Counters
	pop   float64 // decayed popularity as of popTS
	popTS int64
	cats  []int32
	// off is the sum over the item's explicit events of the value minus
	// the user's shrunk mean at the time; offN counts them.
	off, offN float64
}

// Dense feature layout (see Scorer.dense).
const (
	rkNumDense = 24
	rkNumVecs  = 4 // p_u, q_i, h_u, z
	rkNumPairs = rkNumVecs * (rkNumVecs - 1) / 2
)

// Scorer holds the buffers of one forward (and backward) pass. The Ranker
// owns one for Predict, Learn and ScoreItems; NewScorer makes more for
// concurrent read-only scoring of a Ranker that is not learning meanwhile.
type Scorer struct {
	r *Ranker

	// user side
	u         *features.User
	ts        int64
	gm        float64 // global explicit mean
	histIdx   []int32
	histPos   []int32 // resolved recent rows, -1 for unknown items
	ui        int32   // the user's row, -1 if unknown
	sessOn    bool    // the last forward used the user's session bias
	own       bool    // the ranker's own scorer: may update its caches
	histN     int
	histScale float64
	catCount  []int32
	catTouch  []int32

	// item side
	ic      features.Counters
	ipop    float64
	icats   []int32
	ioff    float64 // item offset sum and count (rkItemState.off)
	ioffN   float64
	overlap float64

	x      []float64            // dense features (aliases bot.acts[0])
	xu     [rkUserDense]float64 // the user-side entries of x, set once per user by setUser
	bot    rkMLPScratch
	topS   rkMLPScratch
	wideS  rkMLPScratch
	pu, qi []float64
	h      []float64
	zero   []float64
	vecs   [rkNumVecs][]float64
	s      [rkNumHeads]float64

	// ScoreItems' cascade buffers
	rows, order []int32
	cheap       []float64

	// cache lets Learn reuse the forward pass of the Predict just before it
	// on the same example with unchanged weights.
	cache rkForwardKey

	// gradients of the sparse parameters after backward
	gPu, gQi, gH, gY, gZ []float64
	gB                   [rkNumHeads]float64
}

// rkPair is the position of the dot product of vectors a < b among the
// pairwise interactions (row-major upper triangle).
func rkPair(a, b int) int { return a*(2*rkNumVecs-a-1)/2 + (b - a - 1) }

// rkForwardKey identifies the example and weights of the last forward pass.
type rkForwardKey struct {
	valid         bool
	version       uint64
	ex            *Example
	ev            *streamrec.Event
	user, item    string
	ts            int64
	value         float64
	kind          streamrec.Kind
	ui, ii        int32
	uEv, iEv, gEv int64
}

func rkKeyOf(ex *Example, version uint64, ui, ii int32) rkForwardKey {
	k := rkForwardKey{valid: true, version: version, ex: ex, ev: ex.Event, user: ex.Event.User, item: ex.Event.Item,
		ts: ex.Event.TS, value: ex.Event.Value, kind: ex.Event.Kind, ui: ui, ii: ii}
	if ex.User != nil {
		k.uEv = ex.User.Events
	}
	if ex.Item != nil {
		k.iEv = ex.Item.Events
	}
	if ex.Global != nil {
		k.gEv = ex.Global.Events
	}
	return k
}

// NewScorer returns a scorer with its own buffers over r. Several scorers
// may score concurrently as long as r does not learn or unmarshal meanwhile.
func (r *Ranker) NewScorer() *Scorer {
	d := r.dim
	sc := &Scorer{r: r}
	sc.bot = r.bottom.newScratch()
	sc.topS = r.top.newScratch()
	sc.wideS = r.wide.newScratch()
	sc.x = sc.bot.acts[0]
	sc.h = make([]float64, d)
	sc.zero = make([]float64, d)
	sc.gPu = make([]float64, d)
	sc.gQi = make([]float64, d)
	sc.gH = make([]float64, d)
	sc.gY = make([]float64, d)
	sc.gZ = make([]float64, d)
	sc.histIdx = make([]int32, 0, r.cfg.HistoryLen)
	sc.histPos = make([]int32, 0, r.cfg.HistoryLen)
	return sc
}

// setUser prepares the user side: history rows and category histogram. ui
// is the user's row (-1 if unknown); the ranker's own scorer uses it to
// reuse the user's resolved history from the previous event.
func (sc *Scorer) setUser(u *features.User, ui int32, ts int64, gm float64) {
	r := sc.r
	sc.cache.valid = false
	sc.u, sc.ts, sc.gm = u, ts, gm
	for _, c := range sc.catTouch {
		sc.catCount[c] = 0
	}
	sc.catTouch = sc.catTouch[:0]
	if n := r.cats.len(); len(sc.catCount) < n {
		sc.catCount = append(sc.catCount, make([]int32, n-len(sc.catCount))...)
	}
	sc.histIdx = sc.histIdx[:0]
	if u != nil && r.cfg.HistoryLen > 0 {
		recent := u.Recent
		if len(recent) > r.cfg.HistoryLen {
			recent = recent[:r.cfg.HistoryLen]
		}
		pos := sc.resolveHistory(recent, ui)
		for _, j := range pos {
			if j < 0 {
				continue
			}
			sc.histIdx = append(sc.histIdx, j)
			for _, c := range r.itemFeat[j].cats {
				if sc.catCount[c] == 0 {
					sc.catTouch = append(sc.catTouch, c)
				}
				sc.catCount[c]++
			}
		}
	}
	sc.histN = len(sc.histIdx)
	sc.histScale = 0
	if sc.histN > 0 {
		sc.histScale = 1 / math.Sqrt(float64(sc.histN))
	}
	sc.ui = ui
	sc.sumHistory()
	sc.userDense()
}

// rkUserDense is how many entries of the dense vector depend on the user
// and the time only (rkUserSlots).
const rkUserDense = 13

// rkUserSlots are those entries' positions in the dense vector.
var rkUserSlots = [rkUserDense]int{0, 1, 4, 6, 8, 10, 12, 15, 16, 17, 18, 20, 22}

// userDense computes the user-side entries of the dense vector once, since
// ScoreItems scores many items for one user at one time.
func (sc *Scorer) userDense() {
	var uc features.Counters
	if sc.u != nil {
		uc = sc.u.Counters
	}
	r := sc.r
	gm, k, ts := sc.gm, r.cfg.Shrinkage, sc.ts
	sec := ts / 1000
	day := sec / 86400
	if sec < 0 {
		day--
	}
	hour := float64(sec-day*86400) / 3600
	dow := float64(((day+4)%7 + 7) % 7) // 1970-01-01 was a Thursday
	off := 0.0
	if sc.ui >= 0 {
		off = r.userOff[sc.ui] / (r.userOffN[sc.ui] + k)
	}
	sc.xu = [rkUserDense]float64{
		rkLog1p(float64(uc.Events)) / 5,
		rkLog1p(float64(uc.Explicit)) / 5,
		rkRawMean(&uc, gm),
		rkShrunk(&uc, gm, k),
		rkShare(uc.Implicit, uc.Events),
		rkHoursSince(ts, uc.LastTS) / 5,
		rkHoursSince(ts, uc.FirstTS) / 5,
		math.Sin(2 * math.Pi * hour / 24),
		math.Cos(2 * math.Pi * hour / 24),
		math.Sin(2 * math.Pi * dow / 7),
		math.Cos(2 * math.Pi * dow / 7),
		rkBool(uc.Events == 0),
		off,
	}
}

// resolveHistory maps recent item ids to rows (-1: unknown item). The
// ranker's own scorer keeps each user's resolved list from the last call and
// matches the new list against it — usually the same list shifted by the
// newest item — comparing ids, so the answer is always exact and most map
// lookups are avoided.
func (sc *Scorer) resolveHistory(recent []string, ui int32) []int32 {
	r := sc.r
	out := sc.histPos[:0]
	var old []int32
	if sc.own && ui >= 0 {
		h := r.cfg.HistoryLen
		old = r.uhist[int(ui)*h : int(ui)*h+int(r.uhistLen[ui])]
	}
	p := 0
	for _, id := range recent {
		j := int32(-1)
		switch {
		case p < len(old) && old[p] >= 0 && r.items.ids[old[p]] == id:
			j = old[p]
			p++
		case p+1 < len(old) && old[p+1] >= 0 && r.items.ids[old[p+1]] == id:
			j = old[p+1]
			p += 2
		default:
			j = r.items.lookup(id)
		}
		out = append(out, j)
	}
	sc.histPos = out
	if sc.own && ui >= 0 {
		h := r.cfg.HistoryLen
		copy(r.uhist[int(ui)*h:int(ui)*h+h], out)
		r.uhistLen[ui] = int32(len(out))
	}
	return out
}

// sumHistory computes the history embedding h_u from the current y vectors.
func (sc *Scorer) sumHistory() {
	r := sc.r
	clear(sc.h)
	for _, j := range sc.histIdx {
		floats.Add(sc.h, r.itemY.row(j))
	}
	if sc.histN > 0 {
		floats.Scale(sc.histScale, sc.h)
	}
}

// setExample prepares both sides from an Example's point-in-time features;
// ui is the user's row or -1.
func (sc *Scorer) setExample(ex *Example, ui, ii int32) {
	gm := 0.0
	if ex.Global != nil {
		gm = ex.Global.ExplicitMean()
	}
	sc.setUser(ex.User, ui, ex.Event.TS, gm)
	sc.icats = sc.icats[:0]
	sc.ioff, sc.ioffN = 0, 0
	if ii >= 0 {
		st := &sc.r.itemFeat[ii]
		sc.ioff, sc.ioffN = st.off, st.offN
	}
	if ex.Item == nil {
		sc.ic, sc.ipop = features.Counters{}, 0
	} else {
		sc.ic = ex.Item.Counters
		sc.ipop = ex.Item.PopularityAt(ex.Event.TS, sc.r.halfLife())
		for _, name := range ex.Item.Categories {
			if c, ok := sc.r.cats.get(name); ok {
				sc.icats = append(sc.icats, c)
			}
		}
	}
	sc.dense()
}

// setTableItem prepares the item side from the ranker's item table.
func (sc *Scorer) setTableItem(i int32) {
	st := &sc.r.itemFeat[i]
	sc.ic = st.c
	sc.ipop = features.Decay(st.pop, sc.ts-st.popTS, sc.r.halfLife())
	sc.icats = append(sc.icats[:0], st.cats...)
	sc.ioff, sc.ioffN = st.off, st.offN
	sc.dense()
}

// setUnknownItem prepares the item side of an item the ranker never saw.
func (sc *Scorer) setUnknownItem() {
	sc.ic, sc.ipop = features.Counters{}, 0
	sc.icats = sc.icats[:0]
	sc.ioff, sc.ioffN = 0, 0
	sc.dense()
}

func rkLog1p(v float64) float64 {
	if !(v > 0) {
		return 0
	}
	if v > 1e300 {
		v = 1e300
	}
	return math.Log1p(v)
}

// rkHoursSince is log1p of the hours from then to now, 0 when then is unset
// or in the future.
func rkHoursSince(now, then int64) float64 {
	if then == 0 || now <= then {
		return 0
	}
	return rkLog1p(float64(now-then) / 3.6e6)
}

func rkShrunk(c *features.Counters, gm, k float64) float64 {
	n := float64(c.Explicit)
	if n+k == 0 {
		return 0
	}
	return (c.ExplicitSum - n*gm) / (n + k)
}

func rkRawMean(c *features.Counters, gm float64) float64 {
	if c.Explicit == 0 {
		return 0
	}
	return c.ExplicitSum/float64(c.Explicit) - gm
}

func rkShare(part, all int64) float64 {
	if all <= 0 {
		return 0
	}
	return float64(part) / float64(all)
}

func rkBool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dense fills the dense feature vector: the user side from sc.xu, the item
// side from the prepared item.
func (sc *Scorer) dense() {
	ic := &sc.ic
	r := sc.r
	gm, k, ts := sc.gm, r.cfg.Shrinkage, sc.ts
	x := sc.x
	for i, p := range rkUserSlots {
		x[p] = sc.xu[i]
	}
	x[2] = rkLog1p(float64(ic.Events)) / 5
	x[3] = rkLog1p(float64(ic.Explicit)) / 5
	x[5] = rkRawMean(ic, gm)
	x[7] = rkShrunk(ic, gm, k)
	x[9] = rkShare(ic.Implicit, ic.Events)
	x[11] = rkHoursSince(ts, ic.LastTS) / 5
	x[13] = rkHoursSince(ts, ic.FirstTS) / 5
	x[14] = rkLog1p(sc.ipop) / 5
	best := int32(0)
	for _, c := range sc.icats {
		if int(c) < len(sc.catCount) && sc.catCount[c] > best {
			best = sc.catCount[c]
		}
	}
	sc.overlap = 0
	if sc.histN > 0 {
		sc.overlap = float64(best) / float64(sc.histN)
	}
	x[19] = sc.overlap
	x[21] = rkBool(ic.Events == 0)
	// Offsets: the user's mean deviation from the items' shrunk means (in
	// xu) and the item's mean deviation from its raters' shrunk means, both
	// shrunk.
	x[23] = 0
	if sc.ioffN+k > 0 {
		x[23] = sc.ioff / (sc.ioffN + k)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			x[i] = 0
		}
	}
}

// forward computes sc.s for user row ui and item row ii (-1: unknown).
func (sc *Scorer) forward(ui, ii int32) {
	r := sc.r
	var bu, bi []float64
	sc.pu, sc.qi = sc.zero, sc.zero
	if ui >= 0 {
		sc.pu = r.userP.row(ui)
		bu = r.userB.row(ui)
	}
	if ii >= 0 {
		sc.qi = r.itemQ.row(ii)
		bi = r.itemB.row(ii)
	}
	z := r.bottom.forward(&sc.bot)
	sc.vecs = [rkNumVecs][]float64{sc.pu, sc.qi, sc.h, z}
	tin := sc.topS.acts[0]
	d := r.dim
	copy(tin, z)
	p := d
	for a := 0; a < rkNumVecs; a++ {
		for b := a + 1; b < rkNumVecs; b++ {
			tin[p] = floats.Dot(sc.vecs[a], sc.vecs[b])
			p++
		}
	}
	t := r.top.forward(&sc.topS)
	copy(sc.wideS.acts[0], sc.x)
	wv := r.wide.forward(&sc.wideS)
	sc.heads(ui, bu, bi, tin[d:], t, wv)
}

// heads sums the output scores sc.s from the biases, the pairwise dot
// products (for the MF term), the top MLP output t and the wide output wv.
func (sc *Scorer) heads(ui int32, bu, bi, dots, t, wv []float64) {
	r := sc.r
	// The MF term (p_u + h_u)·q_i: pairs (0,1) and (1,2).
	mf := dots[rkPair(0, 1)] + dots[rkPair(1, 2)]
	b0 := r.bias0.row(0)
	// The session bias applies while the user's session lasts (no gap
	// longer than SessionGapHours since the user's last learned event).
	sess := 0.0
	sc.sessOn = false
	if ui >= 0 && r.cfg.SessionGapHours > 0 {
		last := r.sessTS[ui]
		if last != 0 && sc.ts >= last && float64(sc.ts-last) <= r.cfg.SessionGapHours*3.6e6 {
			sc.sessOn = true
			sess = r.userS.row(ui)[0]
		}
	}
	for k := 0; k < rkNumHeads; k++ {
		v := b0[k] + mf + t[k] + wv[k]
		if k == rkHeadExplicit {
			v += sess
		}
		if bu != nil {
			v += bu[k]
		}
		if bi != nil {
			v += bi[k]
		}
		if math.IsNaN(v) {
			v = 0
		}
		sc.s[k] = math.Max(-1e6, math.Min(1e6, v))
	}
}

// rkGradClip bounds dLoss/ds so that one wild example cannot blow up weights.
const rkGradClip = 10

// backward takes dLoss/ds for one head, accumulates the MLP gradients and
// leaves the sparse gradients in sc.g*.
func (sc *Scorer) backward(head int, delta float64) {
	r := sc.r
	d := r.dim
	delta = math.Max(-rkGradClip, math.Min(rkGradClip, delta))
	sc.gB = [rkNumHeads]float64{}
	sc.gB[head] = delta
	gt := sc.topS.grads[len(r.top.layers)]
	clear(gt)
	gt[head] = delta
	r.top.backward(&sc.topS, true)
	gw := sc.wideS.grads[1]
	clear(gw)
	gw[head] = delta
	r.wide.backward(&sc.wideS, false)
	gin := sc.topS.grads[0]
	// direct MF term: delta * (p_u·q_i + h_u·q_i)
	pu, qi, h := sc.pu, sc.qi, sc.h
	for j := 0; j < d; j++ {
		sc.gPu[j] = delta * qi[j]
		sc.gQi[j] = delta * (pu[j] + h[j])
		sc.gH[j] = delta * qi[j]
	}
	copy(sc.gZ, gin[:d])
	grads := [rkNumVecs][]float64{sc.gPu, sc.gQi, sc.gH, sc.gZ}
	p := d
	for a := 0; a < rkNumVecs; a++ {
		for b := a + 1; b < rkNumVecs; b++ {
			if g := gin[p]; g != 0 {
				floats.AddScaled(grads[a], g, sc.vecs[b])
				floats.AddScaled(grads[b], g, sc.vecs[a])
			}
			p++
		}
	}
	copy(sc.bot.grads[len(r.bottom.layers)], sc.gZ)
	r.bottom.backward(&sc.bot, false)
}

// ScoreItems is Ranker.ScoreItems on this scorer's buffers.
func (sc *Scorer) ScoreItems(u *features.User, items []string, ts int64, dst []float64) []float64 {
	sc.rows = rkGrowInt32(sc.rows, len(items))
	for k, id := range items {
		sc.rows[k] = sc.r.items.lookup(id)
	}
	return sc.scoreRows(u, sc.rows, ts, dst)
}

// ScoreCandidates scores the items names[c] for c in cand, like
// ScoreItems: a two-stage model's candidates, as indexes into its item
// table, which a prepared snapshot's ranker has linked to its rows.
func (sc *Scorer) ScoreCandidates(u *features.User, names []string, cand []int32, ts int64, dst []float64) []float64 {
	r := sc.r
	sc.rows = rkGrowInt32(sc.rows, len(cand))
	if r.link.linkedTo(names) {
		for k, c := range cand {
			sc.rows[k] = r.link.rows[c]
		}
	} else {
		for k, c := range cand {
			sc.rows[k] = r.items.lookup(names[c])
		}
	}
	return sc.scoreRows(u, sc.rows, ts, dst)
}

// scoreRows scores the item rows (-1: unknown item); rows is sc.rows.
func (sc *Scorer) scoreRows(u *features.User, rows []int32, ts int64, dst []float64) []float64 {
	r := sc.r
	if cap(dst) < len(rows) {
		dst = make([]float64, len(rows))
	}
	dst = dst[:len(rows)]
	ui := int32(-1)
	if u != nil {
		ui = r.users.lookup(u.ID)
	}
	sc.setUser(u, ui, ts, r.global.ExplicitMean())
	head := rkHeadExplicit
	if r.implicitN > 0 {
		head = rkHeadImplicit
	}
	full := func(k int, ii int32) float64 {
		if ii >= 0 {
			sc.setTableItem(ii)
		} else {
			sc.setUnknownItem()
		}
		sc.forward(ui, ii)
		if head == rkHeadImplicit {
			return rkSigmoid(sc.s[rkHeadImplicit])
		}
		return sc.gm + sc.s[rkHeadExplicit]
	}
	top := r.cfg.RerankTop
	if top <= 0 || top >= len(rows) {
		for k, ii := range rows {
			dst[k] = full(k, ii)
		}
		return dst
	}
	// Cascade: a cheap first pass (biases and the MF term) over all
	// candidates, the full network on the best RerankTop of them only.
	sc.cheap = rkGrow(sc.cheap, len(rows))
	sc.order = rkGrowInt32(sc.order, len(rows))
	b0 := r.bias0.row(0)[head]
	pu := sc.zero
	if ui >= 0 {
		pu = r.userP.row(ui)
		b0 += r.userB.row(ui)[head]
	}
	for k, ii := range rows {
		v := b0
		if ii >= 0 {
			q := r.itemQ.row(ii)
			v += r.itemB.row(ii)[head] + floats.Dot(pu, q) + floats.Dot(sc.h, q)
		}
		if math.IsNaN(v) {
			v = math.Inf(-1)
		}
		sc.cheap[k], sc.order[k] = v, int32(k)
	}
	cheap := sc.cheap
	rkSelectTop(sc.order, cheap, top)
	minFull := math.Inf(1)
	for _, k := range sc.order[:top] {
		dst[k] = full(int(k), rows[k])
		minFull = math.Min(minFull, dst[k])
	}
	// The rest keep their cheap order, strictly below every full score.
	for _, k := range sc.order[top:] {
		if head == rkHeadImplicit {
			dst[k] = minFull * 0.5 * rkSigmoid(cheap[k])
		} else {
			dst[k] = minFull - 2 + rkSigmoid(cheap[k])
		}
	}
	return dst
}

// rkSelectTop reorders order (indexes into key) so that its first k
// entries are the k largest keys (ties: lower index first), in O(n)
// expected time; neither part is sorted.
func rkSelectTop(order []int32, key []float64, k int) {
	selectFirst(order, k, func(a, b int32) bool { return key[a] > key[b] || (key[a] == key[b] && a < b) })
}

func rkGrow(v []float64, n int) []float64 {
	if cap(v) < n {
		return make([]float64, n)
	}
	return v[:n]
}

func rkGrowInt32(v []int32, n int) []int32 {
	if cap(v) < n {
		return make([]int32, n)
	}
	return v[:n]
}
