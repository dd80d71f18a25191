package learner

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// ex builds an example; recent is the user's recent list before the event
// (newest first), cats the item's categories.
func ex(kind streamrec.Kind, user, item string, value float64, ts int64, recent []string, cats ...string) *Example {
	w := 1.0
	return &Example{
		Event:  &streamrec.Event{Kind: kind, Weight: w, User: user, Item: item, Value: value, TS: ts},
		User:   &features.User{ID: user, Recent: recent},
		Item:   &features.Item{ID: item, Categories: cats},
		Global: &features.Global{},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-5 }

func TestMeanByHand(t *testing.T) {
	m := NewMean()
	if got := m.Predict(ex(streamrec.Explicit, "u", "i", 0, 0, nil)); got != 0 {
		t.Fatalf("empty mean predicts %g, want 0", got)
	}
	for _, v := range []float64{4, 2, 3} {
		m.Learn(ex(streamrec.Explicit, "u", "i", v, 0, nil))
	}
	m.Learn(ex(streamrec.Implicit, "u", "i", 0, 0, nil)) // ignored
	if got := m.Predict(ex(streamrec.Explicit, "x", "y", 0, 0, nil)); got != 3 {
		t.Fatalf("mean predicts %g, want 3", got)
	}
}

func TestBiasByHand(t *testing.T) {
	b := NewBias(BiasConfig{LR: 0.5, Reg: 0})
	b.Learn(ex(streamrec.Explicit, "u", "i", 4, 0, nil)) // sets the mean to 4, no step
	// Second rating 2 of (u, j): prediction 4 + 0 + 0, error -2;
	// b_u = 0.5·(-2) = -1, b_j = -1; mean becomes 3.
	b.Learn(ex(streamrec.Explicit, "u", "j", 2, 0, nil))
	if !near(float64(b.bu[0]), -1) || !near(float64(b.bi[1]), -1) {
		t.Fatalf("b_u = %g, b_j = %g, want -1 and -1", b.bu[0], b.bi[1])
	}
	if got := b.Predict(ex(streamrec.Explicit, "u", "i", 0, 0, nil)); !near(got, 3-1+0) {
		t.Fatalf("predict(u, i) = %g, want 2", got)
	}
	if got := b.Predict(ex(streamrec.Explicit, "new", "i", 0, 0, nil)); !near(got, 3) {
		t.Fatalf("predict(new, i) = %g, want the mean 3", got)
	}
	// Predictions are clamped to the observed range [2, 4].
	b.Learn(ex(streamrec.Explicit, "u", "j", 2, 0, nil))
	b.Learn(ex(streamrec.Explicit, "u", "j", 2, 0, nil))
	if got := b.Predict(ex(streamrec.Explicit, "u", "j", 0, 0, nil)); got < 2 {
		t.Fatalf("predict = %g below the observed minimum 2", got)
	}
}

func TestPopularityDecayByHand(t *testing.T) {
	hl := time.Hour
	p := NewPopularity(hl)
	h := hl.Milliseconds()
	p.Learn(ex(streamrec.Implicit, "u1", "a", 0, 0, nil, "Books"))
	p.Learn(ex(streamrec.Implicit, "u2", "a", 0, 0, nil, "Books"))
	p.Learn(ex(streamrec.Implicit, "u3", "b", 0, 2*h, nil, "Toys"))
	// At 2h: a = 2·2^-2 = 0.5, b = 1. At 3h: a = 0.25, b = 0.5.
	got := p.Recommend(&Query{TS: 3 * h}, 10, nil)
	want := []streamrec.Scored{{Item: "b", Score: 0.5}, {Item: "a", Score: 0.25}}
	if len(got) != 2 || got[0].Item != "b" || got[1].Item != "a" || !near(got[0].Score, 0.5) || !near(got[1].Score, 0.25) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := p.Recommend(&Query{TS: 3 * h, Category: "Books"}, 10, nil); len(got) != 1 || got[0].Item != "a" {
		t.Fatalf("category Books: got %v, want [a]", got)
	}
	if got := p.Recommend(&Query{TS: 3 * h, Category: "Nope"}, 10, nil); len(got) != 0 {
		t.Fatalf("unknown category: got %v, want none", got)
	}
	excl := func(it string) bool { return it == "b" }
	if got := p.Recommend(&Query{TS: 3 * h, Exclude: excl}, 10, nil); len(got) != 1 || got[0].Item != "a" {
		t.Fatalf("exclude b: got %v", got)
	}
	// Far-future events rebase the reference without changing the ranking.
	p.Learn(ex(streamrec.Implicit, "u4", "a", 0, 100*h, nil))
	got = p.Recommend(&Query{TS: 100 * h}, 1, nil)
	if len(got) != 1 || got[0].Item != "a" || math.Abs(got[0].Score-1) > 1e-9 {
		t.Fatalf("after rebase: got %v, want a with ~1", got)
	}
}

func TestItemKNNCosineByHand(t *testing.T) {
	m := NewItemKNN(KNNConfig{Window: 10, Neighbours: 10, Shrink: 0})
	// u1: a then b; u2: a then b; u3: a then c. counts a=3, b=2, c=1;
	// co(a,b)=2, co(a,c)=1 → cos(a,b)=2/√6, cos(a,c)=1/√3.
	for _, u := range []struct{ id, second string }{{"u1", "b"}, {"u2", "b"}, {"u3", "c"}} {
		m.Learn(ex(streamrec.Implicit, u.id, "a", 0, 0, nil))
		m.Learn(ex(streamrec.Implicit, u.id, u.second, 0, 0, []string{"a"}))
	}
	// A repeat of a recent pair adds nothing.
	m.Learn(ex(streamrec.Implicit, "u3", "a", 0, 0, []string{"c", "a"}))
	got := m.Similar("a", 5, nil)
	if len(got) != 2 || got[0].Item != "b" || got[1].Item != "c" ||
		!near(got[0].Score, 2/math.Sqrt(6)) || !near(got[1].Score, 1/math.Sqrt(3)) {
		t.Fatalf("similar(a) = %v", got)
	}
	// A session that saw b: recommends a (co-occurring), not b itself.
	rec := m.Recommend(&Query{User: &features.User{ID: "new", Recent: []string{"b"}}}, 5, nil)
	if len(rec) != 1 || rec[0].Item != "a" || !near(rec[0].Score, 2/math.Sqrt(6)) {
		t.Fatalf("recommend from session [b] = %v", rec)
	}
	if got := m.Similar("zzz", 5, nil); len(got) != 0 {
		t.Fatalf("unknown item similar = %v", got)
	}
	m.prepare() // snapshot path: the same answers from the neighbour lists
	if got2 := m.Similar("a", 5, nil); !slices.Equal(got, got2) {
		t.Fatalf("prepared similar %v != %v", got2, got)
	}
}

// TestItemKNNFrozenModelLearnsOn: a decoded item-kNN is frozen (sorted rows,
// no maps); one that then learns thaws and ends exactly where a model that
// never left memory ends, in its bytes and its answers.
func TestItemKNNFrozenModelLearnsOn(t *testing.T) {
	cfg := KNNConfig{Window: 5, Neighbours: 4, Shrink: 1}
	r := rand.New(rand.NewPCG(7, 8))
	recent := map[string][]string{}
	var exs []*Example
	for range 3000 {
		u, it := "u"+string(rune('a'+r.IntN(20))), "i"+string(rune('a'+r.IntN(40)))
		exs = append(exs, ex(streamrec.Implicit, u, it, 0, 0, slices.Clone(recent[u])))
		recent[u] = append([]string{it}, recent[u][:min(len(recent[u]), 9)]...)
	}
	whole, half := NewItemKNN(cfg), NewItemKNN(cfg)
	for k, e := range exs {
		whole.Learn(e)
		if k < len(exs)/2 {
			half.Learn(e)
		}
	}
	b, err := half.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	resumed := NewItemKNN(cfg)
	if err := resumed.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !resumed.frozen() || resumed.co != nil {
		t.Fatal("a decoded model is not in its frozen form")
	}
	if again, _ := resumed.MarshalBinary(); !bytes.Equal(again, b) {
		t.Fatal("the frozen form encodes to different bytes")
	}
	for _, e := range exs[len(exs)/2:] {
		resumed.Learn(e)
	}
	if resumed.frozen() {
		t.Fatal("a model that learnt is still frozen")
	}
	want, _ := whole.MarshalBinary()
	if got, _ := resumed.MarshalBinary(); !bytes.Equal(got, want) {
		t.Fatal("the resumed model's bytes differ from the uninterrupted one's")
	}
	// Each prepared neighbour list is what a boundedTop over the item's map
	// row gives.
	rows := whole.co
	whole.prepare()
	resumed.prepare()
	for i := range whole.items.len() {
		var tk boundedTop
		tk.reset(cfg.Neighbours)
		for j, c := range rows[i] {
			tk.push(whole.sim(int32(i), j, c), j)
		}
		if got, want := whole.nbr[whole.nbrStart[i]:whole.nbrStart[i+1]], tk.sorted(); !slices.Equal(got, want) {
			t.Fatalf("neighbours of %s: prepared %v, boundedTop %v", whole.items.names[i], got, want)
		}
	}
	for _, it := range whole.items.names {
		if a, b := whole.Similar(it, 10, nil), resumed.Similar(it, 10, nil); !slices.Equal(a, b) {
			t.Fatalf("similar(%s): uninterrupted %v, resumed %v", it, a, b)
		}
	}
}

// TestItemKNNRejectsUnsortedRows: rows are encoded sorted by neighbour;
// anything else is a corrupt blob, not a silently different model.
func TestItemKNNRejectsUnsortedRows(t *testing.T) {
	m := NewItemKNN(KNNConfig{Window: 5, Neighbours: 4})
	m.Learn(ex(streamrec.Implicit, "u", "a", 0, 0, nil))
	m.Learn(ex(streamrec.Implicit, "u", "b", 0, 0, []string{"a"}))
	m.Learn(ex(streamrec.Implicit, "u", "c", 0, 0, []string{"b", "a"}))
	b, _ := m.MarshalBinary()
	// Row of "a" (index 0) is [(1, 1), (2, 1)]: swap its two neighbour ids.
	i := bytes.LastIndex(b, []byte{2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0x3f, 2, 0, 0, 0, 0, 0, 0x80, 0x3f})
	if i < 0 {
		t.Fatal("row of a not found in the encoding")
	}
	bad := slices.Clone(b)
	bad[i+4], bad[i+12] = 2, 1
	if err := NewItemKNN(m.cfg).UnmarshalBinary(bad); err == nil {
		t.Fatal("unsorted row accepted")
	}
	if err := NewItemKNN(m.cfg).UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
}

func TestBoundedTopMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{1, 3, 10, 100} {
		var tk boundedTop
		tk.reset(k)
		var all []topEntry
		for i := range 500 {
			s := float32(rng.IntN(50)) // many ties
			tk.push(s, int32(i))
			all = append(all, topEntry{s, int32(i)})
		}
		slices.SortFunc(all, func(a, b topEntry) int {
			if rankedBelow(a, b) {
				return 1
			}
			if rankedBelow(b, a) {
				return -1
			}
			return 0
		})
		if got := tk.sorted(); !slices.Equal(got, all[:k]) {
			t.Fatalf("k=%d: heap %v, sort %v", k, got, all[:k])
		}
	}
}

