package learner

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// TestExcludeSetMatchesExclude checks that a query filtered by index (its
// seen-set resolved by the answering model) gets exactly the answer of the
// same query filtered by name, that a set resolved by another model is
// ignored, and that the index marks do not leak into the next query.
func TestExcludeSetMatchesExclude(t *testing.T) {
	_, blob, _ := trainedSnapshot(t)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	other, err := DecodeSnapshot(blob) // same model, another index
	if err != nil {
		t.Fatal(err)
	}
	catalogue := make([]string, 0, s.Items())
	for _, it := range s.items {
		catalogue = append(catalogue, it.ID)
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	ts := int64(1 << 41)
	type query struct {
		name string
		q    Query
		seen []string
	}
	var queries []query
	for u := range 40 {
		seen := []string{"not-in-the-catalogue"}
		for _, i := range rnd.Perm(len(catalogue))[:rnd.IntN(len(catalogue))] {
			seen = append(seen, catalogue[i])
		}
		set := map[string]bool{}
		for _, it := range seen {
			set[it] = true
		}
		user := &features.User{ID: strconv.Itoa(u), Recent: seen[1:min(len(seen), 6)]}
		if u%5 == 4 {
			user.ID = "unknown-" + user.ID
		}
		q := Query{User: user, TS: ts, Exclude: func(it string) bool { return set[it] }}
		if u%3 == 0 {
			q.Category = "Books"
		}
		queries = append(queries, query{fmt.Sprintf("user %s, %d seen, category %q", user.ID, len(seen), q.Category), q, seen})
	}
	for _, model := range []struct {
		name      string
		recommend func(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored
		own       func([]string) *ItemSet
		alien     func([]string) *ItemSet
	}{
		{"snapshot", s.Recommend, s.ItemSet, other.ItemSet},
		{"mf", s.two.MF.Recommend, s.two.MF.ItemSet, other.two.MF.ItemSet},
	} {
		byName := make([][]streamrec.Scored, len(queries))
		for i, qc := range queries {
			byName[i] = model.recommend(&qc.q, 20, nil)
		}
		for i, qc := range queries {
			t.Run(model.name+"/"+qc.name, func(t *testing.T) {
				q := qc.q
				q.ExcludeSet = model.own(qc.seen)
				if got := q.ExcludeSet.Len(); got != len(qc.seen)-1 {
					t.Fatalf("set holds %d items, want the %d the model knows", got, len(qc.seen)-1)
				}
				if got := model.recommend(&q, 20, nil); !slices.Equal(got, byName[i]) {
					t.Fatalf("by index:\n%v\nby name:\n%v", got, byName[i])
				}
				q.ExcludeSet = model.alien(qc.seen)
				if got := model.recommend(&q, 20, nil); !slices.Equal(got, byName[i]) {
					t.Fatalf("another model's set:\n%v\nby name:\n%v", got, byName[i])
				}
				for _, r := range byName[i] {
					if qc.q.Exclude(r.Item) {
						t.Fatalf("seen item %s recommended", r.Item)
					}
				}
			})
		}
		// The marks are cleared: name-only queries after the indexed ones
		// still answer as before.
		for i, qc := range queries {
			if got := model.recommend(&qc.q, 20, nil); !slices.Equal(got, byName[i]) {
				t.Fatalf("%s, %s: answer changed after indexed queries", model.name, qc.name)
			}
		}
	}
	// A set without Exclude is ignored: the contract is that both hold the
	// same items, and only Exclude reaches every part of the model.
	q := Query{User: &features.User{ID: "1"}, TS: ts, ExcludeSet: s.ItemSet(catalogue)}
	if got, want := s.Recommend(&q, 10, nil), s.Recommend(&Query{User: &features.User{ID: "1"}, TS: ts}, 10, nil); !slices.Equal(got, want) {
		t.Fatalf("set without Exclude: %v, want %v", got, want)
	}
}

// TestRankerLinkedCandidates: a prepared two-stage snapshot scores its
// candidates through the ranker's link to MF's item table, with exactly the
// answers of scoring them by name; a ranker that learns drops the link.
func TestRankerLinkedCandidates(t *testing.T) {
	_, blob, _ := trainedSnapshot(t)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	stage, ok := s.two.Ranker.(rankerStage)
	if !ok {
		t.Fatal("the two-stage snapshot has no ranker")
	}
	r := stage.Ranker
	if !r.link.linkedTo(s.two.MF.items.names) {
		t.Fatal("the prepared ranker is not linked to MF's items")
	}
	ts := int64(1 << 41)
	var queries []Query
	for u := range 30 {
		queries = append(queries, Query{User: &features.User{ID: strconv.Itoa(u)}, TS: ts})
	}
	queries = append(queries, Query{User: &features.User{ID: "nobody", Recent: []string{s.items[0].ID, s.items[1].ID}}, TS: ts})
	linked := make([][]streamrec.Scored, len(queries))
	for i := range queries {
		linked[i] = s.Recommend(&queries[i], 20, nil)
	}
	link := r.link
	r.link = rkLink{}
	for i := range queries {
		if got := s.Recommend(&queries[i], 20, nil); !slices.Equal(got, linked[i]) {
			t.Fatalf("query %d: by name\n%v\nlinked\n%v", i, got, linked[i])
		}
	}
	r.link = link
	ex := &Example{Event: &streamrec.Event{User: "1", Item: s.items[0].ID, Kind: streamrec.Implicit, TS: ts},
		User: &features.User{ID: "1"}, Item: &features.Item{ID: s.items[0].ID}, Global: &features.Global{}}
	r.Learn(ex)
	if r.link.rows != nil {
		t.Fatal("a ranker that learnt kept its link")
	}
}
