package learner

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/streamrec/streamrec"
)

// ItemKNN is incremental item-to-item collaborative filtering ("itemknn"):
// each new (user, item) pair co-occurs with the user's most recent items;
// similarity is the co-occurrence count over the geometric mean of the
// items' counts (cosine on binary user vectors), shrunk for rare pairs.
type ItemKNN struct {
	cfg   KNNConfig
	items strIndex
	cat   itemCatalog
	count []float32
	// co holds the co-occurrence counts while the model learns: one map per
	// item, cheap to update.
	co []map[int32]float32
	// The frozen form replaces co in a model that serves (a decoded
	// snapshot never learns): every row sorted by neighbour index in flat
	// slices (CSR), built straight from the snapshot's sorted rows with no
	// map and no sort, each pair's similarity computed once so affinity
	// binary-searches instead of probing maps. A frozen model that is asked
	// to learn thaws back into maps.
	rowStart []int32 // row i is rowIdx[rowStart[i]:rowStart[i+1]]
	rowIdx   []int32
	rowCo    []float32 // the counts, kept to thaw and to encode
	rowSim   []float32
	// nbr (frozen models) holds each item's best Neighbours by similarity,
	// best first: item i's are nbr[nbrStart[i]:nbrStart[i+1]].
	nbrStart []int32
	nbr      []topEntry
	// link maps MF's item indexes to ours (prepared snapshots).
	link itemLink
}

// NewItemKNN returns the item-kNN model.
func NewItemKNN(cfg KNNConfig) *ItemKNN {
	return &ItemKNN{cfg: cfg, items: newStrIndex(), cat: newItemCatalog()}
}

// Name implements Model.
func (m *ItemKNN) Name() string { return "itemknn" }

func (m *ItemKNN) sim(i, j int32, co float32) float32 {
	return co / (float32(math.Sqrt(float64(m.count[i])*float64(m.count[j]))) + float32(m.cfg.Shrink))
}

func (m *ItemKNN) window(recent []string) []string {
	if len(recent) > m.cfg.Window {
		return recent[:m.cfg.Window]
	}
	return recent
}

// Predict implements Model: the summed similarity of the item to the user's
// recent items.
func (m *ItemKNN) Predict(ex *Example) float64 {
	if ex.User == nil {
		return 0
	}
	return float64(m.affinity(ex.Event.Item, ex.User.Recent))
}

// affinity is the summed similarity of item to the first Window of recent.
func (m *ItemKNN) affinity(item string, recent []string) float32 {
	i, ok := m.items.get(item)
	if !ok {
		return 0
	}
	var s float32
	for _, r := range m.window(recent) {
		j, ok := m.items.get(r)
		if !ok || j == i {
			continue
		}
		if m.frozen() {
			s += m.simPrepared(i, j)
			continue
		}
		if c := m.co[i][j]; c > 0 {
			s += m.sim(i, j, c)
		}
	}
	return s
}

// affinities sets out[k] to float64(affinity(names[cand[k]], recent)) for
// every candidate (names is the table the candidates index, MF's in the
// two-stage model). A prepared model adds each recent item's row into a
// dense accumulator once (sim is symmetric and the rows are added in the
// window's order, so the sums are bit-identical) and reads the candidates
// off it through the link; otherwise each candidate is summed on its own.
func (m *ItemKNN) affinities(s *queryScratch, names []string, cand []int32, recent []string, out []float64) {
	recent = m.window(recent)
	if !m.frozen() {
		for k, i := range cand {
			out[k] = float64(m.affinity(names[i], recent))
		}
		return
	}
	n := m.items.len()
	if cap(s.aff) < n {
		s.aff = make([]float32, n)
	}
	aff := s.aff[:n]
	s.affTo = s.affTo[:0]
	for _, r := range recent {
		j, ok := m.items.get(r)
		if !ok {
			continue
		}
		lo, hi := m.rowStart[j], m.rowStart[j+1]
		sims := m.rowSim[lo:hi]
		for x, i := range m.rowIdx[lo:hi] {
			if aff[i] == 0 {
				s.affTo = append(s.affTo, i)
			}
			aff[i] += sims[x]
		}
	}
	for k, c := range cand {
		out[k] = 0
		if i, ok := m.link.get(names, c, &m.items); ok {
			out[k] = float64(aff[i])
		}
	}
	for _, i := range s.affTo {
		aff[i] = 0
	}
	s.affTo = s.affTo[:0]
}

