package learner

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/streamrec/streamrec"
)

// adagradInit is the initial AdaGrad accumulator: it bounds the first steps
// of a new parameter to about lr·|g|/sqrt(adagradInit).
const adagradInit = 0.1

// MF is online biased matrix factorisation ("mf"). Explicit events are a
// squared-loss regression of the value on mean + b_u + b_i + p_u·q_i;
// implicit events are BPR updates of the positive item against sampled
// negatives. Every parameter has its own AdaGrad rate. Users and items are
// interned to dense indexes; parameters live in flat float32 slices, so
// learning allocates only when a new user or item appears. Predict and Learn
// are for one goroutine (they share a lookup cache); Recommend and Similar
// only read and may run concurrently on a model that no longer learns.
type MF struct {
	cfg          MFConfig
	dim          int
	users, items strIndex
	cat          itemCatalog
	mean         meanAcc
	bounds       valueBounds

	p, gp, q, gq     []float32 // factors and their AdaGrad accumulators
	bu, gbu, bi, gbi []float32
	// bj is the item bias of the implicit (ranking) score b_j + p_u·q_i,
	// kept apart from the rating bias b_i.
	bj, gbj []float32

	pcg *rand.PCG
	rnd *rand.Rand

	// The trainer predicts then learns the same pair: the last lookups are
	// remembered to skip two map probes.
	lastUser, lastItem string
	lastU, lastI       int32

	dirty     []bool // by user index: vector changed since the last drain
	dirtyList []int32

	// serving, set on immutable (decoded) models, selects the tight
	// top-M scan; a learning model clears it.
	serving bool

	tag *indexTag // new whenever items is replaced (ItemSet)
}

// NewMF returns an untrained MF model seeded with seed.
func NewMF(cfg MFConfig, seed int64) *MF {
	pcg := rand.NewPCG(uint64(seed), 0x6d66)
	return &MF{cfg: cfg, dim: cfg.Dims, users: newStrIndex(), items: newStrIndex(), cat: newItemCatalog(),
		pcg: pcg, rnd: rand.New(pcg), lastU: -1, lastI: -1, tag: new(indexTag)}
}

// Name implements Model.
func (m *MF) Name() string { return "mf" }

// Dims is the factor dimension.
func (m *MF) Dims() int { return m.dim }

// Users and Items count the known users and items.
func (m *MF) Users() int { return m.users.len() }

// Items counts the known items.
func (m *MF) Items() int { return m.items.len() }

func (m *MF) initRow(dst []float32) {
	sd := m.cfg.InitStd
	for k := range dst {
		dst[k] = float32(m.rnd.NormFloat64() * sd)
	}
}

func (m *MF) grow(v []float32, n int, fill float32) []float32 {
	for range n {
		v = append(v, fill)
	}
	return v
}

func (m *MF) user(id string) int32 {
	if id == m.lastUser && m.lastU >= 0 {
		return m.lastU
	}
	u, added := m.users.add(id)
	if added {
		m.p = m.grow(m.p, m.dim, 0)
		m.initRow(m.p[len(m.p)-m.dim:])
		m.gp = m.grow(m.gp, m.dim, adagradInit)
		m.bu = append(m.bu, 0)
		m.gbu = append(m.gbu, adagradInit)
		m.dirty = append(m.dirty, false)
	}
	m.lastUser, m.lastU = id, u
	return u
}

func (m *MF) item(id string) int32 {
	if id == m.lastItem && m.lastI >= 0 {
		return m.lastI
	}
	i, added := m.items.add(id)
	if added {
		m.q = m.grow(m.q, m.dim, 0)
		m.initRow(m.q[len(m.q)-m.dim:])
		m.gq = m.grow(m.gq, m.dim, adagradInit)
		m.bi = append(m.bi, 0)
		m.gbi = append(m.gbi, adagradInit)
		m.bj = append(m.bj, 0)
		m.gbj = append(m.gbj, adagradInit)
	}
	m.lastItem, m.lastI = id, i
	return i
}

