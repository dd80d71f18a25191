package deploy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// This file simulates the scale-out design of docs/operations.md ("When one
// learner is not enough"): k learners, each consuming the Kafka partitions of
// its users (events are keyed by user), keep their users' parameters local
// and share item parameters through a periodic merge. It compares their
// prequential RMSE (test-then-train, as product.md §6) with one learner
// seeing every event, on synthetic ratings with planted latent factors.

// simData is a time-ordered stream of synthetic explicit ratings.
type simData struct {
	users, items int
	u, i         []int32
	r            []float32
}

// newSimData draws events with Zipf-popular items, heavy and light users and
// ratings from planted biases and latent factors plus noise, clipped to 1–5.
func newSimData(users, items, events, dim int, seed uint64) *simData {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	gauss := func(sd float64) []float64 {
		v := make([]float64, dim)
		for j := range v {
			v[j] = rng.NormFloat64() * sd
		}
		return v
	}
	ub, ib := make([]float64, users), make([]float64, items)
	up, ip := make([][]float64, users), make([][]float64, items)
	for x := range ub {
		ub[x], up[x] = rng.NormFloat64()*0.4, gauss(0.55)
	}
	for x := range ib {
		ib[x], ip[x] = rng.NormFloat64()*0.5, gauss(0.55)
	}
	itemZipf := rand.NewZipf(rng, 1.1, 4, uint64(items-1))
	userZipf := rand.NewZipf(rng, 1.05, 8, uint64(users-1))
	d := &simData{users: users, items: items, u: make([]int32, events), i: make([]int32, events), r: make([]float32, events)}
	for e := 0; e < events; e++ {
		u, i := int(userZipf.Uint64()), int(itemZipf.Uint64())
		dot := 0.0
		for j := 0; j < dim; j++ {
			dot += up[u][j] * ip[i][j]
		}
		r := 3.6 + ub[u] + ib[i] + dot + rng.NormFloat64()*0.5
		d.u[e], d.i[e], d.r[e] = int32(u), int32(i), float32(math.Max(1, math.Min(5, r)))
	}
	return d
}

// simMF is an online biased MF (SGD) over dense ids. In a partitioned
// learner only its own users' rows are ever touched.
type simMF struct {
	dim         int
	lr, reg     float32
	mu          float64
	n           int64
	bu, bi      []float32
	pu, qi      []float32 // row-major, dim per row
	touchedItem []bool    // items updated since the last merge
}

func newSimMF(users, items, dim int, seed uint64) *simMF {
	m := &simMF{dim: dim, lr: 0.015, reg: 0.03,
		bu: make([]float32, users), bi: make([]float32, items),
		pu: make([]float32, users*dim), qi: make([]float32, items*dim), touchedItem: make([]bool, items)}
	rng := rand.New(rand.NewPCG(seed, 7))
	for x := range m.pu {
		m.pu[x] = float32(rng.NormFloat64() * 0.05)
	}
	for x := range m.qi {
		m.qi[x] = float32(rng.NormFloat64() * 0.05)
	}
	return m
}

func (m *simMF) predict(u, i int) float64 {
	p, q := m.pu[u*m.dim:(u+1)*m.dim], m.qi[i*m.dim:(i+1)*m.dim]
	var dot float32
	for j := range p {
		dot += p[j] * q[j]
	}
	mu := m.mu
	if m.n == 0 {
		mu = 3.5
	}
	return math.Max(1, math.Min(5, mu+float64(m.bu[u]+m.bi[i]+dot)))
}

func (m *simMF) learn(u, i int, r float32) {
	m.n++
	m.mu += (float64(r) - m.mu) / float64(m.n)
	e := float32(float64(r) - m.predict(u, i))
	m.bu[u] += m.lr * (e - m.reg*m.bu[u])
	m.bi[i] += m.lr * (e - m.reg*m.bi[i])
	p, q := m.pu[u*m.dim:(u+1)*m.dim], m.qi[i*m.dim:(i+1)*m.dim]
	for j := range p {
		pj, qj := p[j], q[j]
		p[j] += m.lr * (e*qj - m.reg*pj)
		q[j] += m.lr * (e*pj - m.reg*qj)
	}
	m.touchedItem[i] = true
}

// mergeMode is how partitioned learners combine item parameters.
type mergeMode int

const (
	mergeNone      mergeMode = iota // never: k independent item models
	mergeAvg                        // parameter averaging of the k copies
	mergeDelta                      // the base plus the sum of every learner's change since the last merge
	mergeDeltaMean                  // the base plus the mean change of the learners that touched the item
)

func (m mergeMode) String() string {
	return [...]string{"none", "average", "delta-sum", "delta-mean"}[m]
}

// simResult is one configuration's outcome.
type simResult struct {
	k           int
	every       int
	mode        mergeMode
	rmse        float64
	merges      int
	itemsMerged int64 // item rows sent per learner, summed over merges (sparse deltas)
}

// simulate streams d through k learners (user u goes to learner u mod k, as
// Kafka partitions by user key), merging item parameters every `every`
// events of the whole stream, and returns the prequential RMSE.
func simulate(d *simData, k, every, dim int, mode mergeMode) simResult {
	ls := make([]*simMF, k)
	for x := range ls {
		ls[x] = newSimMF(d.users, d.items, dim, 1) // same initial item parameters everywhere
	}
	base := newSimMF(d.users, d.items, dim, 1) // item parameters as of the last merge
	res := simResult{k: k, every: every, mode: mode}
	var se float64
	for e := range d.r {
		u, i := int(d.u[e]), int(d.i[e])
		l := ls[u%k]
		diff := l.predict(u, i) - float64(d.r[e])
		se += diff * diff
		l.learn(u, i, d.r[e])
		if k > 1 && mode != mergeNone && (e+1)%every == 0 {
			res.itemsMerged += mergeItems(ls, base, mode)
			res.merges++
		}
	}
	res.rmse = math.Sqrt(se / float64(len(d.r)))
	return res
}