// TestAppendBestMatchesBoundedTop: the integer-key selection that builds
// the neighbour lists returns what boundedTop returns, on rows with many
// ties, negative and zero scores, of every length around k.
func TestAppendBestMatchesBoundedTop(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	scores := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.25, 3, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, -1e30}
	for _, k := range []int{1, 2, 5, 50} {
		for _, n := range []int{0, 1, k - 1, k, k + 1, 3 * k, 400} {
			if n < 0 {
				continue
			}
			var tk boundedTop
			tk.reset(k)
			keys := make([]uint64, 0, n)
			for _, i := range rng.Perm(1000)[:n] {
				s := scores[rng.IntN(len(scores))]
				if rng.IntN(2) == 0 {
					s = float32(rng.NormFloat64())
				}
				tk.push(s, int32(i))
				keys = append(keys, bestFirstKey(s, int32(i)))
			}
			want := slices.Clone(tk.sorted())
			if got := appendBest(nil, keys, k); !slices.Equal(got, want) {
				t.Fatalf("k=%d n=%d: appendBest %v, boundedTop %v", k, n, got, want)
			}
		}
	}
}

func TestMFFitsExplicitAndRanksImplicit(t *testing.T) {
	cfg := DefaultConfig()
	m := NewMF(cfg.MF, 1)
	// Two user groups with opposite tastes over two item groups.
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	items := []string{"a", "b", "c", "x", "y", "z"}
	for range 200 {
		for ui, u := range users {
			for ii, it := range items {
				v := 1.0
				if (ui < 3) == (ii < 3) {
					v = 5
				}
				m.Learn(ex(streamrec.Explicit, u, it, v, 0, nil))
			}
		}
	}
	for ui, u := range users {
		for ii, it := range items {
			want := 1.0
			if (ui < 3) == (ii < 3) {
				want = 5
			}
			if got := m.Predict(ex(streamrec.Explicit, u, it, 0, 0, nil)); math.Abs(got-want) > 0.5 {
				t.Fatalf("predict(%s,%s) = %.2f, want %.0f", u, it, got, want)
			}
		}
	}
	rec := m.Recommend(&Query{User: &features.User{ID: "u0"}}, 3, nil)
	for _, r := range rec {
		if !slices.Contains(items[:3], r.Item) {
			t.Fatalf("u0's top 3 %v holds %s from the other taste group", rec, r.Item)
		}
	}
	if sim := m.Similar("a", 2, nil); len(sim) != 2 || !slices.Contains(items[:3], sim[0].Item) {
		t.Fatalf("similar(a) = %v", sim)
	}
	// An unknown user with a session of x-group items is folded in.
	rec = m.Recommend(&Query{User: &features.User{ID: "new", Recent: []string{"x", "y"}}}, 3, nil)
	if len(rec) != 3 || !slices.Contains(items[3:], rec[0].Item) {
		t.Fatalf("session fold-in recommends %v", rec)
	}
}

