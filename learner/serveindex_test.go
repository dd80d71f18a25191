package learner

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// unprepare drops the serving indexes DecodeSnapshot builds, so the models
// answer by their plain scans.
func unprepare(s *Snapshot) {
	s.mf.serving = false
	s.pop.order, s.pop.catOrder = nil, nil
	// item-kNN answers from its maps, with the same neighbour lists.
	nbrStart, nbr := s.knn.nbrStart, s.knn.nbr
	s.knn.thaw()
	s.knn.nbrStart, s.knn.nbr = nbrStart, nbr
	s.pop.link = itemLink{}
}

// TestServingIndexesMatchScans: the serving indexes built at decode time
// (MF's tight scan, popularity's precomputed
// orders, item-kNN's sorted rows) give exactly the answers of the plain
// scans, for every user, with and without category filters and exclusions.
func TestServingIndexesMatchScans(t *testing.T) {
	_, blob, _ := trainSnapshot(t, 1)
	fast, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !fast.mf.serving || fast.pop.order == nil || fast.knn.rowStart == nil {
		t.Fatal("DecodeSnapshot built no serving indexes")
	}
	unprepare(slow)

	items := fast.mf.items.names
	cats := append([]string{""}, fast.mf.cat.cats.names...)
	var got, want []streamrec.Scored
	for u, user := range fast.mf.users.names {
		if u%3 != 0 {
			continue // a third of the users keeps the test quick under -race
		}
		recent := make([]string, 0, 12)
		for k := range 12 {
			recent = append(recent, items[(u*7+k*13)%len(items)])
		}
		usr := &features.User{ID: user, Recent: recent}
		excl := func(it string) bool { return slices.Contains(recent[:5], it) }
		for _, cat := range cats {
			for _, k := range []int{1, 10, 100} {
				for _, ex := range []func(string) bool{nil, excl} {
					q := &Query{User: usr, Category: cat, Exclude: ex, TS: 1}
					name := fmt.Sprintf("user %s cat %q k %d exclude %v", user, cat, k, ex != nil)
					got = fast.mf.Recommend(q, k, got[:0])
					want = slow.mf.Recommend(q, k, want[:0])
					if !slices.Equal(got, want) {
						t.Fatalf("mf %s: prepared %v, scan %v", name, got, want)
					}
					got = fast.pop.Recommend(q, k, got[:0])
					want = slow.pop.Recommend(q, k, want[:0])
					if !slices.Equal(got, want) {
						t.Fatalf("pop %s: prepared %v, scan %v", name, got, want)
					}
					got = fast.Recommend(q, k, got[:0])
					want = slow.Recommend(q, k, want[:0])
					if !slices.Equal(got, want) {
						t.Fatalf("twostage %s: prepared %v, scan %v", name, got, want)
					}
				}
			}
		}
		for _, it := range items {
			if a, b := fast.knn.affinity(it, recent), slow.knn.affinity(it, recent); a != b {
				t.Fatalf("affinity(%s, %v): prepared %v, maps %v", it, recent, a, b)
			}
		}
		// Batch forms over every MF item, through the links.
		cand := make([]int32, len(items))
		for i := range cand {
			cand[i] = int32(i)
		}
		sc := getQueryScratch()
		a, b := make([]float64, len(cand)), make([]float64, len(cand))
		fast.knn.affinities(sc, fast.mf.items.names, cand, recent, a)
		slow.knn.affinities(sc, slow.mf.items.names, cand, recent, b)
		for k := range a {
			if want := float64(slow.knn.affinity(items[k], recent)); a[k] != want || b[k] != want {
				t.Fatalf("affinities[%s]: prepared %v, unprepared %v, affinity %v", items[k], a[k], b[k], want)
			}
		}
		fast.pop.scoresAt(fast.mf.items.names, cand, 12345, a)
		slow.pop.scoresAt(slow.mf.items.names, cand, 12345, b)
		for k := range a {
			want := 0.0
			if j, ok := slow.pop.items.get(items[k]); ok {
				want = slow.pop.score[j] * slow.pop.factor(12345)
			}
			if a[k] != want || b[k] != want {
				t.Fatalf("scoresAt[%s]: prepared %v, unprepared %v, want %v", items[k], a[k], b[k], want)
			}
		}
		putQueryScratch(sc)
	}
}

// TestPreparedModelsStopUsingIndexesWhenLearning: a model that learns after
// its indexes were built drops them (they would go stale).
func TestPreparedModelsStopUsingIndexesWhenLearning(t *testing.T) {
	_, blob, _ := trainSnapshot(t, 1)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	e := ex(streamrec.Implicit, "u-new", "i-new", 1, 2, []string{s.mf.items.names[0]}, "c")
	s.mf.Learn(e)
	s.pop.Learn(e)
	s.knn.Learn(e)
	if s.mf.serving || s.pop.order != nil || s.knn.rowStart != nil || s.knn.nbr != nil || s.knn.co == nil ||
		s.knn.link.idx != nil || s.pop.link.idx != nil {
		t.Fatal("serving indexes kept after Learn")
	}
}

// TestFusionRanksMatchSortFunc: the specialised sort orders like the
// comparator the fusion used (value descending, index ascending on ties),
// with many ties and on sizes around the insertion-sort cut-off.
func TestFusionRanksMatchSortFunc(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var x []rankEntry
	for _, n := range []int{0, 1, 2, 11, 12, 13, 50, 200, 1000} {
		for _, levels := range []int{1, 3, 1 << 30} {
			sig := make([]float64, n)
			for k := range sig {
				sig[k] = float64(r.IntN(min(levels, 1<<30)))
				if levels == 1<<30 {
					sig[k] = r.NormFloat64()
				}
			}
			want := make([]int32, n)
			for k := range want {
				want[k] = int32(k)
			}
			slices.SortFunc(want, func(a, b int32) int {
				switch {
				case sig[a] > sig[b]:
					return -1
				case sig[a] < sig[b]:
					return 1
				}
				return int(a - b)
			})
			x = fusionRanks(x, sig)
			for k := range want {
				if x[k].k != want[k] || x[k].v != sig[want[k]] {
					t.Fatalf("n %d levels %d: position %d is %v, want index %d", n, levels, k, x[k], want[k])
				}
			}
		}
	}
}