// mergeItems combines the learners' item biases and factors into base and
// copies the result back to every learner. It returns how many item rows
// the learners had changed (what a sparse merge would send).
func mergeItems(ls []*simMF, base *simMF, mode mergeMode) int64 {
	dim := base.dim
	var sent int64
	for i := range base.bi {
		touched := 0
		for _, l := range ls {
			if l.touchedItem[i] {
				touched++
				l.touchedItem[i] = false
			}
		}
		if touched == 0 {
			continue
		}
		sent += int64(touched)
		row := base.qi[i*dim : (i+1)*dim]
		switch mode {
		case mergeAvg:
			var b float32
			for j := range row {
				row[j] = 0
			}
			for _, l := range ls {
				b += l.bi[i]
				for j, q := range l.qi[i*dim : (i+1)*dim] {
					row[j] += q
				}
			}
			inv := 1 / float32(len(ls))
			base.bi[i] = b * inv
			for j := range row {
				row[j] *= inv
			}
		case mergeDelta, mergeDeltaMean:
			scale := float32(1)
			if mode == mergeDeltaMean {
				scale = 1 / float32(touched)
			}
			b0 := base.bi[i]
			old := append([]float32(nil), row...)
			for _, l := range ls {
				base.bi[i] += scale * (l.bi[i] - b0)
				for j, q := range l.qi[i*dim : (i+1)*dim] {
					row[j] += scale * (q - old[j])
				}
			}
		}
		for _, l := range ls {
			l.bi[i] = base.bi[i]
			copy(l.qi[i*dim:(i+1)*dim], row)
		}
	}
	return sent
}

// TestPartitionedLearnersMatchOne asserts the design's claim: four learners
// partitioned by user that merge item parameters (delta-sum) every 1,000
// events stay within 2% of one learner's prequential RMSE, while four that
// never merge are clearly worse. Margins: on this seed the merged learners
// land 0.1% above the single one and the unmerged ones 1.7% above the merged
// ones (printed below); 2% and 1% leave room for other seeds and platforms.
// Plain parameter averaging is logged too: it divides each learner's step
// by k and lands no better than not merging at all.
func TestPartitionedLearnersMatchOne(t *testing.T) {
	const dim = 8
	d := newSimData(3000, 600, 80_000, dim, 42)
	one := simulate(d, 1, 0, dim, mergeNone)
	merged := simulate(d, 4, 1000, dim, mergeDelta)
	averaged := simulate(d, 4, 1000, dim, mergeAvg)
	apart := simulate(d, 4, 0, dim, mergeNone)
	for _, r := range []simResult{one, merged, averaged, apart} {
		t.Logf("k=%d merge=%-9s every=%-5d RMSE %.4f (%+.2f%% vs one learner)", r.k, r.mode, r.every, r.rmse, 100*(r.rmse/one.rmse-1))
	}
	if merged.rmse > one.rmse*1.02 {
		t.Errorf("4 learners merging every 1000 events: RMSE %.4f, more than 2%% above one learner's %.4f", merged.rmse, one.rmse)
	}
	if apart.rmse < merged.rmse*1.01 {
		t.Errorf("4 learners that never merge (%.4f) should be clearly worse than merged ones (%.4f): the simulation would not show what merging buys", apart.rmse, merged.rmse)
	}
}

// BenchmarkPartitionedLearners prints the accuracy table of
// docs/operations.md: `go test ./deploy -run '^$' -bench PartitionedLearners`.
// Each sub-benchmark reports its prequential RMSE, the ratio to one learner
// and the item rows a sparse merge sends per event.
func BenchmarkPartitionedLearners(b *testing.B) {
	const dim = 8
	d := newSimData(4000, 800, 120_000, dim, 42)
	one := simulate(d, 1, 0, dim, mergeNone)
	type cfg struct {
		k, every int
		mode     mergeMode
	}
	cfgs := []cfg{{1, 0, mergeNone}}
	for _, k := range []int{2, 4, 8} {
		cfgs = append(cfgs, cfg{k, 0, mergeNone})
		for _, every := range []int{100, 1000, 10000} {
			cfgs = append(cfgs, cfg{k, every, mergeAvg}, cfg{k, every, mergeDelta}, cfg{k, every, mergeDeltaMean})
		}
	}
	var table strings.Builder
	for _, c := range cfgs {
		name := fmt.Sprintf("k=%d/merge=%s/every=%d", c.k, c.mode, c.every)
		b.Run(name, func(b *testing.B) {
			var r simResult
			for n := 0; n < b.N; n++ {
				r = simulate(d, c.k, c.every, dim, c.mode)
			}
			b.ReportMetric(r.rmse, "rmse")
			b.ReportMetric(r.rmse/one.rmse, "ratio")
			b.ReportMetric(float64(r.itemsMerged)/float64(len(d.r)), "rows/event")
			fmt.Fprintf(&table, "| %d | %s | %d | %.4f | %+.2f%% |\n", c.k, c.mode, c.every, r.rmse, 100*(r.rmse/one.rmse-1))
		})
	}
	b.Logf("\n| learners | merge | every (events) | RMSE | vs one |\n| --- | --- | --- | --- | --- |\n%s", table.String())
}