// TestModelsRoundTrip trains every registered model a little, marshals it,
// unmarshals into a fresh one and checks bytes and predictions agree; then
// checks truncated blobs are rejected without panicking.
func TestModelsRoundTrip(t *testing.T) {
	d := synthetic(t, 40, 60, 800)
	cfg := DefaultConfig()
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			tr := newTestTrainer(t, cfg, name)
			train(t, tr, d)
			m := tr.Models()[0]
			b1, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			m2, _ := New(name, cfg)
			if err := m2.UnmarshalBinary(b1); err != nil {
				t.Fatal(err)
			}
			b2, _ := m2.MarshalBinary()
			if !bytes.Equal(b1, b2) {
				t.Fatalf("re-marshalled %d bytes differ from the original %d", len(b2), len(b1))
			}
			e := d.Events[len(d.Events)-1]
			ex := Example{Event: &e, User: &features.User{ID: e.User}, Item: &features.Item{ID: e.Item}, Global: &features.Global{}}
			// The ranker alone keeps serving state outside its encoding (its
			// owner's test covers its codec); every other model must agree.
			if p1, p2 := m.Predict(&ex), m2.Predict(&ex); p1 != p2 && name != RankerName {
				t.Fatalf("predictions differ after round trip: %g vs %g", p1, p2)
			}
			for _, n := range []int{0, 1, len(b1) / 3, len(b1) - 1} {
				m3, _ := New(name, cfg)
				if err := m3.UnmarshalBinary(b1[:n]); err == nil {
					t.Fatalf("a blob truncated to %d of %d bytes was accepted", n, len(b1))
				}
			}
		})
	}
}

