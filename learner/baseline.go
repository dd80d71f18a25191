package learner

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/streamrec/streamrec"
)

// valueBounds tracks the observed range of explicit values, to clamp predictions.
type valueBounds struct{ lo, hi float64 }

func (r *valueBounds) observe(v float64) {
	if r.lo == 0 && r.hi == 0 {
		r.lo, r.hi = v, v
		return
	}
	r.lo, r.hi = min(r.lo, v), max(r.hi, v)
}

func (r *valueBounds) clamp(v float64) float64 {
	if r.lo == 0 && r.hi == 0 {
		return v
	}
	return min(max(v, r.lo), r.hi)
}

// meanAcc is the mean of explicit values so far.
type meanAcc struct {
	n   int64
	sum float64
}

func (m *meanAcc) add(v float64) { m.n++; m.sum += v }

func (m *meanAcc) mean() float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}

// Mean predicts the global mean of explicit values ("mean").
type Mean struct {
	m meanAcc
}

// NewMean returns the global-mean baseline.
func NewMean() *Mean { return &Mean{} }

// Name implements Model.
func (m *Mean) Name() string { return "mean" }

// Predict implements Model.
func (m *Mean) Predict(ex *Example) float64 { return m.m.mean() }

// Learn implements Model.
func (m *Mean) Learn(ex *Example) {
	if ex.Event.Kind == streamrec.Explicit {
		m.m.add(ex.Event.Value)
	}
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (m *Mean) MarshalBinary() ([]byte, error) {
	var e wbuf
	e.header("mean", 1)
	e.i64(m.m.n)
	e.f64(m.m.sum)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (m *Mean) UnmarshalBinary(b []byte) error {
	d := rbuf{b: b}
	if err := d.header("mean", 1); err != nil {
		return err
	}
	m.m.n, m.m.sum = d.i64(), d.f64()
	return d.done("mean")
}

// Bias predicts mean + user bias + item bias, learned online by SGD with L2
// regularisation ("bias").
type Bias struct {
	cfg          BiasConfig
	m            meanAcc
	rng          valueBounds
	users, items strIndex
	bu, bi       []float32
}

// NewBias returns the user/item bias baseline.
func NewBias(cfg BiasConfig) *Bias {
	return &Bias{cfg: cfg, users: newStrIndex(), items: newStrIndex()}
}

// Name implements Model.
func (b *Bias) Name() string { return "bias" }

// Predict implements Model.
func (b *Bias) Predict(ex *Example) float64 {
	p := b.m.mean()
	if u, ok := b.users.get(ex.Event.User); ok {
		p += float64(b.bu[u])
	}
	if i, ok := b.items.get(ex.Event.Item); ok {
		p += float64(b.bi[i])
	}
	return b.rng.clamp(p)
}

// Learn implements Model; only explicit events move the biases.
func (b *Bias) Learn(ex *Example) {
	if ex.Event.Kind != streamrec.Explicit {
		return
	}
	u, added := b.users.add(ex.Event.User)
	if added {
		b.bu = append(b.bu, 0)
	}
	i, added := b.items.add(ex.Event.Item)
	if added {
		b.bi = append(b.bi, 0)
	}
	r := ex.Event.Value
	if b.m.n == 0 {
		b.m.add(r)
		b.rng.observe(r)
		return
	}
	err := r - (b.m.mean() + float64(b.bu[u]) + float64(b.bi[i]))
	lr, reg := float32(b.cfg.LR), float32(b.cfg.Reg)
	e := float32(err)
	b.bu[u] += lr * (e - reg*b.bu[u])
	b.bi[i] += lr * (e - reg*b.bi[i])
	b.m.add(r)
	b.rng.observe(r)
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (b *Bias) MarshalBinary() ([]byte, error) {
	var e wbuf
	e.header("bias", 1)
	e.i64(b.m.n)
	e.f64(b.m.sum)
	e.f64(b.rng.lo)
	e.f64(b.rng.hi)
	b.users.encode(&e)
	b.items.encode(&e)
	e.f32s(b.bu)
	e.f32s(b.bi)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (b *Bias) UnmarshalBinary(p []byte) error {
	d := rbuf{b: p}
	if err := d.header("bias", 1); err != nil {
		return err
	}
	b.m.n, b.m.sum = d.i64(), d.f64()
	b.rng.lo, b.rng.hi = d.f64(), d.f64()
	b.users.decode(&d)
	b.items.decode(&d)
	b.bu, b.bi = d.f32s(), d.f32s()
	if err := d.done("bias"); err != nil {
		return err
	}
	if len(b.bu) != b.users.len() || len(b.bi) != b.items.len() {
		return fmt.Errorf("bias: %d/%d biases for %d/%d users/items", len(b.bu), len(b.bi), b.users.len(), b.items.len())
	}
	return nil
}

// Popularity ranks items by the sum of their event weights decayed with a
// half-life of event time ("pop"). Scores are kept relative to a reference
// time, so ranking needs no per-item decay and a query decays once.
type Popularity struct {
	halfLifeMs float64
	ref        int64 // reference time (Unix ms) of score
	items      strIndex
	cat        itemCatalog
	score      []float64 // weight decayed to ref
	// order, when prepared (immutable snapshots), holds the item indexes
	// best first (float32 score descending, lower index on ties: the
	// boundedTop order), and catOrder the same per category id, so a query
	// stops after its first k accepted items instead of scanning them all.
	order    []int32
	catOrder [][]int32
	// link maps MF's item indexes to ours (prepared snapshots).
	link itemLink
}

// NewPopularity returns the time-decayed popularity model.
func NewPopularity(halfLife time.Duration) *Popularity {
	return &Popularity{halfLifeMs: float64(halfLife.Milliseconds()), items: newStrIndex(), cat: newItemCatalog()}
}

// Name implements Model.
func (p *Popularity) Name() string { return "pop" }

// factor is the decay multiplier from ref to ts (may exceed 1 for ts > ref).
func (p *Popularity) factor(ts int64) float64 {
	return math.Exp2(-float64(ts-p.ref) / p.halfLifeMs)
}

// At is item i's popularity decayed to ts.
func (p *Popularity) at(i int32, ts int64) float64 { return p.score[i] * p.factor(ts) }

// Predict implements Model: log(1 + popularity) just before the event.
func (p *Popularity) Predict(ex *Example) float64 {
	i, ok := p.items.get(ex.Event.Item)
	if !ok {
		return 0
	}
	return math.Log1p(p.at(i, ex.Event.TS))
}

// Learn implements Model.
func (p *Popularity) Learn(ex *Example) {
	i, added := p.items.add(ex.Event.Item)
	if added {
		p.score = append(p.score, 0)
	}
	if ex.Item != nil {
		p.cat.set(i, ex.Item.Categories)
	}
	ts := ex.Event.TS
	if len(p.score) == 1 && p.ref == 0 {
		p.ref = ts
	}
	// Rebase when ts runs far ahead of ref, before the scale overflows.
	if float64(ts-p.ref)/p.halfLifeMs > 64 {
		f := p.factor(ts)
		for k := range p.score {
			p.score[k] *= f
		}
		p.ref = ts
	}
	w := ex.Event.Weight
	if w <= 0 {
		w = 1
	}
	p.score[i] += w / p.factor(ts)
	p.order, p.catOrder = nil, nil // a learning model scans
	p.link = itemLink{}
}

// linkItems links the item table names (MF's) to ours for scoresAt.
func (p *Popularity) linkItems(names []string) { p.link.build(names, &p.items) }

// scoresAt sets out[k] to the popularity at ts of names[cand[k]] (0 for an
// item we do not know); names is the table the candidates index.
func (p *Popularity) scoresAt(names []string, cand []int32, ts int64, out []float64) {
	f := p.factor(ts)
	for k, c := range cand {
		out[k] = 0
		if j, ok := p.link.get(names, c, &p.items); ok {
			out[k] = p.score[j] * f
		}
	}
}

// prepare builds the serving orders of an immutable (decoded) model.
func (p *Popularity) prepare() {
	n := len(p.score)
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		sa, sb := float32(p.score[a]), float32(p.score[b])
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return int(a - b)
	})
	catOrder := make([][]int32, p.cat.cats.len())
	for _, i := range order {
		if int(i) >= len(p.cat.itemCats) {
			continue
		}
		for _, c := range p.cat.itemCats[i] {
			catOrder[c] = append(catOrder[c], i)
		}
	}
	p.order, p.catOrder = order, catOrder
}

// Recommend implements Recommender: the most popular items at q.TS.
func (p *Popularity) Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	s := getQueryScratch()
	defer putQueryScratch(s)
	s.top.reset(k)
	p.topInto(&s.top, q.Exclude, q.Category)
	f := p.factor(q.TS)
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: p.items.names[c.idx], Score: p.score[c.idx] * f})
	}
	return dst
}

