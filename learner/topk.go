package learner

import (
	"math"
	"slices"
	"sync"
)

type topEntry struct {
	score float32
	idx   int32
}

// boundedTop keeps the k best (score, idx) pairs in a bounded min-heap: the root is
// the worst kept item, so each candidate costs one compare unless it enters.
// Ties break toward the lower index, so results are deterministic.
type boundedTop struct {
	k int
	h []topEntry
}

func (t *boundedTop) reset(k int) {
	t.k = k
	t.h = t.h[:0]
}

// rankedBelow reports whether a ranks below b.
func rankedBelow(a, b topEntry) bool {
	return a.score < b.score || (a.score == b.score && a.idx > b.idx)
}

// full reports whether the heap is full, and min its worst score.
func (t *boundedTop) threshold() (float32, bool) {
	if len(t.h) < t.k {
		return 0, false
	}
	return t.h[0].score, true
}

func (t *boundedTop) push(score float32, idx int32) {
	if t.k <= 0 {
		return
	}
	c := topEntry{score, idx}
	if len(t.h) < t.k {
		t.h = append(t.h, c)
		// sift up
		i := len(t.h) - 1
		for i > 0 {
			p := (i - 1) / 2
			if !rankedBelow(t.h[i], t.h[p]) {
				break
			}
			t.h[i], t.h[p] = t.h[p], t.h[i]
			i = p
		}
		return
	}
	if !rankedBelow(t.h[0], c) {
		return
	}
	t.h[0] = c
	// sift down
	i, n := 0, len(t.h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && rankedBelow(t.h[r], t.h[l]) {
			m = r
		}
		if !rankedBelow(t.h[m], t.h[i]) {
			break
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// sorted orders the kept pairs best first (in place) and returns them.
func (t *boundedTop) sorted() []topEntry {
	slices.SortFunc(t.h, func(a, b topEntry) int {
		switch {
		case rankedBelow(b, a):
			return -1
		case rankedBelow(a, b):
			return 1
		}
		return 0
	})
	return t.h
}

// queryScratch is per-query working memory, pooled so concurrent queries neither
// allocate nor share.
type queryScratch struct {
	top     boundedTop
	acc     []float32 // dense accumulator by item index
	touch   []int32   // indexes with acc != 0
	mark    []bool    // candidate set membership by item index
	cand    []int32
	vec     []float32
	idxs    []int32
	vals    []float64
	names   []string
	sig     []float64
	fused   []float64
	aff     []float32 // item-kNN affinity by item index (affinities)
	affTo   []int32   // indexes with aff != 0
	dots    []float32 // a block of MF scores (topServing16)
	excl    []bool    // excluded by item index (filterFor), all false between queries
	exclSet *ItemSet  // the set marked in excl
	ranks   []rankEntry
}

var queryScratchPool = sync.Pool{New: func() any { return new(queryScratch) }}

func getQueryScratch() *queryScratch { return queryScratchPool.Get().(*queryScratch) }

func putQueryScratch(s *queryScratch) { queryScratchPool.Put(s) }

func (s *queryScratch) dense(n int) {
	if cap(s.acc) < n {
		s.acc = make([]float32, n)
		s.mark = make([]bool, n)
	}
	s.acc = s.acc[:n]
	s.mark = s.mark[:n]
}

// rankEntry is one candidate's signal for rank fusion.
type rankEntry struct {
	v float64
	k int32
}

// rankBefore orders by value descending, lower index first on ties.
func rankBefore(a, b rankEntry) bool { return a.v > b.v || (a.v == b.v && a.k < b.k) }

// fusionRanks sets x to (sig[k], k) for every k and sorts it best first
// (value descending, lower index on ties: the order of the two-stage
// fusion's comparator), with the comparison inlined. It returns x.
func fusionRanks(x []rankEntry, sig []float64) []rankEntry {
	x = x[:0]
	for k, v := range sig {
		x = append(x, rankEntry{v, int32(k)})
	}
	sortRanks(x)
	return x
}

// sortRanks is a quicksort (median of three, insertion sort below 12,
// recursion on the smaller side) specialised to rankEntry.
func sortRanks(x []rankEntry) {
	for len(x) > 12 {
		m := len(x) / 2
		a, b, c := 0, m, len(x)-1
		if rankBefore(x[b], x[a]) {
			x[a], x[b] = x[b], x[a]
		}
		if rankBefore(x[c], x[b]) {
			x[b], x[c] = x[c], x[b]
			if rankBefore(x[b], x[a]) {
				x[a], x[b] = x[b], x[a]
			}
		}
		p := x[b]
		i, j := 0, len(x)-1
		for i <= j {
			for rankBefore(x[i], p) {
				i++
			}
			for rankBefore(p, x[j]) {
				j--
			}
			if i <= j {
				x[i], x[j] = x[j], x[i]
				i++
				j--
			}
		}
		if j+1 < len(x)-i {
			sortRanks(x[:j+1])
			x = x[i:]
		} else {
			sortRanks(x[i:])
			x = x[:j+1]
		}
	}
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && rankBefore(x[j], x[j-1]); j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
}

// bestFirstKey packs (score, idx) into an integer that sorts ascending in
// boundedTop's order: score descending, then idx ascending. Sorting plain
// integers needs no comparator call, which is what makes building every
// item's neighbour list at decode time cheap.
func bestFirstKey(score float32, idx int32) uint64 {
	if score == 0 {
		score = 0 // -0 ties with +0, as in rankedBelow
	}
	f := math.Float32bits(score)
	if f&(1<<31) != 0 {
		f = ^f // negative: larger magnitude sorts lower
	} else {
		f |= 1 << 31
	}
	return uint64(^f)<<32 | uint64(uint32(idx))
}

func fromBestFirstKey(k uint64) topEntry {
	f := ^uint32(k >> 32)
	if f&(1<<31) != 0 {
		f &^= 1 << 31
	} else {
		f = ^f
	}
	return topEntry{score: math.Float32frombits(f), idx: int32(uint32(k))}
}

// appendBest appends to dst the k best entries of keys (bestFirstKey
// values, reordered in place), best first: what a boundedTop of k fed the
// same pairs returns.
func appendBest(dst []topEntry, keys []uint64, k int) []topEntry {
	if k <= 0 {
		return dst
	}
	if len(keys) > k {
		selectSmallest(keys, k)
		keys = keys[:k]
	}
	slices.Sort(keys)
	for _, key := range keys {
		dst = append(dst, fromBestFirstKey(key))
	}
	return dst
}

// selectSmallest reorders a so that its k smallest values come first, in
// no particular order (0 < k <= len(a)).
func selectSmallest(a []uint64, k int) {
	selectFirst(a, k, func(x, y uint64) bool { return x < y })
}

// selectFirst reorders a so that its k first entries (0 < k <= len(a)) are
// the k that come first by before (a strict order), in O(n) expected time
// (Hoare's selection); neither part is sorted.
func selectFirst[T any](a []T, k int, before func(x, y T) bool) {
	lo, hi, want := 0, len(a)-1, k-1
	for lo < hi {
		p := a[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for before(a[i], p) {
				i++
			}
			for before(p, a[j]) {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return
		}
	}
}