// TestItemKNNEncodings: every encoding of the item-kNN section decodes to
// the same serving model. The neighbour lists a snapshot carries (from
// encoding 2) are exactly those a server computes from the rows of an
// encoding-1 snapshot; the compact rows (encoding 3) are the fixed-width
// ones. A list that is too long, out of order, names itself or an unknown
// item, a row that points past the catalogue or has a zero count, a wrong
// pair count, or a blob cut short is corrupt.
func TestItemKNNEncodings(t *testing.T) {
	cfg := KNNConfig{Window: 5, Neighbours: 4, Shrink: 1}
	r := rand.New(rand.NewPCG(3, 4))
	m := NewItemKNN(cfg)
	recent := map[string][]string{}
	for range 2000 {
		u, it := "u"+string(rune('a'+r.IntN(20))), "i"+string(rune('a'+r.IntN(40)))
		m.Learn(ex(streamrec.Implicit, u, it, 0, 0, slices.Clone(recent[u])))
		recent[u] = append([]string{it}, recent[u][:min(len(recent[u]), 9)]...)
	}
	latest, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if latest[len("itemknn")+4] != itemKNNEncoding {
		t.Fatalf("a learnt model (whole counts) encodes as %d, want %d", latest[len("itemknn")+4], itemKNNEncoding)
	}
	v1, v2 := m.marshal(1), m.marshal(2)
	if len(latest) >= len(v2)/2 {
		t.Errorf("compact rows: %d bytes, fixed-width %d", len(latest), len(v2))
	}
	var decoded []*ItemKNN
	for _, b := range [][]byte{v1, v2, latest} {
		d := NewItemKNN(cfg)
		if err := d.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		decoded = append(decoded, d)
	}
	for v, d := range decoded[:2] {
		l := decoded[2]
		if !slices.Equal(d.rowStart, l.rowStart) || !slices.Equal(d.rowIdx, l.rowIdx) || !slices.Equal(d.rowCo, l.rowCo) ||
			!slices.Equal(d.rowSim, l.rowSim) || !slices.Equal(d.nbrStart, l.nbrStart) || !slices.Equal(d.nbr, l.nbr) {
			t.Fatalf("encoding %d decodes to another model than encoding %d", v+1, itemKNNEncoding)
		}
		if again, _ := d.MarshalBinary(); !bytes.Equal(again, latest) {
			t.Fatalf("a model decoded from encoding %d re-encodes to other bytes", v+1)
		}
	}
	// A count that is not a whole number keeps the fixed-width rows.
	frac := NewItemKNN(cfg)
	if err := frac.UnmarshalBinary(latest); err != nil {
		t.Fatal(err)
	}
	frac.rowCo[0] = 1.5
	if b, _ := frac.MarshalBinary(); b[len("itemknn")+4] != 2 {
		t.Fatalf("a fractional count encodes as %d, want 2", b[len("itemknn")+4])
	}
	// The lists end the section: they start this far from its end.
	lists := len(latest) - (len(v2) - len(v1))
	// The first item with two neighbours or more: its list's offset.
	off, found := lists, false
	for range m.items.len() {
		cnt := int(binary.LittleEndian.Uint32(latest[off:]))
		if cnt >= 2 {
			found = true
			break
		}
		off += 4 + 8*cnt
	}
	if !found {
		t.Fatal("no item with two neighbours")
	}
	// The rows start after the header, the items, the categories and the
	// counts: with the pair count, the first varint of encoding 3.
	rows := len("itemknn") + 5
	{
		var e wbuf
		m.items.encode(&e)
		m.cat.encode(&e)
		e.f32s(m.count)
		rows += len(e.b)
	}
	total, k := binary.Uvarint(latest[rows:])
	firstRow := rows + k
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"list too long", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], uint32(cfg.Neighbours+1)); return b }},
		{"list names an unknown item", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off+4:], uint32(m.items.len())); return b }},
		{"list out of order", func(b []byte) []byte {
			first := slices.Clone(b[off+4 : off+12])
			copy(b[off+4:off+12], b[off+12:off+20])
			copy(b[off+12:off+20], first)
			return b
		}},
		{"NaN score", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[off+8:], math.Float32bits(float32(math.NaN())))
			return b
		}},
		{"pair count too large", func(b []byte) []byte {
			return append(append(slices.Clone(b[:rows]), binary.AppendUvarint(nil, total+1)...), b[firstRow:]...)
		}},
		{"pair count too small", func(b []byte) []byte {
			return append(append(slices.Clone(b[:rows]), binary.AppendUvarint(nil, total-1)...), b[firstRow:]...)
		}},
		{"row past the catalogue", func(b []byte) []byte {
			// The first row's first pair: a delta of n.
			cnt, k1 := binary.Uvarint(b[firstRow:])
			if cnt == 0 {
				t.Skip("first row empty")
			}
			_, k2 := binary.Uvarint(b[firstRow+k1:])
			out := slices.Clone(b[:firstRow+k1])
			out = binary.AppendUvarint(out, uint64(m.items.len()))
			return append(out, b[firstRow+k1+k2:]...)
		}},
		{"zero count", func(b []byte) []byte {
			cnt, k1 := binary.Uvarint(b[firstRow:])
			if cnt == 0 {
				t.Skip("first row empty")
			}
			_, k2 := binary.Uvarint(b[firstRow+k1:])
			_, k3 := binary.Uvarint(b[firstRow+k1+k2:])
			out := slices.Clone(b[:firstRow+k1+k2])
			out = binary.AppendUvarint(out, 0)
			return append(out, b[firstRow+k1+k2+k3:]...)
		}},
		{"cut short", func(b []byte) []byte { return b[:len(b)-1] }},
		{"unknown encoding", func(b []byte) []byte { b[len("itemknn")+4] = itemKNNEncoding + 1; return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := NewItemKNN(cfg).UnmarshalBinary(tc.edit(slices.Clone(latest))); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// An item listed as its own neighbour: item i's list naming i.
	t.Run("list names itself", func(t *testing.T) {
		b := slices.Clone(latest)
		o := lists
		for i := range m.items.len() {
			cnt := int(binary.LittleEndian.Uint32(b[o:]))
			if cnt > 0 {
				binary.LittleEndian.PutUint32(b[o+4:], uint32(i))
				break
			}
			o += 4 + 8*cnt
		}
		if err := NewItemKNN(cfg).UnmarshalBinary(b); err == nil {
			t.Fatal("accepted")
		}
	})
}
