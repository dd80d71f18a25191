package replay

import "math"

// Regression accumulates squared and absolute errors of value predictions.
// The zero value is ready to use.
type Regression struct {
	N     int64
	SumSq float64
	SumAb float64
}

// Add records one prediction p of the true value y.
func (r *Regression) Add(p, y float64) {
	d := p - y
	r.N++
	r.SumSq += d * d
	r.SumAb += math.Abs(d)
}

// Merge adds o's errors to r.
func (r *Regression) Merge(o Regression) {
	r.N += o.N
	r.SumSq += o.SumSq
	r.SumAb += o.SumAb
}

// RMSE is sqrt(Σ(p−y)²/N); NaN when nothing was recorded.
func (r *Regression) RMSE() float64 {
	if r.N == 0 {
		return math.NaN()
	}
	return math.Sqrt(r.SumSq / float64(r.N))
}

// MAE is Σ|p−y|/N; NaN when nothing was recorded.
func (r *Regression) MAE() float64 {
	if r.N == 0 {
		return math.NaN()
	}
	return r.SumAb / float64(r.N)
}

// Rank returns the 1-based position of item in list, or 0 when absent.
func Rank(list []string, item string) int {
	for i, it := range list {
		if it == item {
			return i + 1
		}
	}
	return 0
}

// HitAt is HR@K for one query with a single relevant item at rank (0 = not
// in the list): 1 when 1 ≤ rank ≤ k, else 0.
func HitAt(rank, k int) float64 {
	if rank >= 1 && rank <= k {
		return 1
	}
	return 0
}

// NDCGAt is NDCG@K for one query with a single relevant item: the ideal DCG
// is 1, so it is 1/log2(rank+1) when 1 ≤ rank ≤ k, else 0.
func NDCGAt(rank, k int) float64 {
	if rank >= 1 && rank <= k {
		return 1 / math.Log2(float64(rank)+1)
	}
	return 0
}

// MRRAt is the reciprocal rank cut at K for one query with a single relevant
// item: 1/rank when 1 ≤ rank ≤ k, else 0.
func MRRAt(rank, k int) float64 {
	if rank >= 1 && rank <= k {
		return 1 / float64(rank)
	}
	return 0
}

// SetMetrics are P@K, R@K and NDCG@K of one ranked list against a set of
// relevant items (the k-fold protocol, as Gorse computes them):
//
//	hits   = |top-K ∩ relevant|
//	P@K    = hits / K
//	R@K    = hits / |relevant|
//	NDCG@K = Σ_{i ≤ K, list[i] relevant} 1/log2(i+1) / Σ_{i=1}^{min(|relevant|, K)} 1/log2(i+1)
//
// Only the first k entries of list count. With no relevant items all three
// are NaN (such a user is not evaluated).
func SetMetrics(list []string, relevant map[string]struct{}, k int) (p, r, ndcg float64) {
	if len(relevant) == 0 || k <= 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	if len(list) > k {
		list = list[:k]
	}
	hits := 0
	dcg := 0.0
	for i, it := range list {
		if _, ok := relevant[it]; ok {
			hits++
			dcg += 1 / math.Log2(float64(i)+2)
		}
	}
	idcg := 0.0
	for i := 0; i < min(len(relevant), k); i++ {
		idcg += 1 / math.Log2(float64(i)+2)
	}
	return float64(hits) / float64(k), float64(hits) / float64(len(relevant)), dcg / idcg
}

// Ranking accumulates per-query ranking metrics (means over queries).
type Ranking struct {
	N       int64
	SumHR   float64
	SumNDCG float64
	SumMRR  float64
	SumP    float64
	SumR    float64
}

// AddRank records one single-relevant-item query whose item was at rank
// (0 = not in the top K).
func (r *Ranking) AddRank(rank, k int) {
	r.N++
	r.SumHR += HitAt(rank, k)
	r.SumNDCG += NDCGAt(rank, k)
	r.SumMRR += MRRAt(rank, k)
}

// AddSet records one set query's P@K, R@K and NDCG@K (HR@K is 1 when any
// relevant item was retrieved, MRR@K the reciprocal rank of the first).
func (r *Ranking) AddSet(list []string, relevant map[string]struct{}, k int) {
	p, rc, nd := SetMetrics(list, relevant, k)
	if math.IsNaN(p) {
		return
	}
	r.N++
	r.SumP += p
	r.SumR += rc
	r.SumNDCG += nd
	if len(list) > k {
		list = list[:k]
	}
	for i, it := range list {
		if _, ok := relevant[it]; ok {
			r.SumHR++
			r.SumMRR += 1 / float64(i+1)
			break
		}
	}
}

// Merge adds o's queries to r.
func (r *Ranking) Merge(o Ranking) {
	r.N += o.N
	r.SumHR += o.SumHR
	r.SumNDCG += o.SumNDCG
	r.SumMRR += o.SumMRR
	r.SumP += o.SumP
	r.SumR += o.SumR
}

func (r *Ranking) mean(sum float64) float64 {
	if r.N == 0 {
		return math.NaN()
	}
	return sum / float64(r.N)
}

// HR is the mean hit rate; NaN without queries.
func (r *Ranking) HR() float64 { return r.mean(r.SumHR) }

// NDCG is the mean NDCG; NaN without queries.
func (r *Ranking) NDCG() float64 { return r.mean(r.SumNDCG) }

// MRR is the mean reciprocal rank; NaN without queries.
func (r *Ranking) MRR() float64 { return r.mean(r.SumMRR) }

// Precision is the mean P@K; NaN without queries.
func (r *Ranking) Precision() float64 { return r.mean(r.SumP) }

// Recall is the mean R@K; NaN without queries.
func (r *Ranking) Recall() float64 { return r.mean(r.SumR) }