// simPrepared is sim(i, j) from the prepared rows (0 when they never
// co-occurred).
func (m *ItemKNN) simPrepared(i, j int32) float32 {
	lo, hi := int(m.rowStart[i]), int(m.rowStart[i+1])
	idx := m.rowIdx[lo:hi]
	a, b := 0, len(idx)
	for a < b {
		h := int(uint(a+b) >> 1)
		if idx[h] < j {
			a = h + 1
		} else {
			b = h
		}
	}
	if a < len(idx) && idx[a] == j {
		return m.rowSim[lo+a]
	}
	return 0
}

// Learn implements Model.
func (m *ItemKNN) Learn(ex *Example) {
	if m.frozen() {
		m.thaw()
	}
	i, added := m.items.add(ex.Event.Item)
	if added {
		m.count = append(m.count, 0)
		m.co = append(m.co, nil)
	}
	if ex.Item != nil {
		m.cat.set(i, ex.Item.Categories)
	}
	var recent []string
	if ex.User != nil {
		recent = m.window(ex.User.Recent)
	}
	if slices.Contains(recent, ex.Event.Item) {
		return // a repeat of a recent pair adds no co-occurrence
	}
	m.count[i]++
	for _, r := range recent {
		j, ok := m.items.get(r)
		if !ok || j == i {
			continue
		}
		if m.co[i] == nil {
			m.co[i] = map[int32]float32{}
		}
		if m.co[j] == nil {
			m.co[j] = map[int32]float32{}
		}
		m.co[i][j]++
		m.co[j][i]++
	}
}

// frozen reports whether the model is in its serving form (rows, no maps).
func (m *ItemKNN) frozen() bool { return m.rowStart != nil }

// prepare puts the model in its serving form: the rows (from the maps if it
// learnt since), each pair's similarity, and each item's neighbour list. It
// runs on every snapshot a server loads, on rows decoded already sorted, so
// it is one pass over the pairs with nothing allocated per item.
func (m *ItemKNN) prepare() {
	if !m.frozen() {
		m.freeze()
	}
	if m.rowSim != nil {
		return
	}
	n := m.items.len()
	m.rowSim = make([]float32, len(m.rowIdx))
	if m.nbrStart != nil {
		// The snapshot carried the neighbour lists: only the similarities
		// remain to compute.
		for i := range n {
			yieldAt(i)
			for x := m.rowStart[i]; x < m.rowStart[i+1]; x++ {
				m.rowSim[x] = m.sim(int32(i), m.rowIdx[x], m.rowCo[x])
			}
		}
		return
	}
	m.nbrStart = make([]int32, n+1)
	m.nbr = make([]topEntry, 0, min(len(m.rowIdx), n*max(m.cfg.Neighbours, 0)))
	var keys []uint64
	for i := range n {
		yieldAt(i)
		m.nbrStart[i] = int32(len(m.nbr))
		lo, hi := m.rowStart[i], m.rowStart[i+1]
		keys = keys[:0]
		for x := lo; x < hi; x++ {
			j := m.rowIdx[x]
			s := m.sim(int32(i), j, m.rowCo[x])
			m.rowSim[x] = s
			keys = append(keys, bestFirstKey(s, j))
		}
		m.nbr = appendBest(m.nbr, keys, m.cfg.Neighbours)
	}
	m.nbrStart[n] = int32(len(m.nbr))
}

