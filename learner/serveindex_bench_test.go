package learner

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// benchMF is an MF with n random items of dim factors, as a decoded
// snapshot holds them (the latest-small catalogue has 9,742 items).
func benchMF(n, dim int) *MF {
	m := NewMF(DefaultConfig().MF, 1)
	m.dim = dim
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		m.items.add("i" + strconv.Itoa(i))
		m.bj = append(m.bj, float32(r.NormFloat64()*0.5))
		for range dim {
			m.q = append(m.q, float32(r.NormFloat64()*0.3))
		}
	}
	m.cat.grow(n)
	m.prepare()
	return m
}

// BenchmarkMFTopM: the two-stage retrieval scan, top 100 of 9,742 items.
func BenchmarkMFTopM(b *testing.B) {
	m := benchMF(9742, 16)
	s := getQueryScratch()
	r := rand.New(rand.NewPCG(3, 4))
	for range m.dim {
		s.vec = append(s.vec, float32(r.NormFloat64()*0.3))
	}
	b.ReportAllocs()
	for b.Loop() {
		s.top.reset(100)
		m.topInto(s, true, nil, "")
	}
}
