package learner

import (
	"cmp"
	"slices"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// sessionFixture is a two-stage model trained on the synthetic generator's
// planted clusters, its snapshot, and the catalogue's categories.
type sessionFixture struct {
	two    *TwoStage
	snap   *Snapshot
	cats   map[string][]string // item -> categories
	byCat  map[string][]string // category -> items, most popular first
	ts     int64
	sorted []string // categories, most items first
}

func newSessionFixture(t *testing.T) *sessionFixture {
	t.Helper()
	d := synthetic(t, 100, 240, 5000)
	cfg := DefaultConfig()
	cfg.HREvery = 1 << 30 // no HR@K during training: only Recommend below matters
	tr := newTestTrainer(t, cfg, "twostage")
	train(t, tr, d)
	blob, _, err := tr.Snapshot(1, nil, fixedNow())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	f := &sessionFixture{two: tr.Models()[0].(*TwoStage), snap: snap, cats: map[string][]string{},
		byCat: map[string][]string{}, ts: d.Events[len(d.Events)-1].TS}
	count := map[string]int{}
	for _, e := range d.Events {
		count[e.Item]++
	}
	for _, it := range d.Items {
		f.cats[it.Item] = it.Categories
		for _, c := range it.Categories {
			f.byCat[c] = append(f.byCat[c], it.Item)
		}
	}
	for c, items := range f.byCat {
		slices.SortStableFunc(items, func(a, b string) int { return cmp.Or(cmp.Compare(count[b], count[a]), cmp.Compare(a, b)) })
		f.sorted = append(f.sorted, c)
	}
	slices.SortFunc(f.sorted, func(a, b string) int { return cmp.Or(cmp.Compare(len(f.byCat[b]), len(f.byCat[a])), cmp.Compare(a, b)) })
	return f
}

// inCat counts the items of list in category c.
func (f *sessionFixture) inCat(list []streamrec.Scored, c string) int {
	n := 0
	for _, s := range list {
		if slices.Contains(f.cats[s.Item], c) {
			n++
		}
	}
	return n
}

// withoutCategory is the fixture's model with the session-category
// candidates and signal turned off (the recommender before them).
func (f *sessionFixture) withoutCategory() *TwoStage {
	off := &TwoStage{cfg: f.two.cfg, MF: f.two.MF, KNN: f.two.KNN, Pop: f.two.Pop, Ranker: f.two.Ranker}
	off.cfg.CategoryCandidates, off.cfg.CategoryWeight = 0, 0
	off.resetScorers()
	return off
}

func excluding(items []string) func(string) bool {
	return func(it string) bool { return slices.Contains(items, it) }
}

func TestTwoStageSessionCategory(t *testing.T) {
	f := newSessionFixture(t)
	main, other := f.sorted[0], f.sorted[1]
	if len(f.byCat[main]) < 40 {
		t.Fatalf("largest category %s has only %d items", main, len(f.byCat[main]))
	}
	// A new user views the category's items ranked 11–30 by popularity,
	// newest first; its ten most popular items stay unseen.
	fan := slices.Clone(f.byCat[main][10:30])
	// A mixed user alternates over four categories (items that carry only
	// the one category, so the session is an even mix).
	var mixed []string
	mixCats := f.sorted[:4]
	var pools [4][]string
	for k, c := range mixCats {
		for _, it := range f.byCat[c] {
			if len(f.cats[it]) == 1 && len(pools[k]) < 5 {
				pools[k] = append(pools[k], it)
			}
		}
	}
	for j := range 5 {
		for k := range pools {
			if j < len(pools[k]) {
				mixed = append(mixed, pools[k][j])
			}
		}
	}
	if len(mixed) < 16 {
		t.Fatalf("only %d single-category items for the mixed session", len(mixed))
	}
	recs := []struct {
		name string
		rec  func(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored
	}{
		{"training model", f.two.Recommend},
		{"snapshot", f.snap.Recommend},
	}
	off := f.withoutCategory()
	for _, r := range recs {
		t.Run(r.name, func(t *testing.T) {
			t.Run("one category dominates", func(t *testing.T) {
				q := &Query{User: &features.User{ID: "new-fan", Recent: fan}, Exclude: excluding(fan), TS: f.ts}
				got := r.rec(q, 10, nil)
				before := off.Recommend(q, 10, nil)
				t.Logf("%s: %d/10 with the session category, %d/10 without: %v", main, f.inCat(got, main), f.inCat(before, main), got)
				if len(got) != 10 {
					t.Fatalf("got %d items, want 10", len(got))
				}
				if n := f.inCat(got, main); n < 6 {
					t.Errorf("%d/10 of %s for a session of only %s, want >= 6", n, main, main)
				}
				for _, s := range got {
					if slices.Contains(fan, s.Item) {
						t.Errorf("excluded item %s recommended", s.Item)
					}
				}
			})
			t.Run("mixed history keeps a mix", func(t *testing.T) {
				q := &Query{User: &features.User{ID: "new-mixed", Recent: mixed}, Exclude: excluding(mixed), TS: f.ts}
				got := r.rec(q, 10, nil)
				if len(got) != 10 {
					t.Fatalf("got %d items, want 10", len(got))
				}
				present := 0
				for _, c := range mixCats {
					n := f.inCat(got, c)
					t.Logf("%s: %d/10", c, n)
					if n >= 8 {
						t.Errorf("%d/10 of %s for a session mixing %v", n, c, mixCats)
					}
					if n > 0 {
						present++
					}
				}
				if present < 2 {
					t.Errorf("only %d of the session's categories %v in %v", present, mixCats, got)
				}
			})
			t.Run("cold start unchanged", func(t *testing.T) {
				for _, u := range []*features.User{nil, {ID: "new-cold"}} {
					q := &Query{User: u, TS: f.ts}
					got, want := r.rec(q, 10, nil), off.Recommend(q, 10, nil)
					if len(got) != 10 || !slices.Equal(got, want) {
						t.Errorf("cold start %v, want %v", got, want)
					}
				}
			})
			t.Run("category filter wins over the session", func(t *testing.T) {
				q := &Query{User: &features.User{ID: "new-fan", Recent: fan}, Exclude: excluding(fan), Category: other, TS: f.ts}
				got := r.rec(q, 10, nil)
				if len(got) == 0 {
					t.Fatalf("no %s items for a %s session", other, main)
				}
				if n := f.inCat(got, other); n != len(got) {
					t.Errorf("%d/%d items in the filter category %s: %v", n, len(got), other, got)
				}
			})
			t.Run("everything excluded but the category", func(t *testing.T) {
				// Never empty while an item passes the filters.
				keep := f.byCat[main][0]
				q := &Query{User: &features.User{ID: "new-fan", Recent: fan}, TS: f.ts,
					Exclude: func(it string) bool { return it != keep }}
				got := r.rec(q, 10, nil)
				if len(got) != 1 || got[0].Item != keep {
					t.Errorf("got %v, want only %s", got, keep)
				}
			})
		})
	}
}

// TestTwoStageCategoryListsFollowLearning: the per-category popular lists
// are rebuilt once learning has moved on by catPopEvery events.
func TestTwoStageCategoryListsFollowLearning(t *testing.T) {
	cfg := DefaultConfig()
	m, err := New("twostage", cfg)
	if err != nil {
		t.Fatal(err)
	}
	two := m.(*TwoStage)
	learn := func(item string, n int) {
		for k := range n {
			ev := streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: item, TS: int64(1000 + k)}
			two.Learn(&Example{Event: &ev, User: &features.User{ID: "u"},
				Item: &features.Item{ID: item, Categories: []string{"c"}}, Global: &features.Global{}})
		}
	}
	learn("a", 5)
	learn("b", 1)
	first := two.categoryLists()
	c, _ := two.MF.cat.category("c")
	if got := first.lists[c]; len(got) != 2 || two.MF.items.names[got[0]] != "a" {
		t.Fatalf("lists %v", got)
	}
	learn("b", catPopEvery)
	if got := two.categoryLists().lists[c]; two.MF.items.names[got[0]] != "b" {
		t.Fatalf("after %d more events on b the list still starts with %s", catPopEvery, two.MF.items.names[got[0]])
	}
}