// appendNeighbourLists encodes every item's neighbour list, best first:
// the prepared ones, else computed from the rows or maps as prepare would.
// It leaves the model as it was: the learner encodes while it learns.
func (m *ItemKNN) appendNeighbourLists(e *wbuf) {
	n := m.items.len()
	var keys []uint64
	var best []topEntry
	for i := range n {
		switch {
		case m.nbrStart != nil:
			best = m.nbr[m.nbrStart[i]:m.nbrStart[i+1]]
		case m.frozen():
			keys = keys[:0]
			for x := m.rowStart[i]; x < m.rowStart[i+1]; x++ {
				keys = append(keys, bestFirstKey(m.sim(int32(i), m.rowIdx[x], m.rowCo[x]), m.rowIdx[x]))
			}
			best = appendBest(best[:0], keys, m.cfg.Neighbours)
		default:
			keys = keys[:0]
			if i < len(m.co) {
				for j, c := range m.co[i] {
					if c > 0 { // as freeze and a decode leave them out
						keys = append(keys, bestFirstKey(m.sim(int32(i), j, c), j))
					}
				}
			}
			best = appendBest(best[:0], keys, m.cfg.Neighbours)
		}
		e.u32(uint32(len(best)))
		for _, c := range best {
			e.u32(uint32(c.idx))
			e.u32(math.Float32bits(c.score))
		}
	}
}

// decodeCompactRow appends one encoding-3 row to the frozen rows: a
// count of pairs, then each pair as the index's distance from the
// previous one's successor and the count, all varints; indexes must stay
// below n and counts be at least 1.
func (m *ItemKNN) decodeCompactRow(d *rbuf, n int) {
	cnt := d.uvarint("itemknn row")
	if d.err == nil && cnt > uint64(len(d.b)-d.off)/2 {
		d.fail("itemknn row")
	}
	prev := int64(-1)
	for range cnt {
		if d.err != nil {
			return
		}
		var delta, c uint64
		if b := d.b[d.off:]; len(b) >= 2 && b[0] < 0x80 && b[1] < 0x80 {
			// Most pairs: a near neighbour and a small count, one byte
			// each (binary.Uvarint is not inlined; this is most of a
			// decode's varints).
			delta, c = uint64(b[0]), uint64(b[1])
			d.off += 2
		} else {
			delta = d.uvarint("itemknn neighbour id")
			c = d.uvarint("itemknn count")
			if d.err != nil {
				return
			}
		}
		if delta >= uint64(n) || prev+1+int64(delta) >= int64(n) || c == 0 || c > 1<<53 {
			d.fail("itemknn pair")
			return
		}
		prev += 1 + int64(delta)
		m.rowIdx = append(m.rowIdx, int32(prev))
		m.rowCo = append(m.rowCo, float32(c))
	}
}

// decodeNeighbourLists reads what appendNeighbourLists wrote, checking
// that every list is short enough, names other known items and is in
// best-first order, so that a server skips the selection over every row.
func (m *ItemKNN) decodeNeighbourLists(d *rbuf) {
	n := m.items.len()
	m.nbrStart = make([]int32, n+1)
	entries := 0
	if d.err == nil {
		entries = (len(d.b) - d.off) / 8 // at most this many remain
	}
	m.nbr = make([]topEntry, 0, min(entries, n*max(m.cfg.Neighbours, 0)))
	for i := 0; i < n && d.err == nil; i++ {
		yieldAt(i)
		m.nbrStart[i] = int32(len(m.nbr))
		cnt := d.u32()
		if cnt > uint32(max(m.cfg.Neighbours, 0)) {
			d.fail("itemknn neighbour list length")
			break
		}
		if !d.need(uint64(cnt)*8, "itemknn neighbour list") {
			break
		}
		var prev uint64
		for x := range int(cnt) {
			j := binary.LittleEndian.Uint32(d.b[d.off:])
			s := math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off+4:]))
			d.off += 8
			key := bestFirstKey(s, int32(j))
			if j >= uint32(n) || int(j) == i || math.IsNaN(float64(s)) || (x > 0 && key <= prev) {
				d.fail("itemknn neighbour")
				break
			}
			prev = key
			m.nbr = append(m.nbr, topEntry{score: s, idx: int32(j)})
		}
	}
	m.nbrStart[n] = int32(len(m.nbr))
}

