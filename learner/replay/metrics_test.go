package replay_test

import (
	"math"
	"testing"

	"github.com/streamrec/streamrec/learner/replay"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestRegression(t *testing.T) {
	tests := []struct {
		name      string
		p, y      []float64
		rmse, mae float64
	}{
		// errors 1, -2, 0, 3: Σe² = 14, Σ|e| = 6.
		{"four errors", []float64{4, 1, 3, 5}, []float64{3, 3, 3, 2}, math.Sqrt(14.0 / 4), 6.0 / 4},
		{"perfect", []float64{1, 2}, []float64{1, 2}, 0, 0},
		{"one half star", []float64{3.5}, []float64{3}, 0.5, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r replay.Regression
			for i := range tt.p {
				r.Add(tt.p[i], tt.y[i])
			}
			if !near(r.RMSE(), tt.rmse) || !near(r.MAE(), tt.mae) {
				t.Fatalf("RMSE, MAE = %v, %v; want %v, %v", r.RMSE(), r.MAE(), tt.rmse, tt.mae)
			}
		})
	}
	var empty replay.Regression
	if !math.IsNaN(empty.RMSE()) || !math.IsNaN(empty.MAE()) {
		t.Fatal("empty regression should be NaN")
	}
}

func TestSingleItemRanking(t *testing.T) {
	list := []string{"a", "b", "c", "d"}
	tests := []struct {
		item          string
		k             int
		rank          int
		hr, ndcg, mrr float64
	}{
		{"a", 10, 1, 1, 1, 1},
		{"b", 10, 2, 1, 1 / math.Log2(3), 0.5},
		{"d", 10, 4, 1, 1 / math.Log2(5), 0.25},
		{"d", 3, 4, 0, 0, 0}, // beyond the cut-off
		{"z", 10, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		rank := replay.Rank(list, tt.item)
		if rank != tt.rank {
			t.Fatalf("Rank(%s) = %d, want %d", tt.item, rank, tt.rank)
		}
		if hr, nd, mrr := replay.HitAt(rank, tt.k), replay.NDCGAt(rank, tt.k), replay.MRRAt(rank, tt.k); !near(hr, tt.hr) || !near(nd, tt.ndcg) || !near(mrr, tt.mrr) {
			t.Fatalf("%s@%d: HR, NDCG, MRR = %v, %v, %v; want %v, %v, %v", tt.item, tt.k, hr, nd, mrr, tt.hr, tt.ndcg, tt.mrr)
		}
	}
	// Mean over three queries: ranks 1, 3, miss at K=10.
	var r replay.Ranking
	r.AddRank(1, 10)
	r.AddRank(3, 10)
	r.AddRank(0, 10)
	if !near(r.HR(), 2.0/3) || !near(r.NDCG(), (1+0.5)/3) || !near(r.MRR(), (1+1.0/3)/3) {
		t.Fatalf("means: HR %v NDCG %v MRR %v", r.HR(), r.NDCG(), r.MRR())
	}
}

func set(items ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, it := range items {
		m[it] = struct{}{}
	}
	return m
}

func TestSetMetrics(t *testing.T) {
	tests := []struct {
		name       string
		list       []string
		rel        map[string]struct{}
		k          int
		p, r, ndcg float64
	}{
		// Hits at positions 1 and 3 of 5; 3 relevant.
		// DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4).
		{"two of three", []string{"a", "x", "b", "y", "z"}, set("a", "b", "c"), 5, 2.0 / 5, 2.0 / 3,
			1.5 / (1 + 1/math.Log2(3) + 0.5)},
		// More relevant items than K: IDCG sums K terms only.
		{"ideal cut at K", []string{"a", "b"}, set("a", "b", "c"), 2, 1, 2.0 / 3, 1},
		// Only the first K of a longer list count.
		{"list longer than K", []string{"x", "a", "b"}, set("b"), 2, 0, 0, 0},
		{"single hit at 2", []string{"x", "a"}, set("a"), 2, 0.5, 1, 1 / math.Log2(3)},
		// A list shorter than K still divides precision by K.
		{"short list", []string{"a"}, set("a", "b"), 10, 0.1, 0.5, 1 / (1 + 1/math.Log2(3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, r, nd := replay.SetMetrics(tt.list, tt.rel, tt.k)
			if !near(p, tt.p) || !near(r, tt.r) || !near(nd, tt.ndcg) {
				t.Fatalf("P, R, NDCG = %v, %v, %v; want %v, %v, %v", p, r, nd, tt.p, tt.r, tt.ndcg)
			}
		})
	}
	if p, _, _ := replay.SetMetrics([]string{"a"}, nil, 10); !math.IsNaN(p) {
		t.Fatal("no relevant items must give NaN (user not evaluated)")
	}
	var rk replay.Ranking
	rk.AddSet([]string{"a", "x"}, set("a"), 2)
	rk.AddSet([]string{"x", "y"}, set("b"), 2)
	rk.AddSet([]string{"x"}, nil, 2) // skipped
	if rk.N != 2 || !near(rk.Precision(), 0.25) || !near(rk.Recall(), 0.5) || !near(rk.NDCG(), 0.5) || !near(rk.HR(), 0.5) {
		t.Fatalf("set means: %+v", rk)
	}
}
