package learner

// ItemSet is a set of items resolved to one MF model's item indexes. A
// server resolves a user's seen-set once per model and keeps it, and every
// query then filters candidates by index: a heavy user's seen items score
// high and reach the filter hundreds of times per query, each a string hash
// before.
type ItemSet struct {
	owner *indexTag // the index the set was resolved against
	idx   []int32   // the indexes of the items the model knows
}

// indexTag identifies one MF item index without holding the model: a
// server keeps a user's set past the model's swap, and the set must not pin
// the old model's matrices in memory.
type indexTag struct{ _ byte } // not zero-sized: each one has its own address

// ItemSet resolves items against m's index; items m does not know are
// left out, since they can never be its candidates.
func (m *MF) ItemSet(items []string) *ItemSet {
	set := &ItemSet{owner: m.tag, idx: make([]int32, 0, len(items))}
	for _, it := range items {
		if i, ok := m.items.get(it); ok {
			set.idx = append(set.idx, i)
		}
	}
	return set
}

// Len is the number of items the set holds.
func (s *ItemSet) Len() int { return len(s.idx) }

// itemFilter is a query's exclusion as an MF scan applies it: by index
// when the query carries a set of this model's, else by name.
type itemFilter struct {
	byIdx  []bool            // set when the query's ExcludeSet is this model's
	byName func(string) bool // otherwise
}

// excluded reports whether item i of m is filtered out.
func (f *itemFilter) excluded(m *MF, i int32) bool {
	if f.byIdx != nil {
		return f.byIdx[i]
	}
	return f.byName != nil && f.byName(m.items.names[i])
}

// filterFor sets up q's exclusion for a scan of m's items in s: a query
// carrying m's own set marks its indexes in s.excl (release clears them).
func (m *MF) filterFor(s *queryScratch, q *Query) itemFilter {
	set := q.ExcludeSet
	if set == nil || set.owner == nil || set.owner != m.tag || q.Exclude == nil {
		return itemFilter{byName: q.Exclude}
	}
	n := m.items.len()
	if cap(s.excl) < n {
		s.excl = make([]bool, n)
	}
	s.excl = s.excl[:n]
	for _, i := range set.idx {
		s.excl[i] = true
	}
	s.exclSet = set
	return itemFilter{byIdx: s.excl}
}

// releaseFilter clears the marks filterFor made, so the pooled scratch is
// clean for the next query.
func (s *queryScratch) releaseFilter() {
	if s.exclSet == nil {
		return
	}
	for _, i := range s.exclSet.idx {
		s.excl[i] = false
	}
	s.exclSet = nil
}
