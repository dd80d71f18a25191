package learner

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// ItemScorer scores candidate items for a user at event time ts, one score
// per item in order (the deep ranker's serving entry point).
type ItemScorer interface {
	ScoreItems(u *features.User, items []string, ts int64, dst []float64) []float64
}

// candidateScorer is met by an ItemScorer (the ranker's) that scores
// candidates given as indexes into the two-stage model's item table.
type candidateScorer interface {
	ScoreCandidates(u *features.User, names []string, cand []int32, ts int64, dst []float64) []float64
}

// RankerModel is what the two-stage recommender needs of its ranking stage:
// a Model that hands out per-goroutine scorers. nil means rank candidates by
// the retrieval scores.
type RankerModel interface {
	Model
	// NewItemScorer returns a scorer that may be used concurrently with other
	// scorers of the same (no longer learning) model.
	NewItemScorer() ItemScorer
}

// TwoStage is the production recommender ("twostage"): candidates from MF
// top-M, co-occurrence with the user's recent items, popularity and the
// popular items of the session's categories, ranked by the deep ranker
// fused with the retrieval signals and the session's category profile. It
// owns and trains its retrieval models and ranker.
type TwoStage struct {
	cfg    TwoStageConfig
	MF     *MF
	KNN    *ItemKNN
	Pop    *Popularity
	Ranker RankerModel // may be nil

	scorers sync.Pool // of ItemScorer, for concurrent Recommend/Rank

	// learned counts Learn calls; catPop is the per-category popular
	// lists, rebuilt under catMu when learning has moved on (a decoded,
	// serving model builds them once).
	learned atomic.Int64
	catPop  atomic.Pointer[catPopular]
	catMu   sync.Mutex
}

// catPopular holds, per category id of the MF catalog, the most popular
// items (MF indexes) best first and the category's base rate (the fraction
// of categorised items that carry it), as of learned Learn calls.
type catPopular struct {
	learned int64
	lists   [][]int32
	base    []float64
}

const (
	// catPopLen is how many items each per-category list keeps: enough for
	// CategoryCandidates after the user's seen items are skipped.
	catPopLen = 100
	// catPopEvery is how many Learn calls a per-category list may lag
	// behind (popularity moves slowly; rebuilding costs one pass over the
	// items).
	catPopEvery = 1000
	// catTop is how many of the session's categories feed candidates.
	catTop = 3
)

// catShare is one category's weighted share of the session and its lift
// over the category's base rate: (share − base) / (1 − base), at least 0.
type catShare struct {
	cat   int32
	share float64
	lift  float64
}

// catScratch is pooled per-query memory of the category profile.
type catScratch struct {
	prof []catShare
}

var catScratchPool = sync.Pool{New: func() any { return new(catScratch) }}

// NewTwoStage assembles a two-stage recommender; ranker may be nil.
func NewTwoStage(cfg Config, ranker RankerModel) *TwoStage {
	t := &TwoStage{cfg: cfg.TwoStage, MF: NewMF(cfg.MF, cfg.Seed), KNN: NewItemKNN(cfg.KNN),
		Pop: NewPopularity(cfg.Pop.HalfLife.Std()), Ranker: ranker}
	t.resetScorers()
	return t
}

func (t *TwoStage) resetScorers() {
	t.scorers = sync.Pool{}
	if t.Ranker != nil {
		r := t.Ranker
		t.scorers.New = func() any { return r.NewItemScorer() }
	}
}

// Name implements Model.
func (t *TwoStage) Name() string { return "twostage" }

// Predict implements Model: the ranker's prediction, else MF's.
func (t *TwoStage) Predict(ex *Example) float64 {
	if t.Ranker != nil {
		p := t.Ranker.Predict(ex)
		if ex.Event.Kind == streamrec.Explicit {
			p = t.MF.bounds.clamp(p)
		}
		return p
	}
	return t.MF.Predict(ex)
}

// Learn implements Model.
func (t *TwoStage) Learn(ex *Example) {
	t.MF.Learn(ex)
	t.KNN.Learn(ex)
	t.Pop.Learn(ex)
	if t.Ranker != nil {
		t.Ranker.Learn(ex)
	}
	t.learned.Add(1)
}