// lookup resolves the (user, item) pair for Predict, through the cache.
func (m *MF) lookup(user, item string) (u int32, uok bool, i int32, iok bool) {
	if user == m.lastUser && m.lastU >= 0 {
		u, uok = m.lastU, true
	} else if u, uok = m.users.get(user); uok {
		m.lastUser, m.lastU = user, u
	}
	if item == m.lastItem && m.lastI >= 0 {
		i, iok = m.lastI, true
	} else if i, iok = m.items.get(item); iok {
		m.lastItem, m.lastI = item, i
	}
	return
}

func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func (m *MF) urow(u int32) []float32 { return m.p[int(u)*m.dim : int(u+1)*m.dim] }
func (m *MF) irow(i int32) []float32 { return m.q[int(i)*m.dim : int(i+1)*m.dim] }

// Predict implements Model: the predicted value for explicit events (clamped
// to the observed range), the score b_i + p_u·q_i for implicit ones.
func (m *MF) Predict(ex *Example) float64 {
	u, uok, i, iok := m.lookup(ex.Event.User, ex.Event.Item)
	if ex.Event.Kind != streamrec.Explicit {
		if !iok {
			return 0
		}
		s := m.bj[i]
		if uok {
			s += dot32(m.urow(u), m.irow(i))
		}
		return float64(s)
	}
	p := m.mean.mean()
	if uok {
		p += float64(m.bu[u])
	}
	if iok {
		p += float64(m.bi[i])
	}
	if uok && iok {
		p += float64(dot32(m.urow(u), m.irow(i)))
	}
	return m.bounds.clamp(p)
}

// adagrad applies one AdaGrad step to w given gradient g and accumulator acc.
func adagrad(w, acc *float32, g, lr float32) {
	*acc += g * g
	*w -= lr * g * rsqrt32(*acc)
}

// rsqrt32 is 1/√x for x > 0 by the bit-level estimate and one Newton step
// (relative error below 0.2%, ample for a learning rate), several times
// cheaper than a square root and a division.
func rsqrt32(x float32) float32 {
	y := math.Float32frombits(0x5f375a86 - math.Float32bits(x)>>1)
	return y * (1.5 - 0.5*x*y*y)
}

// Learn implements Model.
func (m *MF) Learn(ex *Example) {
	m.serving = false // a learning model takes the plain scan
	u := m.user(ex.Event.User)
	i := m.item(ex.Event.Item)
	if ex.Item != nil && len(ex.Item.Categories) > 0 {
		m.cat.set(i, ex.Item.Categories)
	}
	if !m.dirty[u] {
		m.dirty[u] = true
		m.dirtyList = append(m.dirtyList, u)
	}
	w := float32(ex.Event.Weight)
	if ex.Event.Kind == streamrec.Explicit {
		m.learnExplicit(u, i, ex.Event.Value)
		if m.cfg.PositiveMin <= 0 || ex.Event.Value < m.cfg.PositiveMin {
			return
		}
		w = 1 // a high rating is also a positive interaction
	}
	if w <= 0 {
		w = 1
	}
	n := m.items.len()
	if n < 2 {
		return
	}
	negs := m.cfg.Negatives
	if ex.Event.Kind == streamrec.Explicit {
		negs = m.cfg.RatingNegatives
	}
	for range negs {
		j := int32(m.rnd.IntN(n))
		if j == i {
			continue
		}
		m.learnPair(u, i, j, w)
	}
}