// topInto pushes the popular items passing the filters into t.
func (p *Popularity) topInto(t *boundedTop, exclude func(string) bool, category string) {
	cat := int32(-1)
	if category != "" {
		c, ok := p.cat.category(category)
		if !ok {
			return
		}
		cat = c
	}
	if p.order != nil {
		p.topOrdered(t, exclude, cat)
		return
	}
	for i, v := range p.score {
		if th, full := t.threshold(); full && float32(v) <= th {
			continue
		}
		if cat >= 0 && !p.cat.in(int32(i), cat) {
			continue
		}
		if exclude != nil && exclude(p.items.names[i]) {
			continue
		}
		t.push(float32(v), int32(i))
	}
}

// topOrdered is topInto over the prepared orders: items come best first, so
// the scan stops at the first one that cannot enter a full t.
func (p *Popularity) topOrdered(t *boundedTop, exclude func(string) bool, cat int32) {
	if t.k <= 0 {
		return
	}
	list := p.order
	if cat >= 0 {
		if int(cat) >= len(p.catOrder) {
			return
		}
		list = p.catOrder[cat]
	}
	for _, i := range list {
		v := float32(p.score[i])
		if th, full := t.threshold(); full && v < th {
			return
		}
		if exclude != nil && exclude(p.items.names[i]) {
			continue
		}
		t.push(v, i)
	}
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (p *Popularity) MarshalBinary() ([]byte, error) {
	var e wbuf
	e.header("pop", 1)
	e.f64(p.halfLifeMs)
	e.i64(p.ref)
	p.items.encode(&e)
	p.cat.encode(&e)
	e.f64s(p.score)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (p *Popularity) UnmarshalBinary(b []byte) error {
	d := rbuf{b: b}
	if err := d.header("pop", 1); err != nil {
		return err
	}
	p.halfLifeMs = d.f64()
	p.ref = d.i64()
	p.items.decode(&d)
	p.cat.decode(&d)
	p.score = d.f64s()
	if err := d.done("pop"); err != nil {
		return err
	}
	if len(p.score) != p.items.len() || !(p.halfLifeMs > 0) {
		return fmt.Errorf("pop: %d scores for %d items, half-life %gms", len(p.score), p.items.len(), p.halfLifeMs)
	}
	p.cat.grow(p.items.len())
	p.order, p.catOrder = nil, nil
	p.link = itemLink{}
	return nil
}