// categoryLists returns the per-category popular lists, rebuilding them
// when missing or more than catPopEvery Learn calls old. Safe for
// concurrent use with other readers (not with Learn, like every Model).
func (t *TwoStage) categoryLists() *catPopular {
	n := t.learned.Load()
	if c := t.catPop.Load(); c != nil && n-c.learned < catPopEvery && len(c.lists) == t.MF.cat.cats.len() {
		return c
	}
	t.catMu.Lock()
	defer t.catMu.Unlock()
	if c := t.catPop.Load(); c != nil && n-c.learned < catPopEvery && len(c.lists) == t.MF.cat.cats.len() {
		return c
	}
	c := t.buildCategoryLists(n)
	t.catPop.Store(c)
	return c
}

// buildCategoryLists ranks every item MF knows into its categories' lists
// by popularity (one pass over the items).
func (t *TwoStage) buildCategoryLists(learned int64) *catPopular {
	mf, pop := t.MF, t.Pop
	nc := mf.cat.cats.len()
	tops := make([]boundedTop, nc)
	for c := range tops {
		tops[c].reset(catPopLen)
	}
	c := &catPopular{learned: learned, lists: make([][]int32, nc), base: make([]float64, nc)}
	n := 0
	for i := range min(mf.items.len(), len(mf.cat.itemCats)) {
		cats := mf.cat.itemCats[i]
		if len(cats) == 0 {
			continue
		}
		n++
		var v float32
		if j, ok := pop.items.get(mf.items.names[i]); ok {
			v = float32(pop.score[j])
		}
		for _, k := range cats {
			tops[k].push(v, int32(i))
			c.base[k]++
		}
	}
	for k := range tops {
		c.base[k] /= float64(max(n, 1))
		sorted := tops[k].sorted()
		l := make([]int32, len(sorted))
		for j, e := range sorted {
			l[j] = e.idx
		}
		c.lists[k] = l
	}
	return c
}

// categoryProfile fills cs.prof with the session's categories and their
// shares, best first: the decayed fraction of the user's newest
// CategoryRecent items (with known categories) that carry each category.
// An empty profile means no session or no known categories.
func (t *TwoStage) categoryProfile(cs *catScratch, q *Query, lists *catPopular) {
	cs.prof = cs.prof[:0]
	if q.User == nil || t.cfg.CategoryRecent <= 0 {
		return
	}
	recent := q.User.Recent
	if len(recent) > t.cfg.CategoryRecent {
		recent = recent[:t.cfg.CategoryRecent]
	}
	mf := t.MF
	w, total := 1.0, 0.0
	for _, it := range recent {
		i, ok := mf.items.get(it)
		if ok && int(i) < len(mf.cat.itemCats) && len(mf.cat.itemCats[i]) > 0 {
			total += w
		next:
			for _, c := range mf.cat.itemCats[i] {
				for k := range cs.prof {
					if cs.prof[k].cat == c {
						cs.prof[k].share += w
						continue next
					}
				}
				cs.prof = append(cs.prof, catShare{cat: c, share: w})
			}
		}
		w *= t.cfg.CategoryDecay
	}
	if total == 0 {
		return
	}
	for k := range cs.prof {
		p := &cs.prof[k]
		p.share /= total
		if int(p.cat) < len(lists.base) && lists.base[p.cat] < 1 {
			p.lift = max(0, (p.share-lists.base[p.cat])/(1-lists.base[p.cat]))
		}
	}
	slices.SortFunc(cs.prof, func(a, b catShare) int {
		switch {
		case a.share > b.share:
			return -1
		case a.share < b.share:
			return 1
		}
		return int(a.cat - b.cat)
	})
}

// categoryAffinity is the squared lift in prof of item i's best category:
// a session dominated by one category (lift near 1) takes charge, while a
// mixed session, or one following the catalogue's common categories
// (lift near 0), only nudges the ranking.
func (t *TwoStage) categoryAffinity(prof []catShare, i int32) float64 {
	if int(i) >= len(t.MF.cat.itemCats) {
		return 0
	}
	best := 0.0
	for _, c := range t.MF.cat.itemCats[i] {
		for _, p := range prof {
			if p.cat == c {
				best = max(best, p.lift)
				break
			}
		}
	}
	return best * best
}