func (m *MF) learnExplicit(u, i int32, r float64) {
	if m.mean.n == 0 {
		m.mean.add(r)
		m.bounds.observe(r)
		return
	}
	pu, qi := m.urow(u), m.irow(i)
	gpu, gqi := m.gp[int(u)*m.dim:int(u+1)*m.dim], m.gq[int(i)*m.dim:int(i+1)*m.dim]
	qi, gpu, gqi = qi[:len(pu)], gpu[:len(pu)], gqi[:len(pu)]
	pred := m.mean.mean() + float64(m.bu[u]) + float64(m.bi[i]) + float64(dot32(pu, qi))
	e := float32(r - pred)
	blr, breg := float32(m.cfg.BiasLR), float32(m.cfg.BiasReg)
	adagrad(&m.bu[u], &m.gbu[u], -e+breg*m.bu[u], blr)
	adagrad(&m.bi[i], &m.gbi[i], -e+breg*m.bi[i], blr)
	lr, reg := float32(m.cfg.LR), float32(m.cfg.Reg)
	for k := range pu {
		p, q := pu[k], qi[k]
		g1 := -e*q + reg*p
		g2 := -e*p + reg*q
		a1, a2 := gpu[k]+g1*g1, gqi[k]+g2*g2
		gpu[k], gqi[k] = a1, a2
		pu[k] = p - lr*g1*rsqrt32(a1)
		qi[k] = q - lr*g2*rsqrt32(a2)
	}
	m.mean.add(r)
	m.bounds.observe(r)
}

// learnPair is one BPR step: item i preferred over j by user u, weighted w.
func (m *MF) learnPair(u, i, j int32, w float32) {
	pu, qi, qj := m.urow(u), m.irow(i), m.irow(j)
	d := m.dim
	gpu, gqi, gqj := m.gp[int(u)*d:int(u+1)*d], m.gq[int(i)*d:int(i+1)*d], m.gq[int(j)*d:int(j+1)*d]
	qi, qj, gpu, gqi, gqj = qi[:len(pu)], qj[:len(pu)], gpu[:len(pu)], gqi[:len(pu)], gqj[:len(pu)]
	x := m.bj[i] - m.bj[j] + dot32(pu, qi) - dot32(pu, qj)
	c := w * float32(1/(1+math.Exp(float64(x)))) // w·σ(−x): the loss −log σ(x) has gradient −c wrt x
	blr, breg := float32(m.cfg.ImplicitLR), float32(m.cfg.BiasReg)
	adagrad(&m.bj[i], &m.gbj[i], -c+breg*m.bj[i], blr)
	adagrad(&m.bj[j], &m.gbj[j], c+breg*m.bj[j], blr)
	lr, reg := float32(m.cfg.ImplicitLR), float32(m.cfg.Reg)
	for k := range pu {
		p, a, b := pu[k], qi[k], qj[k]
		g0 := -c*(a-b) + reg*p
		g1 := -c*p + reg*a
		g2 := c*p + reg*b
		a0, a1, a2 := gpu[k]+g0*g0, gqi[k]+g1*g1, gqj[k]+g2*g2
		gpu[k], gqi[k], gqj[k] = a0, a1, a2
		pu[k] = p - lr*g0*rsqrt32(a0)
		qi[k] = a - lr*g1*rsqrt32(a1)
		qj[k] = b - lr*g2*rsqrt32(a2)
	}
}

// UserVector returns a copy of the user's factors, or nil for an unknown user.
func (m *MF) UserVector(user string) []float32 {
	u, ok := m.users.get(user)
	if !ok {
		return nil
	}
	return append([]float32(nil), m.urow(u)...)
}

// DrainUserVectors calls fn for each user whose vector changed since the
// last drain (vec is valid only during the call) and resets the marks.
func (m *MF) DrainUserVectors(fn func(user string, vec []float32)) {
	for _, u := range m.dirtyList {
		m.dirty[u] = false
		fn(m.users.names[u], m.urow(u))
	}
	m.dirtyList = m.dirtyList[:0]
}

// queryVector resolves the user's vector into s.vec: the user's factors,
// else the mean of the known recent items' factors (session fold-in).
// ok is false when neither exists.
func (m *MF) queryVector(s *queryScratch, q *Query, recent int) bool {
	if q.User == nil {
		return false
	}
	if u, ok := m.users.get(q.User.ID); ok {
		s.vec = append(s.vec[:0], m.urow(u)...)
		return true
	}
	s.vec = s.vec[:0]
	for range m.dim {
		s.vec = append(s.vec, 0)
	}
	n := 0
	for k, r := range q.User.Recent {
		if k >= recent {
			break
		}
		if i, ok := m.items.get(r); ok {
			for d, v := range m.irow(i) {
				s.vec[d] += v
			}
			n++
		}
	}
	if n == 0 {
		return false
	}
	for d := range s.vec {
		s.vec[d] /= float32(n)
	}
	return true
}