// freeze moves the maps into sorted rows. Pairs with a count <= 0 are left
// out, as a decode of the encoded maps would leave them out.
func (m *ItemKNN) freeze() {
	n := m.items.len()
	total := 0
	for _, co := range m.co {
		total += len(co)
	}
	m.rowStart = make([]int32, n+1)
	m.rowIdx, m.rowCo = make([]int32, 0, total), make([]float32, 0, total)
	var keys []int32
	for i := range n {
		m.rowStart[i] = int32(len(m.rowIdx))
		if i >= len(m.co) {
			continue
		}
		keys = keys[:0]
		for j := range m.co[i] {
			keys = append(keys, j)
		}
		slices.Sort(keys)
		for _, j := range keys {
			if c := m.co[i][j]; c > 0 {
				m.rowIdx = append(m.rowIdx, j)
				m.rowCo = append(m.rowCo, c)
			}
		}
	}
	m.rowStart[n] = int32(len(m.rowIdx))
	m.co = nil
	m.rowSim, m.nbrStart, m.nbr = nil, nil, nil
}

// thaw turns a frozen model back into maps so that it can learn, and drops
// the serving indexes, which would go stale.
func (m *ItemKNN) thaw() {
	n := m.items.len()
	m.co = make([]map[int32]float32, n)
	for i := range n {
		lo, hi := m.rowStart[i], m.rowStart[i+1]
		if lo == hi {
			continue
		}
		row := make(map[int32]float32, hi-lo)
		for x := lo; x < hi; x++ {
			row[m.rowIdx[x]] = m.rowCo[x]
		}
		m.co[i] = row
	}
	m.rowStart, m.rowIdx, m.rowCo, m.rowSim = nil, nil, nil, nil
	m.nbrStart, m.nbr = nil, nil
	m.link = itemLink{}
}

// linkItems links the item table names (MF's) to ours for affinities.
func (m *ItemKNN) linkItems(names []string) { m.link.build(names, &m.items) }

// neighbours calls fn for item i's neighbours (prepared lists, or all).
func (m *ItemKNN) neighbours(i int32, fn func(j int32, s float32)) {
	if m.nbrStart != nil {
		for _, c := range m.nbr[m.nbrStart[i]:m.nbrStart[i+1]] {
			fn(c.idx, c.score)
		}
		return
	}
	for j, c := range m.co[i] {
		fn(j, m.sim(i, j, c))
	}
}

// accumulate adds, for every seed item, its neighbours' similarities into
// s.acc (tracking touched indexes in s.touch). Seeds themselves are skipped.
func (m *ItemKNN) accumulate(s *queryScratch, seeds []string) {
	s.dense(m.items.len())
	s.idxs = s.idxs[:0]
	for _, r := range seeds {
		if j, ok := m.items.get(r); ok {
			s.idxs = append(s.idxs, j)
		}
	}
	if m.nbrStart != nil {
		// Prepared lists: a plain loop, no call per neighbour.
		for _, j := range s.idxs {
			for _, c := range m.nbr[m.nbrStart[j]:m.nbrStart[j+1]] {
				if s.acc[c.idx] == 0 {
					s.touch = append(s.touch, c.idx)
				}
				s.acc[c.idx] += c.score
			}
		}
	} else {
		m.accumulateMaps(s)
	}
	for _, j := range s.idxs {
		if s.acc[j] != 0 {
			s.acc[j] = -1 // seeds are not candidates; reset below like the rest
		}
	}
}

// accumulateMaps is accumulate's loop over the co-occurrence maps.
func (m *ItemKNN) accumulateMaps(s *queryScratch) {
	for _, j := range s.idxs {
		m.neighbours(j, func(k int32, v float32) {
			if s.acc[k] == 0 {
				s.touch = append(s.touch, k)
			}
			s.acc[k] += v
		})
	}
}

// clear zeroes s.acc at the touched indexes.
func clearQueryAcc(s *queryScratch) {
	for _, k := range s.touch {
		s.acc[k] = 0
	}
	s.touch = s.touch[:0]
}

