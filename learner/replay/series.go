package replay

import "math"

// Series is one metric over the stream: Y[j] is the metric over the sliding
// window of buckets ending at bucket j, X[j] the number of events (of the
// scored range) up to the end of that bucket.
type Series struct {
	Name   string    `json:"name"`
	Metric string    `json:"metric"`
	X      []float64 `json:"x"`
	Y      []float64 `json:"y"`
}

// Window is how many buckets the sliding window of a series spans.
const Window = 10

type bucket struct {
	end int // events up to the end of the bucket
	reg Regression
	rk  Ranking
}

// buckets splits n events into up to m equal buckets.
type buckets struct {
	n, m int
	b    []bucket
}

func newBuckets(n, m int) *buckets {
	if m > n {
		m = n
	}
	if m < 1 {
		m = 1
	}
	bs := &buckets{n: n, m: m, b: make([]bucket, m)}
	for j := range bs.b {
		bs.b[j].end = int(int64(j+1) * int64(n) / int64(m))
	}
	return bs
}

// at returns the bucket of event i (0-based within the range).
func (bs *buckets) at(i int) *bucket {
	j := int(int64(i) * int64(bs.m) / int64(max(bs.n, 1)))
	if j >= bs.m {
		j = bs.m - 1
	}
	return &bs.b[j]
}

// series returns the sliding-window RMSE, MAE, HR@K, NDCG@K and MRR@K
// (those with anything recorded), named with suffix.
func (bs *buckets) series(suffix string, k int) []Series {
	_ = k
	type metric struct {
		name string
		val  func(reg *Regression, rk *Ranking) float64
		has  func(reg *Regression, rk *Ranking) bool
	}
	hasReg := func(reg *Regression, _ *Ranking) bool { return reg.N > 0 }
	hasRk := func(_ *Regression, rk *Ranking) bool { return rk.N > 0 }
	metrics := []metric{
		{"rmse", func(reg *Regression, _ *Ranking) float64 { return reg.RMSE() }, hasReg},
		{"mae", func(reg *Regression, _ *Ranking) float64 { return reg.MAE() }, hasReg},
		{"hr", func(_ *Regression, rk *Ranking) float64 { return rk.HR() }, hasRk},
		{"ndcg", func(_ *Regression, rk *Ranking) float64 { return rk.NDCG() }, hasRk},
		{"mrr", func(_ *Regression, rk *Ranking) float64 { return rk.MRR() }, hasRk},
	}
	var out []Series
	for _, m := range metrics {
		any := false
		for j := range bs.b {
			if m.has(&bs.b[j].reg, &bs.b[j].rk) {
				any = true
				break
			}
		}
		if !any {
			continue
		}
		s := Series{Name: suffix, Metric: m.name}
		for j := range bs.b {
			var reg Regression
			var rk Ranking
			for w := max(0, j-Window+1); w <= j; w++ {
				reg.Merge(bs.b[w].reg)
				rk.Merge(bs.b[w].rk)
			}
			v := m.val(&reg, &rk)
			if math.IsNaN(v) {
				continue
			}
			s.X = append(s.X, float64(bs.b[j].end))
			s.Y = append(s.Y, v)
		}
		out = append(out, s)
	}
	return out
}
