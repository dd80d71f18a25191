package learner

import (
	"fmt"
	"slices"
	"sync"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// ItemScorer scores candidate items for a user at event time ts, one score
// per item in order (the deep ranker's serving entry point).
type ItemScorer interface {
	ScoreItems(u *features.User, items []string, ts int64, dst []float64) []float64
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
// top-M, co-occurrence with the user's recent items and popularity, ranked
// by the deep ranker. It owns and trains its retrieval models and ranker.
type TwoStage struct {
	cfg    TwoStageConfig
	MF     *MF
	KNN    *ItemKNN
	Pop    *Popularity
	Ranker RankerModel // may be nil

	scorers sync.Pool // of ItemScorer, for concurrent Recommend/Rank
}

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
	mf.topInto(s, hasVec, q.Exclude, q.Category)
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
	for _, i := range s.cand {
		s.mark[i] = false
	}
	if len(s.cand) == 0 {
		return dst
	}
	slices.Sort(s.cand) // deterministic order whatever the sources
	// Stage 2: rank.
	s.fused = t.scoreCandidates(s, q, hasVec, s.fused[:0])
	s.top.reset(k)
	for j, i := range s.cand {
		s.top.push(float32(s.fused[j]), i)
	}
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: mf.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
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
		perm := s.perm[:0]
		for k := range n {
			perm = append(perm, int32(k))
		}
		s.perm = perm
		slices.SortFunc(perm, func(a, b int32) int {
			switch {
			case sig[a] > sig[b]:
				return -1
			case sig[a] < sig[b]:
				return 1
			}
			return int(a - b)
		})
		for r, k := range perm {
			out[k] += w / (t.cfg.FusionK + float64(r))
		}
	}
	if t.Ranker != nil {
		names := s.names[:0]
		for _, i := range s.cand {
			names = append(names, mf.items.names[i])
		}
		s.names = names
		sc := t.scorers.Get().(ItemScorer)
		s.vals = sc.ScoreItems(q.User, names, q.TS, s.vals[:0])
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
		for k, i := range s.cand {
			sig[k] = float64(t.KNN.affinity(mf.items.names[i], recent))
		}
		fuse(t.cfg.CoocWeight)
	}
	f := t.Pop.factor(q.TS)
	for k, i := range s.cand {
		sig[k] = 0
		if j, ok := t.Pop.items.get(mf.items.names[i]); ok {
			sig[k] = t.Pop.score[j] * f
		}
	}
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
	return nil
}