// prepare marks an immutable (decoded) model for the serving scan.
func (m *MF) prepare() { m.serving = true }

// topInto pushes the items with the best b_j + v·q_i that pass the filters
// into s.top (v = s.vec, or biases only when hasVec is false).
func (m *MF) topInto(s *queryScratch, hasVec bool, ex *itemFilter, category string) {
	cat := int32(-1)
	if category != "" {
		c, ok := m.cat.category(category)
		if !ok {
			return
		}
		cat = c
	}
	if s.top.k <= 0 {
		return
	}
	if m.serving && hasVec {
		m.topServing(s, ex, cat)
		return
	}
	n := m.items.len()
	for i := range n {
		sc := m.bj[i]
		if hasVec {
			sc += dot32(s.vec, m.q[i*m.dim:(i+1)*m.dim])
		}
		if th, full := s.top.threshold(); full && sc <= th {
			continue
		}
		if cat >= 0 && !m.cat.in(int32(i), cat) {
			continue
		}
		if ex.excluded(m, int32(i)) {
			continue
		}
		s.top.push(sc, int32(i))
	}
}

// topServing is topInto's serving loop: one pass over the contiguous item
// matrix with the dot product inlined, the heap minimum kept in a register
// and the filters (category, exclusion) consulted only for items that would
// enter the heap. Scores are bit-identical to dot32's (the same four partial
// sums in the same order) and items come in index order, so the results
// equal the plain scan's.
func (m *MF) topServing(s *queryScratch, ex *itemFilter, cat int32) {
	d, t := m.dim, &s.top
	n := min(m.items.len(), len(m.bj), len(m.q)/d)
	vec := s.vec[:d]
	q, bias := m.q[:n*d], m.bj[:n]
	th, full := float32(0), len(t.h) >= t.k
	if full {
		th = t.h[0].score
	}
	if d == 16 {
		m.topServing16(s, ex, cat, n, th, full)
		return
	}
	for i := 0; i < n; i++ {
		row := q[i*d : i*d+d : i*d+d]
		var s0, s1, s2, s3 float32
		k := 0
		for ; k+4 <= d; k += 4 {
			s0 += vec[k] * row[k]
			s1 += vec[k+1] * row[k+1]
			s2 += vec[k+2] * row[k+2]
			s3 += vec[k+3] * row[k+3]
		}
		for ; k < d; k++ {
			s0 += vec[k] * row[k]
		}
		sc := bias[i] + ((s0 + s1) + (s2 + s3))
		if full && sc <= th {
			continue
		}
		if cat >= 0 && !m.cat.in(int32(i), cat) {
			continue
		}
		if ex.excluded(m, int32(i)) {
			continue
		}
		t.push(sc, int32(i))
		if len(t.h) >= t.k {
			full, th = true, t.h[0].score
		}
	}
}

// dotsBlock is how many scores topServing16 computes per dots16 call (a
// few KiB of scratch, in L1 beside the rows it reads).
const dotsBlock = 512

// topServing16 is topServing for 16 factors (the default): scores come in
// blocks from dots16 (SIMD on amd64, bit-identical to dot32), then one
// compare per item against the heap minimum.
func (m *MF) topServing16(s *queryScratch, ex *itemFilter, cat int32, n int, th float32, full bool) {
	t := &s.top
	v := (*[16]float32)(s.vec[:16])
	q, bias := m.q[:n*16], m.bj[:n]
	if cap(s.dots) < dotsBlock {
		s.dots = make([]float32, dotsBlock)
	}
	for lo := 0; lo < n; lo += dotsBlock {
		hi := min(lo+dotsBlock, n)
		out := s.dots[:hi-lo]
		dots16(q[lo*16:hi*16], v, bias[lo:hi], out)
		for j, sc := range out {
			if full && sc <= th {
				continue
			}
			i := int32(lo + j)
			if cat >= 0 && !m.cat.in(i, cat) {
				continue
			}
			if ex.excluded(m, i) {
				continue
			}
			t.push(sc, i)
			if len(t.h) >= t.k {
				full, th = true, t.h[0].score
			}
		}
	}
}