// Recommend implements Recommender: items most co-occurring with the user's
// recent items (empty when the user has no known recent items).
func (m *ItemKNN) Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	if q.User == nil {
		return dst
	}
	s := getQueryScratch()
	defer putQueryScratch(s)
	s.top.reset(k)
	m.topInto(s, m.window(q.User.Recent), q.Exclude, q.Category)
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: m.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
}

// topInto fills s.top from the co-occurrences of seeds.
func (m *ItemKNN) topInto(s *queryScratch, seeds []string, exclude func(string) bool, category string) {
	cat := int32(-1)
	if category != "" {
		c, ok := m.cat.category(category)
		if !ok {
			return
		}
		cat = c
	}
	m.accumulate(s, seeds)
	for _, k := range s.touch {
		v := s.acc[k]
		if v <= 0 {
			continue
		}
		if th, full := s.top.threshold(); full && v < th {
			continue
		}
		if cat >= 0 && !m.cat.in(k, cat) {
			continue
		}
		if exclude != nil && exclude(m.items.names[k]) {
			continue
		}
		s.top.push(v, k)
	}
	clearQueryAcc(s)
}

// Similar returns the items most similar to item by co-occurrence.
func (m *ItemKNN) Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored {
	i, ok := m.items.get(item)
	if !ok {
		return dst
	}
	s := getQueryScratch()
	defer putQueryScratch(s)
	s.top.reset(k)
	m.neighbours(i, func(j int32, v float32) { s.top.push(v, j) })
	for _, c := range s.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: m.items.names[c.idx], Score: float64(c.score)})
	}
	return dst
}

// MarshalBinary implements encoding.BinaryMarshaler (keys sorted, so equal
// models give equal bytes).
func (m *ItemKNN) MarshalBinary() ([]byte, error) {
	version := uint8(itemKNNEncoding)
	if !m.countsCompact() {
		version = 2
	}
	return m.marshal(version), nil
}

// countsCompact reports whether every pair's count fits encoding 3 (pairs
// with a count <= 0 are not encoded).
func (m *ItemKNN) countsCompact() bool {
	if m.frozen() {
		for _, c := range m.rowCo {
			if !compactCount(c) {
				return false
			}
		}
		return true
	}
	for _, row := range m.co {
		for _, c := range row {
			if c > 0 && !compactCount(c) {
				return false
			}
		}
	}
	return true
}

// pairs counts the pairs eachRow yields.
func (m *ItemKNN) pairs() int {
	if m.frozen() {
		return len(m.rowIdx)
	}
	n := 0
	for _, row := range m.co {
		for _, c := range row {
			if c > 0 {
				n++
			}
		}
	}
	return n
}

// The item-kNN section's encodings:
//   - 1: the rows, each pair as a fixed-width index and count;
//   - 2: 1 plus each item's neighbour list, so that servers do not select
//     them from every row on each swap (more than half a decode's CPU);
//   - 3: 2 with the rows as varints, index deltas and counts (a pair takes
//     about 2 bytes instead of 8: the MovieLens latest-small snapshot that
//     every swap moves through Redis shrinks from 26 to 11 MB). Counts are
//     whole numbers, as Learn makes them; a model with another count is
//     encoded as 2.
//
// Every encoding still decodes.
const itemKNNEncoding = 3

// compactCount reports whether a count fits encoding 3: a whole number
// from 1 up to 2^53.
func compactCount(c float32) bool {
	return c >= 1 && c <= 1<<53 && c == float32(math.Trunc(float64(c)))
}

// eachRow calls fn with each item's row in index order (neighbour indexes
// ascending, pairs with a count <= 0 left out as a decode leaves them out).
// The slices are only valid during the call.
func (m *ItemKNN) eachRow(fn func(idx []int32, co []float32)) {
	if m.frozen() {
		for i := range m.items.len() {
			lo, hi := m.rowStart[i], m.rowStart[i+1]
			fn(m.rowIdx[lo:hi], m.rowCo[lo:hi])
		}
		return
	}
	var keys []int32
	var cos []float32
	for i := range m.items.len() {
		var row map[int32]float32
		if i < len(m.co) {
			row = m.co[i]
		}
		keys = keys[:0]
		for j, c := range row {
			if c > 0 {
				keys = append(keys, j)
			}
		}
		slices.Sort(keys)
		cos = cos[:0]
		for _, j := range keys {
			cos = append(cos, row[j])
		}
		fn(keys, cos)
	}
}