// Recommend implements Recommender. Unknown users get popularity and the
// co-occurrences of their session (q.User.Recent); the list is never empty
// while some item passes the filters.
func (t *TwoStage) Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	if k <= 0 {
		return dst
	}
	s := getQueryScratch()
	defer putQueryScratch(s)
	mf := t.MF
	n := mf.items.len()
	s.dense(n)
	s.cand = s.cand[:0]
	add := func(i int32) {
		if !s.mark[i] {
			s.mark[i] = true
			s.cand = append(s.cand, i)
		}
	}
	// Stage 1: candidates.
	s.top.reset(t.cfg.MFCandidates)
	hasVec := mf.queryVector(s, q, t.cfg.Recent)
	ex := mf.filterFor(s, q)
	defer s.releaseFilter()
	mf.topInto(s, hasVec, &ex, q.Category)
	for _, c := range s.top.h {
		add(c.idx)
	}
	var recent []string
	if q.User != nil {
		recent = q.User.Recent
		if len(recent) > t.cfg.Recent {
			recent = recent[:t.cfg.Recent]
		}
	}
	if t.cfg.CoocCandidates > 0 && len(recent) > 0 {
		s.top.reset(t.cfg.CoocCandidates)
		t.KNN.topInto(s, recent, q.Exclude, q.Category)
		for _, c := range s.top.h {
			if i, ok := mf.items.get(t.KNN.items.names[c.idx]); ok {
				add(i)
			}
		}
	}
	s.top.reset(t.cfg.PopCandidates)
	t.Pop.topInto(&s.top, q.Exclude, q.Category)
	for _, c := range s.top.h {
		if i, ok := mf.items.get(t.Pop.items.names[c.idx]); ok {
			add(i)
		}
	}
	cs := catScratchPool.Get().(*catScratch)
	defer catScratchPool.Put(cs)
	cs.prof = cs.prof[:0]
	if q.User != nil && len(q.User.Recent) > 0 && t.cfg.CategoryRecent > 0 {
		lists := t.categoryLists()
		t.categoryProfile(cs, q, lists)
		if len(cs.prof) > 0 && t.cfg.CategoryCandidates > 0 {
			t.addCategoryCandidates(cs.prof, q, &ex, lists, add)
		}
	}
	for _, i := range s.cand {
		s.mark[i] = false
	}
	if len(s.cand) == 0 {
		return dst
	}
	slices.Sort(s.cand) // deterministic order whatever the sources
	// Stage 2: rank.
	s.fused = t.scoreCandidates(s, q, hasVec, s.fused[:0])
	if len(cs.prof) > 0 && t.cfg.CategoryWeight > 0 {
		w := t.cfg.CategoryWeight / t.cfg.FusionK
		for j, i := range s.cand {
			s.fused[j] += w * t.categoryAffinity(cs.prof, i)
		}
	}
	s.top.reset(k)
	for j, i := range s.cand {
		s.top.push(float32(s.fused[j]), i)
	}
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: mf.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
}

// addCategoryCandidates adds the most popular unseen items of the
// session's catTop best categories, CategoryCandidates in all, each category's
// quota proportional to its share (at least one item per listed category),
// so that the session's category is among the candidates even when MF and
// co-occurrence surface only the globally popular items.
func (t *TwoStage) addCategoryCandidates(prof []catShare, q *Query, ex *itemFilter, lists *catPopular, add func(int32)) {
	filter := int32(-1)
	if q.Category != "" {
		c, ok := t.MF.cat.category(q.Category)
		if !ok {
			return
		}
		filter = c
	}
	prof = prof[:min(len(prof), catTop)]
	sum := 0.0
	for _, p := range prof {
		sum += p.share
	}
	budget := t.cfg.CategoryCandidates
	for _, p := range prof {
		if budget <= 0 || int(p.cat) >= len(lists.lists) {
			break
		}
		quota := min(budget, max(1, int(float64(t.cfg.CategoryCandidates)*p.share/sum+0.5)))
		budget -= quota
		for _, i := range lists.lists[p.cat] {
			if quota == 0 {
				break
			}
			if filter >= 0 && !t.MF.cat.in(i, filter) {
				continue
			}
			if ex.excluded(t.MF, i) {
				continue
			}
			add(i)
			quota--
		}
	}
}