// Recommend implements Recommender: exact top-K over the item matrix with a
// bounded heap. Unknown users are folded in from their recent items.
func (m *MF) Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	s := getQueryScratch()
	defer putQueryScratch(s)
	s.top.reset(k)
	ex := m.filterFor(s, q)
	defer s.releaseFilter()
	m.topInto(s, m.queryVector(s, q, 50), &ex, q.Category)
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: m.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
}

// Similar returns the items whose factors have the highest cosine with item's.
func (m *MF) Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored {
	i, ok := m.items.get(item)
	if !ok {
		return dst
	}
	s := getQueryScratch()
	defer putQueryScratch(s)
	s.top.reset(k)
	qi := m.irow(i)
	ni := math.Sqrt(float64(dot32(qi, qi)))
	for j := range m.items.len() {
		if int32(j) == i {
			continue
		}
		qj := m.irow(int32(j))
		nj := math.Sqrt(float64(dot32(qj, qj)))
		if ni == 0 || nj == 0 {
			continue
		}
		s.top.push(float32(float64(dot32(qi, qj))/(ni*nj)), int32(j))
	}
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: m.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (m *MF) MarshalBinary() ([]byte, error) {
	var e wbuf
	e.header("mf", 1)
	e.u32(uint32(m.dim))
	e.i64(m.mean.n)
	e.f64(m.mean.sum)
	e.f64(m.bounds.lo)
	e.f64(m.bounds.hi)
	st, err := m.pcg.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("mf: rng: %w", err)
	}
	e.bytes(st)
	m.users.encode(&e)
	m.items.encode(&e)
	m.cat.encode(&e)
	for _, v := range [][]float32{m.p, m.gp, m.bu, m.gbu, m.q, m.gq, m.bi, m.gbi, m.bj, m.gbj} {
		e.f32s(v)
	}
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (m *MF) UnmarshalBinary(b []byte) error {
	d := rbuf{b: b}
	if err := d.header("mf", 1); err != nil {
		return err
	}
	dim := int(d.u32())
	m.mean.n, m.mean.sum = d.i64(), d.f64()
	m.bounds.lo, m.bounds.hi = d.f64(), d.f64()
	st := d.bytes()
	m.users.decode(&d)
	m.items.decode(&d)
	m.tag = new(indexTag)
	m.cat.decode(&d)
	vs := make([][]float32, 10)
	for k := range vs {
		vs[k] = d.f32s()
	}
	if err := d.done("mf"); err != nil {
		return err
	}
	nu, ni := m.users.len(), m.items.len()
	if dim <= 0 || len(vs[0]) != nu*dim || len(vs[1]) != nu*dim || len(vs[2]) != nu || len(vs[3]) != nu ||
		len(vs[4]) != ni*dim || len(vs[5]) != ni*dim || len(vs[6]) != ni || len(vs[7]) != ni ||
		len(vs[8]) != ni || len(vs[9]) != ni {
		return fmt.Errorf("mf: parameter sizes do not match %d users, %d items, %d dims", nu, ni, dim)
	}
	if m.pcg == nil {
		m.pcg = rand.NewPCG(0, 0)
	}
	if err := m.pcg.UnmarshalBinary(st); err != nil {
		return fmt.Errorf("mf: rng: %w", err)
	}
	m.rnd = rand.New(m.pcg)
	m.dim = dim
	m.cfg.Dims = dim
	m.p, m.gp, m.bu, m.gbu, m.q, m.gq, m.bi, m.gbi = vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6], vs[7]
	m.bj, m.gbj = vs[8], vs[9]
	m.dirty = make([]bool, nu)
	m.dirtyList = nil
	m.lastUser, m.lastItem, m.lastU, m.lastI = "", "", -1, -1
	m.cat.grow(ni)
	m.serving = false
	return nil
}
