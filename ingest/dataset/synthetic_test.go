package dataset_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/dataset"
)

func small(seed uint64) dataset.SyntheticConfig {
	c := dataset.DefaultSyntheticConfig()
	c.Users, c.Items, c.Events, c.Seed = 300, 500, 30000, seed
	return c
}

func tiny(seed uint64) dataset.SyntheticConfig {
	c := dataset.DefaultSyntheticConfig()
	c.Users, c.Items, c.Events, c.Seed = 100, 200, 5000, seed
	return c
}

func TestSyntheticDeterministic(t *testing.T) {
	a, ta := dataset.Synthetic(tiny(7))
	b, tb := dataset.Synthetic(tiny(7))
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ta, tb) {
		t.Fatal("same seed gave different data")
	}
	c, _ := dataset.Synthetic(tiny(8))
	same := 0
	for i := range a.Events {
		if a.Events[i].User == c.Events[i].User && a.Events[i].Item == c.Events[i].Item {
			same++
		}
	}
	if same > len(a.Events)/20 {
		t.Fatalf("seeds 7 and 8 share %d of %d (user, item) positions", same, len(a.Events))
	}
	// The spec gives the same data as the struct.
	d, err := dataset.Load(context.Background(), "synthetic:users=100,items=200,events=5000,seed=7", dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Events, a.Events) || d.Name != "synthetic:users=100,items=200,events=5000,seed=7" {
		t.Fatalf("spec and struct differ (name %q)", d.Name)
	}
}

func TestSyntheticPlausible(t *testing.T) {
	d, truth := dataset.Synthetic(small(1))
	checkOrder(t, d)
	if len(d.Events) != 30000 || len(d.Items) != 500 || d.Rejected != 0 {
		t.Fatalf("events %d items %d rejected %d", len(d.Events), len(d.Items), d.Rejected)
	}
	first, last := d.Span()
	if first.Format("2006-01") != "2024-01" || last.Sub(first).Hours() < 24*28 {
		t.Errorf("span %s → %s, want ~30 days from 2024-01-01", first, last)
	}
	// Items: readable names, 1–3 known categories.
	for _, m := range d.Items {
		if len(strings.Fields(m.Title)) < 3 || len(m.Categories) < 1 || len(m.Categories) > 3 {
			t.Fatalf("item %+v", m)
		}
		for _, c := range m.Categories {
			if !slices.Contains(truth.Categories, c) {
				t.Fatalf("item %s has unknown category %q", m.Item, c)
			}
		}
	}
	if len(truth.Categories) != 12 {
		t.Errorf("%d categories, want 12", len(truth.Categories))
	}

	// Zipf head: the 5% most popular items take a large share of events.
	count := map[string]int{}
	types := map[string]int{}
	var inSum, outSum, inN, outN float64
	inTaste := 0
	for _, e := range d.Events {
		count[e.Item]++
		types[e.Type]++
		if truth.InTaste(e.User, e.Item) {
			inTaste++
		}
		if e.Kind == streamrec.Explicit {
			if e.Value < 0.5 || e.Value > 5 || e.Value*2 != float64(int(e.Value*2)) {
				t.Fatalf("rating %v", e.Value)
			}
			if truth.InTaste(e.User, e.Item) {
				inSum, inN = inSum+e.Value, inN+1
			} else {
				outSum, outN = outSum+e.Value, outN+1
			}
		}
	}
	counts := make([]int, 0, len(count))
	for _, c := range count {
		counts = append(counts, c)
	}
	slices.Sort(counts)
	slices.Reverse(counts)
	head := 0
	for _, c := range counts[:len(d.Items)/20] {
		head += c
	}
	if share := float64(head) / float64(len(d.Events)); share < 0.25 {
		t.Errorf("top 5%% of items take %.2f of events, want a Zipf head ≥ 0.25", share)
	}
	// Clusters: most events are in the user's taste, far above chance, and
	// in-taste ratings are clearly higher.
	if share := float64(inTaste) / float64(len(d.Events)); share < 0.7 {
		t.Errorf("in-taste share %.2f, want ≥ 0.7", share)
	}
	if inN == 0 || outN == 0 || inSum/inN-outSum/outN < 1.0 {
		t.Errorf("mean rating in taste %.2f vs out %.2f, want a gap ≥ 1", inSum/inN, outSum/outN)
	}
	for _, typ := range []string{"rating", "view", "cart", "purchase"} {
		if types[typ] == 0 {
			t.Errorf("no %s events: %v", typ, types)
		}
	}
	if got := len(truth.UserCluster); got != 300 {
		t.Errorf("truth has %d users", got)
	}
}

func TestParseSyntheticRoundTrip(t *testing.T) {
	for _, spec := range []string{"", "users=5", "users=10,items=20,events=30,seed=4,clusters=3,categories=6,days=2,explicit=0.5,taste=0.9,zipf=1.2"} {
		c, err := dataset.ParseSynthetic(spec)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		c2, err := dataset.ParseSynthetic(c.String())
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("%q → %q → %+v (%v), want %+v", spec, c.String(), c2, err, c)
		}
	}
}