// scoreCandidates scores s.cand (MF item indexes) by reciprocal rank
// fusion of the ranking signals: the deep ranker's score, MF's implicit
// score b_j + p_u·q_i (when the user has a vector), co-occurrence with the
// recent items and popularity at q.TS. Each signal ranks the candidates;
// a candidate's score is the sum over signals of weight / (FusionK + rank).
// Fusion keeps the ranker in charge where it is confident while a ranker
// trained only on ratings (which predicts liking, not the next interaction)
// cannot bury what retrieval knows.
func (t *TwoStage) scoreCandidates(s *queryScratch, q *Query, hasVec bool, out []float64) []float64 {
	mf := t.MF
	n := len(s.cand)
	for range n {
		out = append(out, 0)
	}
	sig := s.sig[:0]
	for range n {
		sig = append(sig, 0)
	}
	s.sig = sig
	fuse := func(w float64) {
		if w <= 0 {
			return
		}
		s.ranks = fusionRanks(s.ranks, sig)
		for r, e := range s.ranks {
			out[e.k] += w / (t.cfg.FusionK + float64(r))
		}
	}
	if t.Ranker != nil {
		sc := t.scorers.Get().(ItemScorer)
		if cs, ok := sc.(candidateScorer); ok {
			s.vals = cs.ScoreCandidates(q.User, mf.items.names, s.cand, q.TS, s.vals[:0])
		} else {
			names := s.names[:0]
			for _, i := range s.cand {
				names = append(names, mf.items.names[i])
			}
			s.names = names
			s.vals = sc.ScoreItems(q.User, names, q.TS, s.vals[:0])
		}
		t.scorers.Put(sc)
		copy(sig, s.vals)
		fuse(t.cfg.RankerWeight)
	}
	if hasVec {
		for k, i := range s.cand {
			sig[k] = float64(mf.bj[i] + dot32(s.vec, mf.irow(i)))
		}
		fuse(t.cfg.MFWeight)
	}
	var recent []string
	if q.User != nil {
		recent = q.User.Recent
	}
	if len(recent) > t.cfg.Recent {
		recent = recent[:t.cfg.Recent]
	}
	if len(recent) > 0 {
		t.KNN.affinities(s, mf.items.names, s.cand, recent, sig)
		fuse(t.cfg.CoocWeight)
	}
	t.Pop.scoresAt(mf.items.names, s.cand, q.TS, sig)
	fuse(t.cfg.PopWeight)
	return out
}

// Similar returns items similar by embedding cosine, falling back to
// co-occurrence when MF does not know the item.
func (t *TwoStage) Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored {
	n := len(dst)
	dst = t.MF.Similar(item, k, dst)
	if len(dst) == n {
		dst = t.KNN.Similar(item, k, dst)
	}
	return dst
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (t *TwoStage) MarshalBinary() ([]byte, error) {
	var e wbuf
	e.header("twostage", 1)
	for _, m := range []Model{t.MF, t.KNN, t.Pop} {
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("twostage: %w", err)
		}
		e.bytes(b)
	}
	if t.Ranker == nil {
		e.u8(0)
		return e.b, nil
	}
	b, err := t.Ranker.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("twostage: %w", err)
	}
	e.u8(1)
	e.bytes(b)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. A ranker section is
// decoded into t.Ranker, which must then be set (as New does).
func (t *TwoStage) UnmarshalBinary(b []byte) error {
	d := rbuf{b: b}
	if err := d.header("twostage", 1); err != nil {
		return err
	}
	for _, m := range []Model{t.MF, t.KNN, t.Pop} {
		p := d.bytes()
		if d.err != nil {
			break
		}
		if err := m.UnmarshalBinary(p); err != nil {
			return fmt.Errorf("twostage: %w", err)
		}
		runtime.Gosched() // see yieldAt
	}
	has := d.u8()
	var rb []byte
	if has == 1 {
		rb = d.bytes()
	}
	if err := d.done("twostage"); err != nil {
		return err
	}
	switch {
	case has == 1 && t.Ranker == nil:
		return fmt.Errorf("twostage: snapshot has a ranker section but no ranker is configured")
	case has == 1:
		if err := t.Ranker.UnmarshalBinary(rb); err != nil {
			return fmt.Errorf("twostage: %w", err)
		}
	default:
		t.Ranker = nil
	}
	t.resetScorers()
	t.catPop.Store(nil)
	return nil
}