func (m *ItemKNN) marshal(version uint8) []byte {
	var e wbuf
	e.header("itemknn", version)
	m.items.encode(&e)
	m.cat.encode(&e)
	e.f32s(m.count)
	if version >= 3 {
		e.b = binary.AppendUvarint(e.b, uint64(m.pairs()))
	}
	m.eachRow(func(idx []int32, co []float32) {
		if version >= 3 {
			e.b = binary.AppendUvarint(e.b, uint64(len(idx)))
			prev := int32(-1)
			for x, j := range idx {
				e.b = binary.AppendUvarint(e.b, uint64(j-prev-1))
				e.b = binary.AppendUvarint(e.b, uint64(co[x]))
				prev = j
			}
			return
		}
		e.u32(uint32(len(idx)))
		for x, j := range idx {
			e.u32(uint32(j))
			e.u32(math.Float32bits(co[x]))
		}
	})
	if version >= 2 {
		m.appendNeighbourLists(&e)
	}
	return e.b
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (m *ItemKNN) UnmarshalBinary(b []byte) error {
	d := rbuf{b: b}
	version, err := d.headerUpTo("itemknn", itemKNNEncoding)
	if err != nil {
		return err
	}
	m.items.decode(&d)
	m.cat.decode(&d)
	m.count = d.f32s()
	n := m.items.len()
	if d.err == nil && len(m.count) != n {
		return fmt.Errorf("itemknn: %d counts for %d items", len(m.count), n)
	}
	// The rows are encoded sorted by neighbour index: they become the
	// frozen form as they are, checked on the way (a decoded snapshot
	// serves; learning thaws it).
	m.co = nil
	m.rowStart = make([]int32, n+1)
	pairs := 0
	if d.err == nil {
		pairs = (len(d.b) - d.off) / 8 // at most this many pairs remain
	}
	if version >= 3 {
		// The pair count comes first, so the rows are allocated at their
		// size; a pair takes two bytes at least.
		total := d.uvarint("itemknn pair count")
		if d.err == nil && total > uint64(len(d.b)-d.off)/2 {
			d.fail("itemknn pair count")
		}
		pairs = int(total)
	}
	m.rowIdx, m.rowCo = make([]int32, 0, pairs), make([]float32, 0, pairs)
	for i := 0; i < n && d.err == nil; i++ {
		yieldAt(i)
		if version >= 3 {
			m.rowStart[i] = int32(len(m.rowIdx))
			m.decodeCompactRow(&d, n)
			continue
		}
		m.rowStart[i] = int32(len(m.rowIdx))
		cnt := d.u32()
		if !d.need(uint64(cnt)*8, "itemknn row") {
			break
		}
		row := d.b[d.off : d.off+int(cnt)*8]
		prev := int64(-1)
		for x := 0; x < len(row); x += 8 {
			j := int64(binary.LittleEndian.Uint32(row[x:]))
			if j <= prev || j >= int64(n) {
				d.fail("itemknn neighbour id")
				break
			}
			prev = j
			if v := math.Float32frombits(binary.LittleEndian.Uint32(row[x+4:])); v > 0 {
				m.rowIdx = append(m.rowIdx, int32(j))
				m.rowCo = append(m.rowCo, v)
			}
		}
		d.off += len(row)
	}
	m.rowStart[n] = int32(len(m.rowIdx))
	if version >= 3 && d.err == nil && len(m.rowIdx) != pairs {
		d.fail("itemknn pair count")
	}
	m.cat.grow(n)
	m.rowSim, m.nbrStart, m.nbr = nil, nil, nil
	m.link = itemLink{}
	if version >= 2 {
		m.decodeNeighbourLists(&d)
	}
	if err := d.done("itemknn"); err != nil {
		m.nbrStart, m.nbr = nil, nil
		return err
	}
	m.prepare()
	return nil
}
